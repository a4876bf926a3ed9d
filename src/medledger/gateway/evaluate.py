"""Scoring a run against a truth file (columns fixed by issue 4, see ``synth.TRUTH_COLUMNS``).

Categories: ``diagnosis`` (expected mapped to ICD-10: right when mapped to the same WHO
code), ``lab`` (expected mapped to LOINC: right when code, UCUM unit and value within 0.5 %
relative agree; for a qualitative test, no unit and the same SNOMED CT result code),
``defect`` (expected quarantined: right when quarantined with the expected reason),
``duplicate`` and ``review`` (right when that outcome). Each is reported overall and per
language. ``wrong_auto_accepted`` counts rows the gateway emitted as mapped whose truth is
another code or not mapped at all; ``defects_emitted`` counts defects that reached the output.
With a linkage file (``source_file,row,person``), linkage recall and false merges are computed
over pairs of rows. Truth rows of files that none of the vaults ingested are left out (and
listed); a row of an ingested file without an outcome counts as wrong.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path
from typing import Any

from medledger.gateway.errors import GatewayError
from medledger.gateway.synth import TRUTH_COLUMNS
from medledger.gateway.vault import Vault


@dataclass
class Score:
    right: int = 0
    total: int = 0

    @property
    def rate(self) -> float:
        return self.right / self.total if self.total else 1.0


@dataclass
class Evaluation:
    categories: dict[str, Score] = field(default_factory=lambda: defaultdict(Score))
    by_language: dict[tuple[str, str], Score] = field(default_factory=lambda: defaultdict(Score))
    mapped: int = 0
    wrong_auto_accepted: int = 0
    defects_emitted: int = 0
    reasons_right: Score = field(default_factory=Score)
    missing: int = 0
    skipped_files: set[str] = field(default_factory=set)
    linkage: dict[str, float] | None = None
    errors: list[dict[str, str]] = field(default_factory=list)

    def to_doc(self) -> dict[str, Any]:
        return {
            "categories": {k: {"right": s.right, "total": s.total, "rate": round(s.rate, 4)}
                           for k, s in sorted(self.categories.items())},
            "by_language": {f"{c}/{lang}": {"right": s.right, "total": s.total,
                                            "rate": round(s.rate, 4)}
                            for (c, lang), s in sorted(self.by_language.items())},
            "mapped": self.mapped, "wrong_auto_accepted": self.wrong_auto_accepted,
            "wrong_auto_accepted_rate": round(self.wrong_auto_accepted / self.mapped, 5)
            if self.mapped else 0.0,
            "defects_emitted": self.defects_emitted, "rows_without_outcome": self.missing,
            "files_not_ingested": sorted(self.skipped_files),
            "linkage": self.linkage, "first_errors": self.errors[:20],
        }


def _category(t: dict[str, str]) -> str:
    exp = t["expected_outcome"]
    if exp == "mapped":
        return "diagnosis" if t["expected_code_system"] == "icd10" else "lab"
    return {"quarantined": "defect"}.get(exp, exp)


def _close(got: str | None, want: str) -> bool:
    try:
        g, w = float(got or "nan"), float(want)
    except ValueError:
        return False
    return abs(g - w) <= 0.005 * abs(w) + 1e-9


def _right(cat: str, t: dict[str, str], o: dict[str, Any] | None) -> bool:
    if o is None:
        return False
    if cat == "diagnosis":
        return bool(o["outcome"] == "mapped" and o["code"] == t["expected_code"])
    if cat == "lab":
        value_ok = (_close(o["value"], t["expected_value"]) if t["expected_unit"]
                    else o["value"] == t["expected_value"])      # qualitative: SNOMED CT code
        return bool(o["outcome"] == "mapped" and o["code"] == t["expected_code"]
                    and (o["unit"] or "") == t["expected_unit"] and value_ok)
    if cat == "defect":
        return bool(o["outcome"] == "quarantined" and o["reason"] == t["expected_reason"])
    return bool(o["outcome"] == t["expected_outcome"])


def evaluate(vaults: Sequence[Vault], truth: Path, linkage: Path | None = None) -> Evaluation:
    """Score the outcomes stored in ``vaults`` (one per hospital) against ``truth``."""
    outcomes: dict[tuple[str, str], dict[str, Any]] = {}
    ingested: set[str] = set()
    for vault in vaults:
        for r in vault.iter_rows("SELECT * FROM outcomes ORDER BY rowid"):
            outcomes[(r["source_name"], r["position"])] = dict(r)
        ingested |= {str(r[0]) for r in vault.rows("SELECT DISTINCT source_name FROM files")}
    ev = Evaluation()
    with truth.open(encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        if tuple(reader.fieldnames or ()) != TRUTH_COLUMNS:
            raise GatewayError(f"truth columns {reader.fieldnames}; want {list(TRUTH_COLUMNS)}")
        for t in reader:
            if t["source_file"] not in ingested:      # a file none of the vaults has seen
                ev.skipped_files.add(t["source_file"])
                continue
            cat = _category(t)
            o = outcomes.get((t["source_file"], t["row"]))
            if o is None:
                ev.missing += 1
            ok = _right(cat, t, o)
            ev.categories[cat].total += 1
            ev.categories[cat].right += ok
            ev.by_language[(cat, t["language"])].total += 1
            ev.by_language[(cat, t["language"])].right += ok
            if o is not None and o["outcome"] == "mapped":
                ev.mapped += 1
                if t["expected_outcome"] != "mapped" or o["code"] != t["expected_code"]:
                    ev.wrong_auto_accepted += 1
                if cat == "defect":
                    ev.defects_emitted += 1
            if not ok and len(ev.errors) < 200:
                ev.errors.append({"source_file": t["source_file"], "row": t["row"],
                                  "category": cat, "want": t["expected_code"] or
                                  t["expected_reason"] or t["expected_outcome"],
                                  "got": "" if o is None else
                                  f"{o['outcome']} {o['code'] or o['reason'] or ''}".strip()})
    if linkage is not None:
        ev.linkage = _linkage(linkage, outcomes, ingested)
    return ev


def _linkage(path: Path, outcomes: dict[tuple[str, str], dict[str, Any]],
             ingested: set[str]) -> dict[str, float]:
    by_person: dict[str, list[str | None]] = defaultdict(list)
    by_subject: dict[str, list[str]] = defaultdict(list)
    with path.open(encoding="utf-8", newline="") as fh:
        for r in csv.DictReader(fh):
            if r["source_file"] not in ingested:
                continue
            o = outcomes.get((r["source_file"], r["row"]))
            subject = o["subject"] if o else None
            by_person[r["person"]].append(subject)
            if subject:
                by_subject[subject].append(r["person"])
    pairs = linked = 0
    for subjects in by_person.values():
        for a, b in combinations(subjects, 2):
            pairs += 1
            linked += a is not None and a == b
    false_merges = sum(1 for persons in by_subject.values() for a, b in
                       combinations(persons, 2) if a != b)
    return {"pairs": pairs, "linked": linked, "recall": round(linked / pairs, 5) if pairs else 1.0,
            "false_merges": false_merges, "persons": len(by_person)}
