"""FHIR R4 output: building Patient, Condition and Observation resources and checking them.

Checks, in order (ADR 0015):

1. **Structure** — fhir.resources' R4B models (R4B is the library's R4-compatible package).
   Validating every resource costs ~250 µs here, more than the whole rest of the pipeline, so
   by default each *shape* (the tree of keys, list lengths and value types) is validated once
   with the models, and every later resource of a validated shape has its leaves checked
   against the FHIR primitive rules of their types (id, date, dateTime, decimal, code,
   string; strings with outer whitespace are refused, which the models allow). Resources the
   pipeline builds go faster still (:meth:`Validator.check_built`): their template (all but
   the varying leaves) is validated once, the varying leaves every time. ``full=True``
   validates every resource with the models instead; a unit test cross-checks both on
   generated and broken resources.
2. **The gateway's own checks**, which the library does not do: required-binding codes
   (gender, Observation.status, Condition clinical/verification status), obs-6 (no value with
   dataAbsentReason), a LOINC or ICD-10 coding present, the Observation unit equal to its
   analyte's canonical unit and the value inside the analyte's plausible range, and the subject
   reference pointing to a Patient the gateway emitted.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import Any

from pydantic import ValidationError

from medledger.gateway import icd10, loinc, qualitative
from medledger.gateway.errors import Reason, RowRejected

CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
VERIFICATION = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
CONDITION_CATEGORY = "http://terminology.hl7.org/CodeSystem/condition-category"
OBS_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
PSEUDONYM_SYSTEM = "urn:medledger:pseudonym:"

GENDERS = frozenset({"male", "female", "other", "unknown"})
OBS_STATUS = frozenset({"registered", "preliminary", "final", "amended", "corrected",
                        "cancelled", "entered-in-error", "unknown"})
CLINICAL_CODES = frozenset({"active", "recurrence", "relapse", "inactive", "remission",
                            "resolved"})
MED_REQUEST_STATUS = frozenset({"active", "on-hold", "cancelled", "completed",
                                "entered-in-error", "stopped", "draft", "unknown"})
MED_DISPENSE_STATUS = frozenset({"preparation", "in-progress", "cancelled", "on-hold",
                                 "completed", "entered-in-error", "stopped", "declined",
                                 "unknown"})
VERIFICATION_CODES = frozenset({"unconfirmed", "provisional", "differential", "confirmed",
                                "refuted", "entered-in-error"})

# FHIR R4 primitive rules (hl7.org/fhir/R4/datatypes.html)
_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
_DATE = re.compile(r"^([0-9]([0-9]([0-9][1-9]|[1-9]0)|[1-9]00)|[1-9]000)"
                   r"(-(0[1-9]|1[0-2])(-(0[1-9]|[1-2][0-9]|3[0-1]))?)?$")
_CODE = re.compile(r"^[^\s]+(\s[^\s]+)*$")
_LEAF_RULES: dict[str, re.Pattern[str]] = {
    "id": _ID, "birthDate": _DATE, "recordedDate": _DATE, "effectiveDateTime": _DATE,
    "onsetDateTime": _DATE, "authoredOn": _DATE, "whenHandedOver": _DATE, "code": _CODE,
    "gender": _CODE, "status": _CODE,
}


def patient(pseudonym: str, key_version: str, gender: str, birth_year: str | None
            ) -> dict[str, Any]:
    res: dict[str, Any] = {
        "resourceType": "Patient", "id": pseudonym,
        "identifier": [{"system": PSEUDONYM_SYSTEM + key_version, "value": pseudonym}],
        "gender": gender,
    }
    if birth_year is not None:
        res["birthDate"] = birth_year
    return res


def condition(rid: str, subject: str, who: str, national: str | None, recorded: str
              ) -> dict[str, Any]:
    concept = icd10.WHO[who]
    codings: list[dict[str, Any]] = [{"system": icd10.WHO_SYSTEM, "version": icd10.WHO_EDITION,
                                      "code": who, "display": concept.en}]
    if national is not None:
        codings.append({"system": icd10.NATIONAL_SYSTEM, "version": icd10.NATIONAL_EDITION,
                        "code": national, "display": icd10.NATIONAL[national][1]})
    return {
        "resourceType": "Condition", "id": rid,
        "clinicalStatus": {"coding": [{"system": CLINICAL, "code": "active"}]},
        "verificationStatus": {"coding": [{"system": VERIFICATION, "code": "confirmed"}]},
        "category": [{"coding": [{"system": CONDITION_CATEGORY,
                                  "code": "encounter-diagnosis"}]}],
        "code": {"coding": codings},
        "subject": {"reference": f"Patient/{subject}"},
        "recordedDate": recorded,
    }


def _lab_observation(rid: str, subject: str, analyte: loinc.Analyte, effective: str
                     ) -> dict[str, Any]:
    """What every laboratory Observation carries; the caller adds its value."""
    return {
        "resourceType": "Observation", "id": rid, "status": "final",
        "category": [{"coding": [{"system": OBS_CATEGORY, "code": "laboratory"}]}],
        "code": {"coding": [{"system": loinc.LOINC_SYSTEM, "code": analyte.loinc,
                             "display": analyte.display}]},
        "subject": {"reference": f"Patient/{subject}"},
        "effectiveDateTime": effective,
    }


def observation(rid: str, subject: str, analyte: loinc.Analyte, value: float, effective: str
                ) -> dict[str, Any]:
    return {**_lab_observation(rid, subject, analyte, effective),
            "valueQuantity": {"value": value, "unit": analyte.unit,
                              "system": loinc.UCUM_SYSTEM, "code": analyte.unit}}


def coded_observation(rid: str, subject: str, analyte: loinc.Analyte, result: tuple[str, str],
                      effective: str) -> dict[str, Any]:
    """An Observation of a qualitative test (LOINC scale Ord): ``valueCodeableConcept`` with the
    SNOMED CT (code, display) of ``gateway.qualitative``."""
    code, display = result
    return {
        **_lab_observation(rid, subject, analyte, effective),
        "valueCodeableConcept": {"coding": [{"system": qualitative.SNOMED_SYSTEM, "code": code,
                                             "display": display}]},
    }


def medication_request(rid: str, subject: str, med: tuple[str, str, str], authored: str
                       ) -> dict[str, Any]:
    system, code, display = med
    return {"resourceType": "MedicationRequest", "id": rid, "status": "active",
            "intent": "order",
            "medicationCodeableConcept": {"coding": [{"system": system, "code": code,
                                                      "display": display}]},
            "subject": {"reference": f"Patient/{subject}"}, "authoredOn": authored}


def medication_dispense(rid: str, subject: str, med: tuple[str, str, str], handed: str
                        ) -> dict[str, Any]:
    system, code, display = med
    return {"resourceType": "MedicationDispense", "id": rid, "status": "completed",
            "medicationCodeableConcept": {"coding": [{"system": system, "code": code,
                                                      "display": display}]},
            "subject": {"reference": f"Patient/{subject}"}, "whenHandedOver": handed}


@dataclass(slots=True)
class Built:
    """A resource built by this module, with its template key (everything that is the same
    for every resource of the template) and the leaves that vary (checked per resource)."""

    resource: dict[str, Any]
    template: tuple[Any, ...]
    leaves: tuple[tuple[str, Any], ...]


def built_patient(pseudonym: str, key_version: str, gender: str, birth_year: str | None
                  ) -> Built:
    res = patient(pseudonym, key_version, gender, birth_year)
    leaves = (("id", pseudonym), ("value", pseudonym)) + (
        (("birthDate", birth_year),) if birth_year is not None else ())
    return Built(res, ("Patient", key_version, gender, birth_year is None), leaves)


def built_condition(rid: str, subject: str, who: str, national: str | None, recorded: str
                    ) -> Built:
    res = condition(rid, subject, who, national, recorded)
    return Built(res, ("Condition", who, national), (
        ("id", rid), ("reference", f"Patient/{subject}"), ("recordedDate", recorded)))


def built_observation(rid: str, subject: str, analyte: loinc.Analyte, value: float,
                      effective: str) -> Built:
    res = observation(rid, subject, analyte, value, effective)
    return Built(res, ("Observation", analyte.key, type(value).__name__), (
        ("id", rid), ("reference", f"Patient/{subject}"), ("effectiveDateTime", effective),
        ("value", value)))


def built_coded_observation(rid: str, subject: str, analyte: loinc.Analyte,
                            result: tuple[str, str], effective: str) -> Built:
    res = coded_observation(rid, subject, analyte, result, effective)
    return Built(res, ("Observation", analyte.key, result[0]), (
        ("id", rid), ("reference", f"Patient/{subject}"), ("effectiveDateTime", effective)))


def built_medication(kind: str, rid: str, subject: str, med: tuple[str, str, str], when: str
                     ) -> Built:
    if kind == "medication_request":
        res, date_key = medication_request(rid, subject, med, when), "authoredOn"
    else:
        res, date_key = medication_dispense(rid, subject, med, when), "whenHandedOver"
    return Built(res, (res["resourceType"], med[0]), (
        ("id", rid), ("code", med[1]), ("display", med[2]), ("reference", f"Patient/{subject}"),
        (date_key, when)))


def _models() -> dict[str, Callable[[dict[str, Any]], Any]]:
    from fhir.resources.R4B.condition import Condition
    from fhir.resources.R4B.medicationdispense import MedicationDispense
    from fhir.resources.R4B.medicationrequest import MedicationRequest
    from fhir.resources.R4B.observation import Observation
    from fhir.resources.R4B.patient import Patient

    return {"Patient": Patient.model_validate, "Condition": Condition.model_validate,
            "Observation": Observation.model_validate,
            "MedicationRequest": MedicationRequest.model_validate,
            "MedicationDispense": MedicationDispense.model_validate}


def _shape(node: Any, leaves: list[tuple[str, Any]], key: str = "") -> Any:
    if isinstance(node, dict):
        return tuple((k, _shape(v, leaves, k)) for k, v in node.items())
    if isinstance(node, list):
        return ("[", *(_shape(v, leaves, key) for v in node))
    leaves.append((key, node))
    return type(node).__name__


class Validator:
    """Structural (fhir.resources R4B) plus the gateway's own checks; see the module doc."""

    def __init__(self, full: bool = False) -> None:
        self.full = full
        self._models = _models()
        self._shapes: set[Any] = set()
        self._templates: set[tuple[Any, ...]] = set()
        self.model_validations = 0

    def structure(self, res: dict[str, Any]) -> None:
        kind = res.get("resourceType")
        model = self._models.get(str(kind))
        if model is None:
            raise RowRejected(Reason.INVALID_FHIR, f"resourceType {kind!r} is not supported")
        if not self.full:
            leaves: list[tuple[str, Any]] = []
            shape = _shape(res, leaves)
            if shape in self._shapes:
                for key, value in leaves:
                    _check_leaf(key, value)
                return
        try:
            self.model_validations += 1
            model(res)
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err["loc"])
            raise RowRejected(Reason.INVALID_FHIR, f"{kind}.{where}: {err['msg']}") from None
        if not self.full and len(self._shapes) < 10_000:
            self._shapes.add(shape)

    def check_built(self, built: Built, patients: Callable[[str], bool]) -> None:
        """Like :meth:`check` for a resource this module built: the models validate the first
        resource of each template; later ones have only their varying leaves checked."""
        if self.full or built.template not in self._templates:
            self.structure(built.resource)
            if len(self._templates) < 10_000:
                self._templates.add(built.template)
        else:
            for key, value in built.leaves:
                _check_leaf(key, value)
        self._own(built.resource, patients)

    def check(self, res: dict[str, Any], patients: Callable[[str], bool]) -> None:
        """Structure, then the gateway's own checks; ``patients(id)`` says a Patient exists."""
        self.structure(res)
        self._own(res, patients)

    def _own(self, res: dict[str, Any], patients: Callable[[str], bool]) -> None:
        kind = res["resourceType"]
        if kind == "Patient":
            if res.get("gender") not in GENDERS:
                raise RowRejected(Reason.INVALID_FHIR, f"gender {res.get('gender')!r}; want one "
                                  f"of {sorted(GENDERS)}")
            return
        ref = res.get("subject", {}).get("reference", "")
        if not ref.startswith("Patient/") or not patients(ref[8:]):
            raise RowRejected(Reason.INVALID_FHIR, f"subject {ref!r} is not an emitted Patient")
        if kind == "Observation":
            _check_observation(res)
        elif kind == "Condition":
            _check_condition(res)
        elif kind in ("MedicationRequest", "MedicationDispense"):
            bound = MED_REQUEST_STATUS if kind == "MedicationRequest" else MED_DISPENSE_STATUS
            if res.get("status") not in bound:
                raise RowRejected(Reason.INVALID_FHIR, f"{kind}.status {res.get('status')!r} "
                                  "is not bound")
            if not res.get("medicationCodeableConcept", {}).get("coding"):
                raise RowRejected(Reason.INVALID_FHIR, f"{kind} has no medication coding")


