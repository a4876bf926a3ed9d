"""The per-row half of the pipeline that needs no vault: standardise, pseudonymise, build and
check FHIR, scan for identifiers, serialise. Pure given its inputs, so it can run in worker
processes (``Gateway(workers=N)``); the storing half (versions, sealing, SQLite, Merkle) stays
in the process that owns the vault.

A prepared row is a plain tuple (cheap to pickle):

* ``("q", position, raw, reason, detail)`` — quarantine;
* ``("r", position, values_json, kind, term, review_reason, candidates_json)`` — review;
* ``("e", position, raw, pseudonym, patient_json, patient_hash, patient_v1, resource_id,
  resource_type, resource_json, resource_hash, resource_v1, outcome, partial)`` — emit;
  ``*_hash`` is the SHA-256 (hex) of the canonical JSON, ``*_v1`` the record sealed as
  version 1 (:func:`envelope.seal`; ``patient_v1`` only where this preparer first meets the
  Patient, else None), ``outcome`` is (code system, code, unit, value); ``partial`` when the
  row lacks the birth date or sex (its Patient never replaces a fuller one already stored).
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Sequence
from datetime import date
from typing import Any

import orjson

from medledger.gateway import envelope, fhir
from medledger.gateway.deid import Pseudonymizer, PseudonymKey, generalise_birth
from medledger.gateway.envelope import Origin, canonical
from medledger.gateway.errors import Reason, RowRejected
from medledger.gateway.profile import Profile
from medledger.gateway.scan import row_leaks
from medledger.gateway.sources import BadRow, SourceRow, parse_block
from medledger.gateway.standardize import Standard, standardise
from medledger.gateway.terminology import Terminology
from medledger.gateway.vault import Sealer

__all__ = ["Prepared", "Preparer", "canonical", "record_id", "worker_block", "worker_chunk",
           "worker_init"]

Prepared = tuple[Any, ...]


def record_id(site: str, system: str, kind: str, key: str) -> str:
    scope, prefix = _record_scope(site, system, kind)
    return prefix + hashlib.sha256(scope + key.encode()).hexdigest()[:40]


@functools.lru_cache(maxsize=256)
def _record_scope(site: str, system: str, kind: str) -> tuple[bytes, str]:
    prefix = {"medication_request": "mrq", "medication_dispense": "mdp"}.get(kind, kind[:3])
    return f"{site}\x00{system}\x00{kind}\x00".encode(), f"{prefix}-"


class Preparer:
    """Prepares the rows of files read with one profile; ``origin`` names the file (set it
    before each file's rows: the version-1 seals carry it)."""

    def __init__(self, prof: Profile, decisions: dict[tuple[str, str], str], key: PseudonymKey,
                 today: date, sealer: Sealer, origin: Origin,
                 full_validation: bool = False) -> None:
        self.prof = prof
        self.terms = Terminology(prof.terminology.diagnoses, prof.terminology.labs, decisions)
        self.pseudo = Pseudonymizer(key)
        self.validator = fhir.Validator(full=full_validation)
        self.today = today
        self.sealer = sealer
        self.origin = origin
        # (pseudonym, gender, birth year) → (Patient JSON, its hash, identifiers scanned in it)
        self._patients: dict[tuple[str, str, str | None], tuple[bytes, str, tuple[str, ...]]] = {}

    def chunk(self, rows: Sequence[SourceRow | BadRow]) -> list[Prepared]:
        return [self.row(r) for r in rows]

    def row(self, row: SourceRow | BadRow) -> Prepared:
        if isinstance(row, BadRow):
            return ("q", row.position, row.raw, str(Reason.PARSE), row.detail)
        try:
            std = standardise(row.values, self.prof, self.terms)
            match = std.dx or std.lab
            if match is not None and match.review is not None:
                cands = [{"target": c.target, "term": c.term, "score": c.score}
                         for c in match.candidates]
                return ("r", row.position, orjson.dumps(row.values, default=str),
                        "dx" if std.dx is not None else "lab", std.term, str(match.review),
                        orjson.dumps(cands).decode())
            return self._emit(row, std)
        except RowRejected as exc:
            return ("q", row.position, row.raw, str(exc.reason), exc.detail)

    def _emit(self, row: SourceRow, std: Standard) -> Prepared:
        prof = self.prof.profile
        pseud = self.pseudo.pseudonym(*std.identity)
        when = self.pseudo.shift(pseud, std.when).isoformat()
        rid = record_id(prof.site, prof.source_system, prof.kind, std.record_key)
        out: tuple[str, str, str | None, str | None]
        if std.med is not None:
            built = fhir.built_medication(prof.kind, rid, pseud, std.med, when)
            out = ("medication", std.med[1], None, None)
        elif std.dx is not None:
            assert std.dx.who_code is not None
            built = fhir.built_condition(rid, pseud, std.dx.who_code, std.dx.national_code, when)
            out = ("icd10", std.dx.who_code, None, None)
        elif std.result is not None:     # a qualitative lab result (gateway.qualitative)
            assert std.lab is not None and std.lab.analyte is not None
            built = fhir.built_coded_observation(rid, pseud, std.lab.analyte, std.result, when)
            out = ("loinc", std.lab.analyte.loinc, None, std.result[0])
        else:
            assert std.lab is not None and std.lab.analyte is not None and std.value is not None
            a = std.lab.analyte
            built = fhir.built_observation(rid, pseud, a, std.value, when)
            out = ("loinc", a.loinc, a.unit, f"{std.value:g}")
        year = generalise_birth(std.birth, self.today)
        pat_key = (pseud, std.gender, year)
        pat = self._patients.get(pat_key)
        pat_v1 = None
        if pat is None:                 # patients repeat across rows: build and check once
            built_pat = fhir.built_patient(pseud, self.pseudo.key.version, std.gender, year)
            self.validator.check_built(built_pat, lambda _: True)
            pat_text = canonical(built_pat.resource)
            pat = (pat_text, hashlib.sha256(pat_text).hexdigest(), ())
            if len(self._patients) >= 100_000:
                self._patients.clear()
            self._patients[pat_key] = pat
            pat_v1 = self._seal_v1(row.position, f"pat-{pseud}", pat_text)
        res_text = canonical(built.resource)
        self.validator.check_built(built, lambda p: p == pseud)
        # the Patient's bytes need scanning once per set of identifiers, not on every row
        leak = row_leaks(std.identifiers, (res_text,) if pat[2] == std.identifiers else
                         (pat[0], res_text))
        if leak:
            raise RowRejected(Reason.INVALID_FHIR, f"direct identifier would reach output ({leak})")
        if pat[2] != std.identifiers:
            self._patients[pat_key] = (pat[0], pat[1], std.identifiers)
        partial = std.birth is None or std.gender == "unknown"
        return ("e", row.position, row.raw, pseud, pat[0], pat[1], pat_v1, rid,
                built.resource["resourceType"], res_text, hashlib.sha256(res_text).hexdigest(),
                self._seal_v1(row.position, rid, res_text), out, partial)

    def _seal_v1(self, position: str, rid: str, text: bytes) -> envelope.Sealed:
        return envelope.seal(self.sealer, self.origin, position, rid, 1, None, text)


# -- worker processes ------------------------------------------------------------------------
_WORKER: dict[str, Preparer] = {}


_CFG: dict[str, Any] = {}


def worker_init(key_version: str, secret: bytes, vault_key: bytes, today: str,
                full: bool) -> None:
    """Set up a worker process of one run: the pseudonym key and the vault key (the version-1
    seals are made here), kept in this process's memory only."""
    _WORKER.clear()
    _CFG.update(key=PseudonymKey(key_version, secret), sealer=Sealer(vault_key),
                today=date.fromisoformat(today), full=full)


def _worker_preparer(prof_json: bytes, decisions: list[tuple[str, str, str]],
                     origin: Origin) -> Preparer:
    """This worker's preparer for a profile and decision list (cached per process), set to
    prepare rows of ``origin``."""
    cache_key = prof_json.decode() + repr(len(decisions))
    prep = _WORKER.get(cache_key)
    if prep is None:
        prof = Profile.model_validate_json(prof_json)
        prep = Preparer(prof, {(k, t): v for k, t, v in decisions}, _CFG["key"],
                        _CFG["today"], _CFG["sealer"], origin, _CFG["full"])
        _WORKER[cache_key] = prep
    prep.origin = origin
    return prep


def worker_chunk(prof_json: bytes, decisions: list[tuple[str, str, str]], origin: Origin,
                 rows: list[SourceRow | BadRow]) -> list[Prepared]:
    """Prepare ``rows`` in a worker."""
    return _worker_preparer(prof_json, decisions, origin).chunk(rows)


def worker_block(prof_json: bytes, decisions: list[tuple[str, str, str]], origin: Origin,
                 header: list[str], encoding: str, delimiter: str, start: int,
                 lines: list[str]) -> list[Prepared]:
    """Parse one block of a delimited file (:func:`sources.delimited_blocks`) and prepare
    its rows in a worker."""
    rows = parse_block(lines, start, header, encoding, delimiter)
    return _worker_preparer(prof_json, decisions, origin).chunk(rows)
