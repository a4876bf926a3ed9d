"""k-anonymous research extracts of the vault (Sweeney 2002, "k-anonymity: a model for
protecting privacy"; full-domain generalisation with suppression and a minimal-height lattice
search as in Samarati 2001, "Protecting respondents' identities in microdata release").

**Extract.** One row per current clinical record of the vault (Condition, Observation,
MedicationRequest, MedicationDispense) with its patient's quasi-identifiers. An equivalence
class is the set of rows with equal (generalised) quasi-identifiers; its size is its number of
distinct *patients* (one patient's ten records are not ten people). The extract is k-anonymous
when every class holds at least k patients.

**Quasi-identifiers** and their generalisation hierarchies, most specific level first:

* ``birth_year`` — year → 5-year band → 10-year band → 20-year band → ``*``;
* ``age`` — age in years at the record's (shifted) date, in 5-year bands (``90+`` top-coded)
  → 10-year bands → 20-year bands → ``*``;
* ``gender`` — as is → ``*``;
* ``code`` — ICD-10: the WHO code, with rare codes rolled up to their 3-character category →
  the category, with rare categories rolled up to their chapter → the chapter → ``*``; other
  systems (LOINC, drug codes): the code, with rare codes replaced by ``*`` → ``*``. *Rare*
  means held by fewer than k patients in the whole extract. The record type and code system
  are shown, so they stay part of the class;
* ``date`` — the record's date (already shifted per patient at ingest) → month → year → ``*``.

A patient without a birth year (90 or older at ingest, or none given) has ``unknown`` age and
birth year at every level but ``*``.

**Search.** A node of the generalisation lattice gives each quasi-identifier a level; it is
acceptable when the rows in classes smaller than k — the rows that would be suppressed — are at
most ``max_suppression`` of all rows. A more general node only merges classes, so acceptability
is monotone; the search goes up by height (the sum of the levels) and takes the first height
holding an acceptable node — the least generalisation — choosing there the node suppressing
fewest rows (then the one with most classes, then the first in lattice order).

**Output** (``out``): CSV with ``subject`` (a per-extract pseudonym: HMAC-SHA256 of the
consortium pseudonym under a key drawn for this extract and then forgotten, so two extracts
cannot be joined on it), ``record_type``, the quasi-identifiers generalised, ``code_system``,
``code`` (generalised when ``code`` is a quasi-identifier), ``value`` and ``unit``. Dates and
birth years appear only as quasi-identifiers. Suppressed rows are left out. Every line is
scanned for identifier patterns before it is written (as ``gateway export`` does).

**Limits.** k holds per row: a study's rows of one patient share a subject, so a patient's
*combination* of rows can be rarer than any single row (km-anonymity and l-diversity are not
checked). Memory grows with the number of distinct (quasi-identifiers, patient) pairs.
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
import itertools
import secrets
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from medledger.gateway import icd10, loinc
from medledger.gateway.errors import GatewayError
from medledger.gateway.scan import pattern_leaks
from medledger.gateway.vault import Vault

QUASI_IDENTIFIERS = ("birth_year", "age", "gender", "code", "date")
LEVELS: dict[str, tuple[str, ...]] = {
    "birth_year": ("year", "5-year band", "10-year band", "20-year band", "*"),
    "age": ("5-year band", "10-year band", "20-year band", "*"),
    "gender": ("as is", "*"),
    "code": ("code, rare to category", "category, rare to chapter", "chapter", "*"),
    "date": ("day", "month", "year", "*"),
}
UNKNOWN = "unknown"
COLUMNS = ("subject", "record_type", "code_system", "code", "value", "unit")
_DATE_KEYS = ("recordedDate", "effectiveDateTime", "authoredOn", "whenHandedOver")
_CLINICAL = ("Condition", "Observation", "MedicationRequest", "MedicationDispense")


@dataclass(frozen=True)
class Record:
    """One clinical record of the extract, before generalisation."""

    pseudonym: str
    record_type: str
    code_system: str                # icd10 | loinc | medication
    code: str
    date: str                       # YYYY-MM-DD (shifted at ingest)
    value: str
    unit: str
    birth_year: int | None
    gender: str

    def quasi(self, qis: Sequence[str]) -> tuple[Any, ...]:
        """The record's most specific quasi-identifier values, in ``qis`` order."""
        full = {"birth_year": self.birth_year, "gender": self.gender, "date": self.date,
                "code": (self.record_type, self.code_system, self.code),
                "age": None if self.birth_year is None else
                int(self.date[:4]) - self.birth_year}
        return tuple(full[q] for q in qis)