def _real_date(value: str) -> bool:
    if len(value) != 10:
        return True
    try:
        date.fromisoformat(value)
    except ValueError:
        return False
    return True


def _check_leaf(key: str, value: Any) -> None:
    if isinstance(value, str):
        rule = _LEAF_RULES.get(key)
        ok = rule.match(value) is not None if rule else (value != "" and value.strip() == value)
        ok = ok and (rule is not _DATE or _real_date(value))
    elif isinstance(value, bool):
        ok = True
    elif isinstance(value, int | float):
        ok = math.isfinite(value)
    else:
        ok = False
    if not ok:
        raise RowRejected(Reason.INVALID_FHIR, f"{key}: {value!r} is not a valid FHIR value")


def _codes(concept: dict[str, Any], system: str) -> list[str]:
    return [c.get("code", "") for c in concept.get("coding", []) if c.get("system") == system]


def _check_observation(res: dict[str, Any]) -> None:
    if res.get("status") not in OBS_STATUS:
        raise RowRejected(Reason.INVALID_FHIR, f"status {res.get('status')!r}; want one of "
                          f"{sorted(OBS_STATUS)}")
    if "dataAbsentReason" in res and any(k.startswith("value") for k in res):
        raise RowRejected(Reason.INVALID_FHIR, "obs-6: value and dataAbsentReason together")
    codes = _codes(res.get("code", {}), loinc.LOINC_SYSTEM)
    analyte = loinc.BY_LOINC.get(codes[0]) if codes else None
    if analyte is None:
        raise RowRejected(Reason.INVALID_FHIR, f"no known LOINC code in {codes}")
    if analyte.scale != "Qn" or "valueCodeableConcept" in res:
        _check_coded(res, analyte)
        return
    q = res.get("valueQuantity")
    if q is not None:
        if q.get("code") != analyte.unit or q.get("system") != loinc.UCUM_SYSTEM:
            raise RowRejected(Reason.UNIT_CONFLICT, f"unit {q.get('code')!r}; want "
                              f"{analyte.unit!r} (UCUM) for {analyte.key}")
        if not analyte.low <= q["value"] <= analyte.high:
            raise RowRejected(Reason.IMPLAUSIBLE_VALUE, f"{analyte.key} {q['value']} "
                              f"{analyte.unit} outside {analyte.low}..{analyte.high}")


