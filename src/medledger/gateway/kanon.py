"""A k-anonymity report for a research extract of the vault (Sweeney 2002, "k-anonymity: a
model for protecting privacy").

The extract has one row per emitted clinical record (Condition, Observation, medication) with
its patient's quasi-identifiers: birth year (from the pseudonymised Patient; absent at 90+),
gender, and optionally the record's code. An equivalence class is a set of rows with equal
quasi-identifiers; its size is the number of distinct *patients* in it (one patient's ten
records are not ten people); the extract is k-anonymous when every class holds at least k
patients. Birth years
are generalised along a fixed ladder (1, 5, 10, 20-year bands); the report gives, for each
level, the smallest class and how many rows would have to be suppressed to reach ``k``, and
chooses the least general level whose suppression stays within ``max_suppression``.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from medledger.gateway.errors import GatewayError
from medledger.gateway.vault import Vault

QUASI_IDENTIFIERS = ("birth_year", "gender", "code")
LADDER = (1, 5, 10, 20)


@dataclass(frozen=True)
class Level:
    band: int
    classes: int
    smallest: int
    suppressed: int


def _patients(vault: Vault) -> dict[str, tuple[int | None, str]]:
    out: dict[str, tuple[int | None, str]] = {}
    for r in vault.iter_rows("SELECT record_id, version, body, subject FROM records r WHERE "
                             "resource_type='Patient' AND version=(SELECT max(version) FROM "
                             "records WHERE record_id=r.record_id)"):
        res = orjson.loads(vault.record_body(r[0], r[1], r[2]))["resource"]
        year = res.get("birthDate")
        out[r[3]] = (int(year[:4]) if year else None, str(res.get("gender", "unknown")))
    return out


def extract(vault: Vault, qis: Sequence[str]) -> list[tuple[tuple[Any, ...], str]]:
    """(quasi-identifiers restricted to ``qis``, pseudonym), one per clinical record."""
    bad = sorted(set(qis) - set(QUASI_IDENTIFIERS))
    if bad:
        raise GatewayError(f"unknown quasi-identifiers {bad}; want some of "
                           f"{list(QUASI_IDENTIFIERS)}")
    pats = _patients(vault)
    rows = []
    for subject, code in vault.iter_rows(
            "SELECT o.subject, o.code FROM outcomes o WHERE o.outcome='mapped' "
            "AND o.subject IS NOT NULL"):
        year, gender = pats.get(subject, (None, "unknown"))
        full = {"birth_year": year, "gender": gender, "code": code}
        rows.append((tuple(full[q] for q in qis), subject))
    return rows


def _generalise(row: tuple[Any, ...], qis: Sequence[str], band: int) -> tuple[Any, ...]:
    if "birth_year" not in qis or band == 1:
        return row
    i = qis.index("birth_year")
    year = row[i]
    g = None if year is None else year - year % band
    return (*row[:i], g, *row[i + 1:])


def levels(rows: list[tuple[tuple[Any, ...], str]], qis: Sequence[str], k: int
           ) -> list[Level]:
    """Per ladder band: classes, smallest class (patients) and rows to suppress for ``k``."""
    out = []
    for band in LADDER:
        people: dict[tuple[Any, ...], set[str]] = defaultdict(set)
        records: Counter[tuple[Any, ...]] = Counter()
        for qi, subject in rows:
            g = _generalise(qi, qis, band)
            people[g].add(subject)
            records[g] += 1
        small = sum(records[c] for c, ps in people.items() if len(ps) < k)
        out.append(Level(band, len(people), min((len(p) for p in people.values()), default=0),
                         small))
    return out


def report(vault: Vault, qis: Sequence[str] = ("birth_year", "gender"), k: int = 5,
           max_suppression: float = 0.05) -> dict[str, Any]:
    if k < 2:
        raise GatewayError(f"k is {k}; want at least 2")
    rows = extract(vault, qis)
    lv = levels(rows, qis, k)
    n = len(rows)
    chosen = next((x for x in lv if n and x.suppressed / n <= max_suppression), None)
    return {"rows": n, "quasi_identifiers": list(qis), "k": k,
            "max_suppression": max_suppression,
            "levels": [x.__dict__ for x in lv],
            "chosen_band": None if chosen is None else chosen.band,
            "k_anonymous_after_suppression": chosen is not None,
            "suppressed": None if chosen is None else chosen.suppressed}