@dataclass(frozen=True)
class Node:
    """One evaluated lattice node: a level per quasi-identifier and what it gives."""

    levels: tuple[int, ...]
    classes: int
    smallest: int                   # patients in the smallest class
    suppressed: int                 # rows in classes smaller than k


class Lattice:
    """The generalisation hierarchies of ``qis`` over one extract (rare codes need k)."""

    def __init__(self, qis: Sequence[str], k: int,
                 groups: dict[tuple[Any, ...], dict[int, int]]) -> None:
        self.qis, self.k = tuple(qis), k
        self._rare_codes: set[tuple[str, str, str]] = set()
        self._rare_categories: set[str] = set()
        if "code" in self.qis:
            self._rare(groups, self.qis.index("code"))
        # each quasi-identifier has few distinct values: generalise each once per level
        self._values = [sorted({full[i] for full in groups}, key=repr)
                        for i in range(len(self.qis))]

    def _rare(self, groups: dict[tuple[Any, ...], dict[int, int]], i: int) -> None:
        codes: dict[tuple[str, str, str], set[int]] = defaultdict(set)
        cats: dict[str, set[int]] = defaultdict(set)
        for full, pats in groups.items():
            codes[full[i]].update(pats)
            if full[i][1] == "icd10":
                cats[icd10.category(full[i][2])].update(pats)
        self._rare_codes = {c for c, p in codes.items() if len(p) < self.k}
        self._rare_categories = {c for c, p in cats.items() if len(p) < self.k}

    def heights(self) -> int:
        return sum(len(LEVELS[q]) - 1 for q in self.qis)

    def nodes(self, height: int) -> Iterator[tuple[int, ...]]:
        """Every node of the given height, in lattice (lexicographic) order."""
        ranges = [range(len(LEVELS[q])) for q in self.qis]
        return (n for n in itertools.product(*ranges) if sum(n) == height)

    def generaliser(self, levels: tuple[int, ...]) -> Callable[[tuple[Any, ...]], tuple[Any, ...]]:
        """The function taking a record's quasi-identifiers to their values at ``levels``."""
        fns = [self._one(q, lv) for q, lv in zip(self.qis, levels, strict=True)]
        return lambda full: tuple(f(v) for f, v in zip(fns, full, strict=True))

    def _tables(self, levels: tuple[int, ...]) -> list[dict[Any, Any]]:
        fns = [self._one(q, lv) for q, lv in zip(self.qis, levels, strict=True)]
        return [{v: f(v) for v in values} for f, values in zip(fns, self._values, strict=True)]

    def _one(self, qi: str, level: int) -> Callable[[Any], Any]:
        if qi == "code":        # the record type and code system stay: the extract shows them
            return lambda c: (c[0], c[1], self._code(c, level))
        if level == len(LEVELS[qi]) - 1:
            return lambda _: "*"
        if qi == "birth_year":
            return lambda y: UNKNOWN if y is None else _band(y, (1, 5, 10, 20)[level])
        if qi == "age":
            return lambda a: UNKNOWN if a is None else _age_band(a, (5, 10, 20)[level])
        if qi == "date":
            return lambda d: d[: (10, 7, 4)[level]]
        return str                                       # gender, as is

    def _code(self, code: tuple[str, str, str], level: int) -> str:
        _, system, value = code
        if level == len(LEVELS["code"]) - 1:
            return "*"
        if system != "icd10":
            return "*" if code in self._rare_codes else value
        if level == 0:
            return icd10.category(value) if code in self._rare_codes else value
        cat = icd10.category(value)
        chapter = icd10.chapter(value) or "*"
        if level == 1:
            return chapter if cat in self._rare_categories else cat
        return chapter

    def evaluate(self, levels: tuple[int, ...], groups: dict[tuple[Any, ...], dict[int, int]]
                 ) -> tuple[Node, set[tuple[Any, ...]]]:
        """The node's figures and its classes of at least k patients."""
        tables = self._tables(levels)
        people: dict[tuple[Any, ...], set[int]] = defaultdict(set)
        rows: Counter[tuple[Any, ...]] = Counter()
        for full, pats in groups.items():
            g = tuple(t[v] for t, v in zip(tables, full))   # noqa: B905 (equal lengths)
            people[g].update(pats)
            rows[g] += sum(pats.values())
        kept = {g for g, p in people.items() if len(p) >= self.k}
        node = Node(levels, len(people), min((len(p) for p in people.values()), default=0),
                    sum(n for g, n in rows.items() if g not in kept))
        return node, kept


