"""The review queue a data steward works through (``gateway review``).

Rows whose term was not an exact or curated hit wait here with their n-gram candidates and
scores. A decision is recorded once per (kind, normalised term) with the reviewer and time and
is reused by every later run (``Terminology`` method ``manual``); applying decisions emits the
held rows as new records and moves them from *review* to *emitted* in their file's
reconciliation. "No standard equivalent" (e.g. a TCM diagnosis) is a decision too: the row
stays held, never coded.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import orjson

from medledger.errors import Code
from medledger.gateway import icd10, loinc
from medledger.gateway.anchor import Anchorer
from medledger.gateway.deid import Pseudonymizer, PseudonymKey
from medledger.gateway.errors import GatewayError
from medledger.gateway.pipeline import Gateway
from medledger.gateway.profile import Profile
from medledger.gateway.sources import SourceRow
from medledger.gateway.text import normalise_term
from medledger.gateway.vault import Vault

NO_EQUIVALENT = ""


@dataclass(frozen=True)
class ReviewItem:
    id: int
    source_name: str
    position: str
    kind: str
    term: str
    reason: str
    candidates: list[dict[str, Any]]
    status: str
    decision: str | None

    def to_doc(self) -> dict[str, Any]:
        return self.__dict__.copy()


def items(vault: Vault, status: str | None = "open", limit: int = 100) -> list[ReviewItem]:
    sql = ("SELECT id, source_name, position, kind, term, reason, candidates, status, decision "
           "FROM review" + (" WHERE status=?" if status else "") + " ORDER BY id LIMIT ?")
    rows = vault.rows(sql, (status, limit) if status else (limit,))
    return [ReviewItem(r[0], r[1], r[2], r[3], r[4], r[5], orjson.loads(r[6]), r[7], r[8])
            for r in rows]


def _check_target(kind: str, target: str) -> None:
    if target == NO_EQUIVALENT:
        return
    if kind == "dx" and target not in icd10.WHO:
        raise GatewayError(f"{target!r} is not a WHO ICD-10 code in the table")
    if kind == "lab" and target not in loinc.BY_KEY:
        raise GatewayError(f"{target!r} is not an analyte; want one of {sorted(loinc.BY_KEY)}")


def decide(vault: Vault, item_id: int, target: str, reviewer: str) -> int:
    """Record ``target`` (a WHO code, an analyte key, or ``NO_EQUIVALENT``) for the item's term;
    every open item with the same kind and normalised term is decided with it. Returns how
    many items were decided."""
    row = vault.rows("SELECT kind, term, reason FROM review WHERE id=?", (item_id,))
    if not row:
        raise GatewayError(f"no review item {item_id}", Code.NOT_FOUND)
    kind, term, reason = row[0]
    if reason == "no_standard_equivalent" and target != NO_EQUIVALENT:
        raise GatewayError(f"item {item_id} ({term!r}) has no standard equivalent; it is never "
                           "coded (decide --no-equivalent)")
    _check_target(kind, target)
    norm = normalise_term(term)
    vault.db.execute("INSERT OR REPLACE INTO decisions VALUES (?, ?, ?, ?, ?)",
                     (kind, norm, target, reviewer, int(time.time() * 1000)))
    status = "decided" if target != NO_EQUIVALENT else "no_equivalent"
    n = 0
    for r in vault.rows("SELECT id, term FROM review WHERE status='open' AND kind=?", (kind,)):
        if normalise_term(r[1]) == norm:
            vault.db.execute("UPDATE review SET status=?, decision=?, reviewer=? WHERE id=?",
                             (status, target, reviewer, r[0]))
            n += 1
    return n


def apply(vault: Vault, key: PseudonymKey, anchorer: Anchorer | None = None) -> dict[str, int]:
    """Emit every decided row: re-standardise it with the decisions and store it."""
    gw = Gateway(vault, Pseudonymizer(key), anchorer)
    counts = {"applied": 0, "quarantined": 0}
    todo = vault.rows("SELECT id, file_hash, source_name, position, profile, row FROM review "
                      "WHERE status='decided' ORDER BY id")
    for item_id, file_hash, name, position, label, sealed in todo:
        body = vault.profile_body(label)
        if body is None:
            raise GatewayError(f"profile {label} of review item {item_id} is not in the vault")
        prof = Profile.model_validate_json(body)
        values = orjson.loads(vault.sealer.open(sealed, f"review|{file_hash}|{position}".encode()))
        rep = gw.reprocess(SourceRow(position, values, orjson.dumps(values)), prof, name,
                           file_hash)
        done = "applied" if rep.emitted + rep.duplicates else "quarantined"
        counts[done] += 1
        vault.db.execute("UPDATE review SET status=? WHERE id=?", (done, item_id))
        col = "emitted" if done == "applied" else "quarantined"
        vault.db.execute(f"UPDATE files SET review = review - 1, {col} = {col} + 1 "
                         "WHERE file_hash=? AND profile=?", (file_hash, label))
    gw.finish()
    return counts
