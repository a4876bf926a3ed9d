"""One source row → the gateway's data elements, or a reason why not.

Checks run in a fixed order so a row with one defect always gets the same reason: record key,
patient identifier, sex, birth date, event date, then terminology (which may send the row to
review), then for labs the value, unit, conversion and plausible range.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from typing import Any

from medledger.gateway import loinc, qualitative
from medledger.gateway.dates import parse_date
from medledger.gateway.errors import Reason, RowRejected
from medledger.gateway.identifiers import normalise_rid, valid_rid
from medledger.gateway.profile import ELEMENTS, IDENTIFIER_ELEMENTS, Profile
from medledger.gateway.terminology import DxMatch, LabMatch, Terminology
from medledger.gateway.units import to_ucum

SEX_DEFAULT = {"m": "male", "male": "male", "男": "male", "f": "female", "female": "female",
               "女": "female", "u": "unknown", "unknown": "unknown", "未知": "unknown",
               "o": "other", "other": "other"}
_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")


@dataclass(slots=True)
class Standard:
    record_key: str
    identity: tuple[str, str]           # (namespace, normalised identifier) for the pseudonym
    identifiers: tuple[str, ...]        # every direct identifier in the row (for the leak scan)
    gender: str
    birth: date | None
    when: date
    dx: DxMatch | None = None
    lab: LabMatch | None = None
    value: float | None = None          # lab value in the analyte's canonical unit
    term: str = ""                      # the source term or test name (for review)
    med: tuple[str, str, str] | None = None  # (system URI, code, display) of a medication
    result: tuple[str, str] | None = None   # SNOMED CT (code, display) of a qualitative lab


_NO_ELEMENTS = dict.fromkeys(ELEMENTS, "")


def _elements(values: dict[str, Any], prof: Profile) -> dict[str, str]:
    """Every data element of the row as stripped text ("" when absent or not mapped)."""
    out = _NO_ELEMENTS.copy()
    for element, col in prof.columns.items():
        v = values.get(col)
        out[element] = "" if v is None else (v.strip() if type(v) is str else str(v).strip())
    return out


def _identity(values: dict[str, str], prof: Profile) -> tuple[str, str]:
    rid = normalise_rid(values["patient_id"])
    if rid:
        if not valid_rid(rid):
            raise RowRejected(Reason.INVALID_IDENTIFIER, "resident ID fails its check digit "
                              "or has the wrong length")
        return "cn-rid", rid
    mrn = values["mrn"]
    if not mrn:
        raise RowRejected(Reason.MISSING_KEY, "no patient identifier (resident ID or MRN)")
    return f"mrn:{prof.profile.site}", mrn


def _gender(values: dict[str, str], prof: Profile) -> str:
    raw = values["sex"]
    if not raw:
        return "unknown"
    table = prof.values.get("sex", {})
    hit = table.get(raw) or SEX_DEFAULT.get(raw.lower())
    if hit is None:
        raise RowRejected(Reason.INVALID_VALUE, f"sex {raw!r} is in no value map")
    return hit


def _lab_value(values: dict[str, str], prof: Profile, analyte: loinc.Analyte) -> float:
    raw = values["value"].replace("，", ".")
    if not raw:
        raise RowRejected(Reason.MISSING_VALUE, "lab value is empty")
    if not _NUMBER.match(raw):
        raise RowRejected(Reason.INVALID_VALUE, f"lab value {raw!r} is not a number")
    unit_raw = values["unit"] or (prof.profile.default_unit or "")
    if not unit_raw:
        raise RowRejected(Reason.UNKNOWN_UNIT, "no unit and the profile declares no default")
    ucum = to_ucum(prof.units.get(unit_raw, unit_raw))
    if ucum is None:
        raise RowRejected(Reason.UNKNOWN_UNIT, f"unit {unit_raw!r} is not known")
    value = analyte.convert(float(raw), ucum)
    if value is None:
        raise RowRejected(Reason.UNIT_CONFLICT, f"{analyte.key} cannot be expressed in "
                          f"{ucum!r} (want {analyte.unit} or one of {sorted(analyte.factors)})")
    if not analyte.low <= value <= analyte.high:
        raise RowRejected(Reason.IMPLAUSIBLE_VALUE, f"{analyte.key} {value} {analyte.unit} "
                          f"outside {analyte.low}..{analyte.high}")
    return value


MED_SYSTEMS = {"ndc": "http://hl7.org/fhir/sid/ndc",
               "rxnorm": "http://www.nlm.nih.gov/research/umls/rxnorm",
               "rxn": "http://www.nlm.nih.gov/research/umls/rxnorm",
               "atc": "http://www.whocc.no/atc"}


def _medication(values: dict[str, str], prof: Profile) -> tuple[str, str, str]:
    """Drug codes pass through with their system (no drug terminology is mapped yet); a code
    without a known system is kept as the hospital's local code."""
    code, name = values["med_code"], values["med_name"]
    if not code:
        raise RowRejected(Reason.MISSING_VALUE, "medication has no code")
    raw_sys = values["med_system"]
    system = MED_SYSTEMS.get(raw_sys.lower(), f"urn:medledger:local-drug:{prof.profile.site}")
    return system, code, name or code


def standardise(values: dict[str, Any], prof: Profile, terms: Terminology) -> Standard:
    """Raise ``RowRejected`` for a bad row; a ``Standard`` whose match is a review otherwise."""
    values, raw = _elements(values, prof), values
    key = values["record_key"]
    if not key:
        raise RowRejected(Reason.MISSING_KEY, f"column {prof.columns['record_key']!r} is empty")
    identity = _identity(values, prof)
    idents = tuple(v for e in IDENTIFIER_ELEMENTS if (v := values[e]))
    gender = _gender(values, prof)
    fmts = prof.profile.date_formats
    birth = (parse_date(raw[prof.columns["birth_date"]], fmts) if values["birth_date"]
             else None)
    if not values["date"]:
        raise RowRejected(Reason.MISSING_VALUE, "event date is empty")
    when = parse_date(raw[prof.columns["date"]], fmts)
    if prof.profile.kind.startswith("medication"):
        med = _medication(values, prof)
        return Standard(key, identity, idents, gender, birth, when, med=med, term=med[2])
    if prof.profile.kind == "diagnosis":
        code, term = values["dx_code"], values["dx_term"]
        dx = terms.diagnosis(code or None, term or None)
        return Standard(key, identity, idents, gender, birth, when, dx=dx, term=term or code)
    code, name = values["test_code"], values["test_name"]
    lab = terms.lab(code or None, name or None)
    if lab.analyte is not None and lab.analyte.scale != "Qn":    # gateway.qualitative
        return Standard(key, identity, idents, gender, birth, when, lab=lab, term=name or code,
                        result=qualitative.result(values["value"], prof, lab.analyte))
    value = _lab_value(values, prof, lab.analyte) if lab.analyte is not None else None
    return Standard(key, identity, idents, gender, birth, when, lab=lab, value=value,
                    term=name or code)