def _band(year: int, width: int) -> str:
    if width == 1:
        return f"{year:04d}"
    low = year - year % width
    return f"{low:04d}-{low + width - 1:04d}"


def _age_band(age: int, width: int) -> str:
    if age >= 90:
        return "90+"
    low = max(age, 0) - max(age, 0) % width
    return f"{low}-{min(low + width - 1, 89)}"


def records(vault: Vault) -> Iterator[Record]:
    """The vault's current clinical records with their patients' birth year and gender, in
    record id order (a hash: the order tells nothing about the source)."""
    patients: dict[str, tuple[int | None, str]] = {}
    for res in _current(vault, ("Patient",)):
        year = res.get("birthDate")
        patients[res["id"]] = (int(year[:4]) if year else None, str(res.get("gender",
                                                                            "unknown")))
    for res in _current(vault, _CLINICAL):
        yield _record(res, patients)


def _current(vault: Vault, types: Sequence[str]) -> Iterator[dict[str, Any]]:
    """The current version of every record of ``types``, decrypted (one pass, in record id
    order; the newest version is found through the primary key, not the ``heads`` view)."""
    sql = ("SELECT record_id, version, body FROM records r WHERE resource_type IN "
           f"({','.join('?' * len(types))}) AND NOT EXISTS (SELECT 1 FROM records n WHERE "
           "n.record_id = r.record_id AND n.version > r.version) ORDER BY record_id")
    for rid, version, body in vault.db.execute(sql, tuple(types)):
        yield orjson.loads(vault.record_body(rid, version, body))["resource"]


def _record(res: dict[str, Any], patients: dict[str, tuple[int | None, str]]) -> Record:
    pseud = res["subject"]["reference"].removeprefix("Patient/")
    year, gender = patients.get(pseud, (None, "unknown"))
    date = next((res[k] for k in _DATE_KEYS if k in res), "")[:10]
    value = unit = ""
    if res["resourceType"] == "Condition":
        system = "icd10"
        code = next(c["code"] for c in res["code"]["coding"] if c["system"] == icd10.WHO_SYSTEM)
    elif res["resourceType"] == "Observation":
        system = "loinc"
        code = next(c["code"] for c in res["code"]["coding"]
                    if c["system"] == loinc.LOINC_SYSTEM)
        q = res.get("valueQuantity", {})
        value, unit = (f"{q['value']:g}", str(q.get("code", ""))) if "value" in q else ("", "")
    else:
        system = "medication"
        code = res["medicationCodeableConcept"]["coding"][0]["code"]
    return Record(pseud, res["resourceType"], system, code, date, value, unit, year, gender)


def _check(qis: Sequence[str], k: int, max_suppression: float) -> None:
    bad = sorted(set(qis) - set(QUASI_IDENTIFIERS))
    if bad or not qis:
        raise GatewayError(f"unknown quasi-identifiers {bad}; want some of "
                           f"{list(QUASI_IDENTIFIERS)}")
    if len(set(qis)) != len(qis):
        raise GatewayError(f"quasi-identifiers {list(qis)} name one twice")
    if k < 2:
        raise GatewayError(f"k is {k}; want at least 2")
    if not 0.0 <= max_suppression <= 1.0:
        raise GatewayError(f"max_suppression is {max_suppression}; want 0..1")


def search(groups: dict[tuple[Any, ...], dict[int, int]], qis: Sequence[str], k: int,
           max_suppression: float) -> tuple[Lattice, list[Node], Node | None,
                                            set[tuple[Any, ...]]]:
    """(lattice, nodes evaluated, chosen node or None, its classes of ≥ k patients)."""
    lattice = Lattice(qis, k, groups)
    total = sum(sum(p.values()) for p in groups.values())
    limit = max_suppression * total
    seen: list[Node] = []
    for height in range(lattice.heights() + 1):
        best: tuple[Node, set[tuple[Any, ...]]] | None = None
        for levels in lattice.nodes(height):
            node, kept = lattice.evaluate(levels, groups)
            seen.append(node)
            if node.suppressed <= limit and (
                    best is None or (node.suppressed, -node.classes) <
                    (best[0].suppressed, -best[0].classes)):
                best = (node, kept)
        if best is not None:
            return lattice, seen, best[0], best[1]
    return lattice, seen, None, set()


