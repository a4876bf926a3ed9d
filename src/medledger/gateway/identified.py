"""The identified side of a finished gateway run, for consumers inside the hospital (ADR 0037).

The pipeline de-identifies every row before it stores it: the vault holds keyed pseudonyms,
shifted dates and birth years, never a name, an identifier, an address or a true date. Some
work inside the hospital needs the identified record — a notifiable-disease case report
carries the true diagnosis date, the patient's district and age band, and (sealed to the CDC)
who the patient is. This module gives it to them without touching the ingest path:

1. the vault's clear tables say which rows a run *emitted* (``outcomes``: position, code
   system, code, pseudonym, record id) — the caller's ``want(code_system, code)`` selects the
   ones it needs, without decrypting anything;
2. the run's source files, which the hospital still holds, are read again with the reader and
   the profile the run used (the profile is stored in the vault); each file must have the
   SHA-256 the run recorded;
3. each selected row is standardised again with the vault's review decisions and must give
   the record id, consortium pseudonym and code the run stored (otherwise it is reported, not
   used);
4. it is returned as identified FHIR R4 resources: a ``Patient`` (``id`` = the consortium
   pseudonym; identifier, name, telephone, address, full birth date, gender from the row) and
   the ``Condition`` or ``Observation`` built by the gateway's own builders, with the true date.

Nothing here writes anything, sends anything or keeps anything: what the caller keeps is its
own business (surveillance keeps drafts sealed under the vault key). Ingest pays nothing for
this; a re-read parses a whole file but standardises only the selected rows.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medledger.gateway import fhir
from medledger.gateway.deid import Pseudonymizer, PseudonymKey
from medledger.gateway.errors import GatewayError, RowRejected
from medledger.gateway.prepare import record_id
from medledger.gateway.profile import Profile
from medledger.gateway.sources import (
    BadRow,
    FileRejected,
    SourceRow,
    read_delimited,
    read_xlsx,
    sha256_file,
)
from medledger.gateway.standardize import Standard, standardise
from medledger.gateway.terminology import Terminology
from medledger.gateway.vault import Vault

__all__ = ["RESIDENT_ID_SYSTEM", "IdentifiedRecord", "Unread", "identified_records",
           "identifier_system"]

RESIDENT_ID_SYSTEM = "urn:oid:2.16.156.10011.1.1"   # PRC resident identity card number
MRN_SYSTEM = "urn:medledger:mrn:"                    # + site: a hospital's own record number
Want = Callable[[str, str], bool]                    # (code system, code) → select the row?


@dataclass(frozen=True)
class IdentifiedRecord:
    """One emitted row of the run, identified: never store or send it in clear."""

    source_name: str
    position: str
    record_id: str          # the vault record this row became (Condition/<id>, ...)
    pseudonym: str          # the consortium pseudonym the vault record carries
    site: str
    patient: dict[str, Any]
    resource: dict[str, Any]


@dataclass(frozen=True)
class Unread:
    """A file (``position`` empty) or row of the run that could not be given, and why."""

    source_name: str
    position: str
    reason: str


@dataclass(frozen=True)
class _Emitted:
    code_system: str
    code: str
    pseudonym: str
    record_id: str


def identifier_system(namespace: str) -> str:
    """The FHIR identifier system of a gateway identity namespace (``cn-rid``, ``mrn:<site>``)."""
    if namespace == "cn-rid":
        return RESIDENT_ID_SYSTEM
    return MRN_SYSTEM + namespace.removeprefix("mrn:")


def identified_records(vault: Vault, key: PseudonymKey, run_id: str, paths: Sequence[Path],
                       want: Want, *, hl7_encoding: str = "utf-8"
                       ) -> tuple[list[IdentifiedRecord], list[Unread]]:
    """The rows run ``run_id`` emitted that ``want`` selects, re-read from ``paths`` (the
    run's source files) and identified; plus what could not be read, with the reason.

    Raises GatewayError when the vault has no such run."""
    files = vault.rows("SELECT file_hash, profile, source_name, status FROM files "
                       "WHERE run_id=? ORDER BY rowid", (run_id,))
    if not files and vault.db.execute("SELECT 1 FROM runs WHERE run_id=?",
                                      (run_id,)).fetchone() is None:
        raise GatewayError(f"the vault has no run {run_id}")
    by_hash: dict[str, list[Any]] = {}
    for f in files:
        by_hash.setdefault(f["file_hash"], []).append(f)
    given = {sha256_file(p): p for p in paths}
    unread = [Unread(str(p), "", f"not a file of run {run_id} (SHA-256 {h[:12]}…)")
              for h, p in given.items() if h not in by_hash]
    pseudo = Pseudonymizer(key)
    decisions = vault.decisions()
    out: list[IdentifiedRecord] = []
    for file_hash, entries in by_hash.items():
        emitted = _emitted(vault, file_hash, want)
        if not emitted:
            continue
        name = entries[0]["source_name"]
        path = given.get(file_hash)
        if path is None:
            unread.append(Unread(name, "", f"{len(emitted)} selected rows not read: the "
                                 "file was not given"))
            continue
        parsed: dict[str, Any] = {}
        for entry in entries:
            body = vault.profile_body(entry["profile"])
            if body is None or entry["status"] != "ingested":
                continue
            prof = Profile.model_validate_json(body)
            terms = Terminology(prof.terminology.diagnoses, prof.terminology.labs, decisions)
            try:
                rows = _rows(path, prof, parsed, hl7_encoding)
            except FileRejected as exc:
                unread.append(Unread(name, "", f"cannot be read again: {exc.detail}"))
                continue
            for row in rows:
                if not isinstance(row, SourceRow) or row.position not in emitted:
                    continue
                got = _identify(row, prof, terms, pseudo, emitted.pop(row.position), name)
                if isinstance(got, IdentifiedRecord):
                    out.append(got)
                else:
                    unread.append(got)
        unread += [Unread(name, pos, "the file no longer has this row") for pos in emitted]
    return out, unread


def _emitted(vault: Vault, file_hash: str, want: Want) -> dict[str, _Emitted]:
    """Position → outcome of every row of the file that was stored (new or duplicate) and that
    ``want`` selects; the last outcome of a position wins (a review decision re-runs a row)."""
    out: dict[str, _Emitted] = {}
    for pos, outcome, system, code, subject, rid in vault.db.execute(
            "SELECT position, outcome, code_system, code, subject, record_id FROM outcomes "
            "WHERE file_hash=? ORDER BY rowid", (file_hash,)):
        if outcome in ("mapped", "duplicate") and subject and rid and want(system, code):
            out[pos] = _Emitted(system, code, subject, rid)
        else:
            out.pop(pos, None)
    return out


def _rows(path: Path, prof: Profile, parsed: dict[str, Any], hl7_encoding: str
          ) -> Iterable[SourceRow | BadRow]:
    """The file's rows as the run read them: HL7 v2 and FHIR files by their fixed profiles
    (parsed once per file), others by the profile's format."""
    from medledger.gateway.hl7v2 import profile_for

    p = prof.profile
    if prof == profile_for(p.kind, p.site, p.source_system, "hl7", "hl7v2"):
        if "hl7" not in parsed:
            from medledger.gateway.hl7v2 import read_hl7

            parsed["hl7"] = read_hl7(path, hl7_encoding)
        return list(parsed["hl7"].rows.get(p.kind, []))
    if prof == profile_for(p.kind, p.site, p.source_system, "fhir", "fhir"):
        if "fhir" not in parsed:
            from medledger.gateway.fhirsource import read_fhir

            parsed["fhir"] = read_fhir(path, p.site)
        return list(parsed["fhir"].rows.get(p.kind, []))
    if p.format == "xlsx":
        return read_xlsx(path)[1]
    return read_delimited(path, p.encoding, prof.delimiter)[1]


def _identify(row: SourceRow, prof: Profile, terms: Terminology, pseudo: Pseudonymizer,
              hit: _Emitted, name: str) -> IdentifiedRecord | Unread:
    p = prof.profile
    try:
        std = standardise(row.values, prof, terms)
    except RowRejected as exc:
        return Unread(name, row.position, f"no longer standardises ({exc.reason})")
    pseud = pseudo.pseudonym(*std.identity)
    rid = record_id(p.site, p.source_system, p.kind, std.record_key)
    if pseud != hit.pseudonym:
        return Unread(name, row.position, "gives another pseudonym than the run stored (a "
                      "different pseudonym key?)")
    when = std.when.isoformat()
    if std.dx is not None and std.dx.who_code is not None:
        code, resource = std.dx.who_code, fhir.condition(rid, pseud, std.dx.who_code,
                                                        std.dx.national_code, when)
    elif std.lab is not None and std.lab.analyte is not None and std.result is not None:
        code, resource = std.lab.analyte.loinc, fhir.coded_observation(
            rid, pseud, std.lab.analyte, std.result, when)
    elif std.lab is not None and std.lab.analyte is not None and std.value is not None:
        code, resource = std.lab.analyte.loinc, fhir.observation(rid, pseud, std.lab.analyte,
                                                                 std.value, when)
    else:
        return Unread(name, row.position, "is no longer mapped (review decisions changed?)")
    if rid != hit.record_id or code != hit.code:
        return Unread(name, row.position, f"gives {code} / {rid[:16]}… but the run stored "
                      f"{hit.code} / {hit.record_id[:16]}…")
    return IdentifiedRecord(name, row.position, rid, pseud, p.site,
                            _patient(row, prof, std, pseud), resource)


def _patient(row: SourceRow, prof: Profile, std: Standard, pseud: str) -> dict[str, Any]:
    """The identified Patient: what the row says about the person, nothing derived."""
    def element(name: str) -> str:
        col = prof.columns.get(name)
        value = row.values.get(col) if col is not None else None
        return "" if value is None else str(value).strip()

    namespace, value = std.identity
    res: dict[str, Any] = {"resourceType": "Patient", "id": pseud,
                           "identifier": [{"system": identifier_system(namespace),
                                           "value": value}],
                           "gender": std.gender}
    if element("name"):
        res["name"] = [{"text": element("name")}]
    if element("phone"):
        res["telecom"] = [{"system": "phone", "value": element("phone")}]
    if element("address"):
        res["address"] = [{"text": element("address")}]
    if std.birth is not None:
        res["birthDate"] = std.birth.isoformat()
    return res