def _check_coded(res: dict[str, Any], analyte: loinc.Analyte) -> None:
    """A qualitative test has a SNOMED CT result of ``gateway.qualitative`` and no quantity;
    a quantitative one has no coded result."""
    if analyte.scale == "Qn":
        raise RowRejected(Reason.INVALID_FHIR, f"{analyte.key} is quantitative: want "
                          "valueQuantity, not valueCodeableConcept")
    if "valueQuantity" in res:
        raise RowRejected(Reason.INVALID_FHIR, f"{analyte.key} is qualitative: want "
                          "valueCodeableConcept, not valueQuantity")
    got = _codes(res.get("valueCodeableConcept", {}), qualitative.SNOMED_SYSTEM)
    if not got or got[0] not in qualitative.CODES:
        raise RowRejected(Reason.UNKNOWN_RESULT, f"{analyte.key} result {got}; want a SNOMED CT "
                          f"code of {sorted(qualitative.CODES)}")


def _check_condition(res: dict[str, Any]) -> None:
    clinical = _codes(res.get("clinicalStatus", {}), CLINICAL)
    if clinical and clinical[0] not in CLINICAL_CODES:
        raise RowRejected(Reason.INVALID_FHIR, f"clinicalStatus {clinical[0]!r} is not bound")
    ver = _codes(res.get("verificationStatus", {}), VERIFICATION)
    if ver and ver[0] not in VERIFICATION_CODES:
        raise RowRejected(Reason.INVALID_FHIR, f"verificationStatus {ver[0]!r} is not bound")
    who = _codes(res.get("code", {}), icd10.WHO_SYSTEM)
    if not who or who[0] not in icd10.WHO:
        raise RowRejected(Reason.INVALID_FHIR, f"no known WHO ICD-10 code in {who}")