def report(vault: Vault, qis: Sequence[str] = ("birth_year", "gender"), k: int = 5,
           max_suppression: float = 0.05, out: Path | None = None) -> dict[str, Any]:
    """Find the least generalisation of ``qis`` that is k-anonymous after suppressing at most
    ``max_suppression`` of the rows; with ``out``, write that extract there (CSV).
    Writes nothing when no node qualifies."""
    qis = tuple(qis)
    _check(qis, k, max_suppression)
    patient_ids: dict[str, int] = {}
    groups: dict[tuple[Any, ...], dict[int, int]] = defaultdict(lambda: defaultdict(int))
    n = 0
    for rec in records(vault):
        pid = patient_ids.setdefault(rec.pseudonym, len(patient_ids))
        groups[rec.quasi(qis)][pid] += 1
        n += 1
    lattice, seen, chosen, kept = search(groups, qis, k, max_suppression)
    doc: dict[str, Any] = {
        "rows": n, "patients": len(patient_ids), "quasi_identifiers": list(qis), "k": k,
        "max_suppression": max_suppression,
        "hierarchies": {q: list(LEVELS[q]) for q in qis},
        "levels": [_node_doc(x, qis) for x in seen],
        "chosen": None if chosen is None else _node_doc(chosen, qis),
        "k_anonymous_after_suppression": chosen is not None,
        "suppressed": None if chosen is None else chosen.suppressed,
        "out": None, "written": 0}
    if chosen is not None and out is not None:
        doc["written"] = write(vault, out, lattice, chosen.levels, kept)
        doc["out"] = str(out)
    return doc


def _node_doc(node: Node, qis: Sequence[str]) -> dict[str, Any]:
    return {"generalisation": {q: LEVELS[q][lv] for q, lv in zip(qis, node.levels,
                                                                  strict=True)},
            "height": sum(node.levels), "classes": node.classes, "smallest": node.smallest,
            "suppressed": node.suppressed}


def write(vault: Vault, out: Path, lattice: Lattice, levels: tuple[int, ...],
          kept: set[tuple[Any, ...]]) -> int:
    """Write the extract generalised at ``levels``, leaving out rows of classes not in
    ``kept``; returns the rows written. Nothing is left at ``out`` on an error."""
    qis = lattice.qis
    gen = lattice.generaliser(levels)
    salt = secrets.token_bytes(32)          # this extract's subject key, never stored
    tmp = out.with_name(out.name + ".partial")
    written = 0
    try:
        with tmp.open("w", encoding="utf-8", newline="") as fh:
            w = csv.writer(fh, lineterminator="\n")
            w.writerow(_header(qis))
            for rec in records(vault):
                g = gen(rec.quasi(qis))
                if g not in kept:
                    continue
                subject = "s-" + hmac.digest(salt, rec.pseudonym.encode(), hashlib.sha256
                                             ).hex()[:16]
                code = g[qis.index("code")][2] if "code" in qis else rec.code
                row = [subject, rec.record_type, *(v for q, v in zip(qis, g, strict=True)
                                                   if q != "code"),
                       rec.code_system, code, rec.value, rec.unit]
                _write_scanned(w, row)
                written += 1
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    tmp.replace(out)
    return written


def _header(qis: Sequence[str]) -> list[str]:
    return ["subject", "record_type", *(q for q in qis if q != "code"), "code_system", "code",
            "value", "unit"]


def _write_scanned(w: Any, row: list[str]) -> None:
    buf = io.StringIO()
    csv.writer(buf).writerow(row)
    leaks = pattern_leaks(buf.getvalue())
    if leaks:
        raise GatewayError(f"an extract row holds an identifier pattern {leaks}; nothing was "
                           "written")
    w.writerow(row)


def check_extract(path: Path, qis: Sequence[str], k: int) -> tuple[int, int]:
    """Re-read a written extract: (rows, patients in its smallest class); raises GatewayError
    when a class holds fewer than ``k`` subjects."""
    cols = [q for q in qis if q != "code"] + (
        ["record_type", "code_system", "code"] if "code" in qis else [])
    people: dict[tuple[str, ...], set[str]] = defaultdict(set)
    rows = 0
    with path.open(encoding="utf-8", newline="") as fh:
        for r in csv.DictReader(fh):
            people[tuple(r[c] for c in cols)].add(r["subject"])
            rows += 1
    smallest = min((len(p) for p in people.values()), default=0)
    if people and smallest < k:
        raise GatewayError(f"{path}: a class holds {smallest} subjects; want at least {k}")
    return rows, smallest
