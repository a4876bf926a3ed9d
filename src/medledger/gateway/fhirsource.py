"""FHIR R4 input: a Bundle (JSON) or NDJSON (one resource per line) → gateway rows.

Mapped: ``Condition`` (ICD-10 coding, else its text) → diagnosis; ``Observation`` with a
``valueQuantity`` (LOINC coding, else its text; value; unit code or unit) → lab;
``MedicationRequest`` / ``MedicationDispense`` with a medication coding → medication rows.
The subject must reference a ``Patient`` in the same file; the Patient's identity comes from an
identifier whose value is a valid resident ID (shared namespace), else from its first
identifier (namespaced by its system and the site). Patients themselves, and every other
resource type, are listed as ignored with a reason. A line or entry that is not JSON, or not a
valid R4B resource, is a ``parse`` row. Positions are the 1-based NDJSON line or Bundle entry.
NDJSON is read twice as a stream (Patients first); a Bundle is loaded whole.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from medledger.gateway import icd10, loinc
from medledger.gateway.errors import Reason
from medledger.gateway.identifiers import normalise_rid, valid_rid
from medledger.gateway.sources import BadRow, FileRejected, SourceRow, check_file

KIND_OF = {"Condition": "diagnosis", "Observation": "lab",
           "MedicationRequest": "medication_request",
           "MedicationDispense": "medication_dispense"}
_MED_SYSTEMS = {"http://hl7.org/fhir/sid/ndc": "NDC",
                "http://www.nlm.nih.gov/research/umls/rxnorm": "RXNORM",
                "http://www.whocc.no/atc": "ATC"}


@dataclass
class FhirFile:
    file_hash: str
    resources: int = 0
    rows: dict[str, list[SourceRow | BadRow]] = field(default_factory=dict)
    ignored: list[tuple[str, str, str]] = field(default_factory=list)   # (position, type, why)


def _entries(path: Path) -> Iterator[tuple[str, bytes]]:
    data_start = path.open("rb").read(64).lstrip(b"\xef\xbb\xbf").lstrip()
    if data_start.startswith(b"{") and path.suffix.lower() != ".ndjson":
        doc = orjson.loads(path.read_bytes().lstrip(b"\xef\xbb\xbf"))
        if doc.get("resourceType") == "Bundle":
            for i, e in enumerate(doc.get("entry") or [], 1):
                yield str(i), orjson.dumps(e.get("resource"))
            return
        yield "1", orjson.dumps(doc)
        return
    with path.open("rb") as fh:
        for i, line in enumerate(fh, 1):
            if line.strip():
                yield str(i), line.strip().lstrip(b"\xef\xbb\xbf")


def _validate(res: dict[str, Any]) -> str | None:
    from medledger.gateway.fhir import Validator

    try:
        Validator(full=True).structure(res)
    except Exception as exc:  # RowRejected or a model import problem: report, never crash
        return str(exc)
    return None


def _identity(pat: dict[str, Any], site: str) -> dict[str, str]:
    ids = pat.get("identifier") or []
    out = {"rid": "", "mrn": "", "sex": str(pat.get("gender") or ""),
           "birth": str(pat.get("birthDate") or "")}
    for ident in ids:
        value = str(ident.get("value") or "")
        if valid_rid(normalise_rid(value)):
            out["rid"] = value
            return out
    if ids:
        first = ids[0]
        out["mrn"] = f"{first.get('system') or site}|{first.get('value') or ''}"
    elif pat.get("id"):
        out["mrn"] = f"{site}|Patient/{pat['id']}"
    return out


def _coding(concept: dict[str, Any], systems: tuple[str, ...]) -> tuple[str, str, str]:
    for c in concept.get("coding") or []:
        if c.get("system") in systems:
            return str(c.get("code") or ""), str(c.get("display") or ""), str(c["system"])
    return "", str(concept.get("text") or ""), ""


def _row(res: dict[str, Any], pos: str, who: dict[str, str], raw: bytes) -> SourceRow:
    kind = res["resourceType"]
    base = {**who, "key": f"{kind}/{res.get('id') or pos}"}
    if kind == "Condition":
        code, text, _ = _coding(res.get("code") or {}, (icd10.WHO_SYSTEM, icd10.NATIONAL_SYSTEM))
        vals = {**base, "code": code, "term": text or str((res.get("code") or {}).get("text")
                                                            or ""),
                "date": str(res.get("recordedDate") or res.get("onsetDateTime") or "")}
    elif kind == "Observation":
        code, text, _ = _coding(res.get("code") or {}, (loinc.LOINC_SYSTEM,))
        q = res.get("valueQuantity") or {}
        vals = {**base, "code": code, "term": text,
                "value": "" if q.get("value") is None else str(q["value"]),
                "unit": str(q.get("code") or q.get("unit") or ""),
                "date": str(res.get("effectiveDateTime") or res.get("issued") or "")}
    else:
        code, text, system = _coding(res.get("medicationCodeableConcept") or {},
                                     tuple(_MED_SYSTEMS))
        vals = {**base, "code": code, "term": text, "system": _MED_SYSTEMS.get(system, ""),
                "date": str(res.get("authoredOn") or res.get("whenHandedOver") or "")}
    return SourceRow(pos, vals, raw)


def read_fhir(path: Path, site: str) -> FhirFile:
    out = FhirFile(check_file(path, "utf-8"))       # FileRejected(encoding) propagates
    patients: dict[str, dict[str, str]] = {}
    try:
        for _pos, raw in _entries(path):
            try:
                res = orjson.loads(raw)
            except orjson.JSONDecodeError:
                continue
            if isinstance(res, dict) and res.get("resourceType") == "Patient" and res.get("id"):
                patients[f"Patient/{res['id']}"] = _identity(res, site)
        for pos, raw in _entries(path):
            out.resources += 1
            _one(out, pos, raw, patients)
    except orjson.JSONDecodeError as exc:
        raise FileRejected(Reason.PARSE, f"not a JSON document: {exc}") from None
    return out


def _one(out: FhirFile, pos: str, raw: bytes, patients: dict[str, dict[str, str]]) -> None:
    try:
        res = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        out.rows.setdefault("diagnosis", []).append(BadRow(pos, raw, f"not JSON: {exc}"))
        return
    rtype = res.get("resourceType") if isinstance(res, dict) else None
    kind = KIND_OF.get(str(rtype))
    if rtype == "Patient":
        out.ignored.append((pos, "Patient", "identity source: emitted pseudonymised with the "
                            "records that reference it"))
        return
    if kind is None:
        out.ignored.append((pos, str(rtype), f"{rtype} resources are not mapped"))
        return
    if kind == "lab" and "valueQuantity" not in res:
        out.ignored.append((pos, "Observation", "no valueQuantity (not a numeric lab result)"))
        return
    problem = _validate(res)
    if problem is not None:
        out.rows.setdefault(kind, []).append(BadRow(pos, raw, f"not a valid R4B {rtype}: "
                                                    f"{problem}"))
        return
    ref = str((res.get("subject") or {}).get("reference") or "")
    who = patients.get(ref, {"rid": "", "mrn": "", "sex": "", "birth": ""})
    out.rows.setdefault(kind, []).append(_row(res, pos, who, raw))
