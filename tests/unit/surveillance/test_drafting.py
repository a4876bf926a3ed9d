"""Automatic drafting over synthetic FHIR R4 resources."""

from __future__ import annotations

import os
from typing import Any

import pytest

from medledger.surveillance.drafting import (
    DiagnosisRule,
    DraftContext,
    LabRule,
    RuleSet,
    draft_reports,
)

LOINC = "http://loinc.org"
ICD = "http://hl7.org/fhir/sid/icd-10"
SCT = "http://snomed.info/sct"
RULES = RuleSet(
    lab=(LabRule("lab-vibrio", frozenset({(LOINC, "VIBRIO-CULT")}), "A00.9"),),
    diagnosis=(DiagnosisRule("notifiable-diagnosis"),),
)


def patient(pid: str = "p1", **kw: Any) -> dict[str, Any]:
    doc = {"resourceType": "Patient", "id": pid,
           "identifier": [{"system": "urn:oid:nid", "value": f"ID-{pid}"}],
           "name": [{"family": "Synthetic", "given": ["Test"]}], "gender": "male",
           "birthDate": "2015-06-01", "address": [{"district": "110105", "city": "X"}]}
    doc.update(kw)
    return doc


def lab(oid: str, pid: str = "p1", positive: bool = True, **kw: Any) -> dict[str, Any]:
    doc = {"resourceType": "Observation", "id": oid, "status": "final",
           "code": {"coding": [{"system": LOINC, "code": "VIBRIO-CULT"}]},
           "subject": {"reference": f"Patient/{pid}"},
           "effectiveDateTime": "2025-11-21T09:30:00+08:00",
           "valueCodeableConcept": {"coding": [{"system": SCT,
                                                "code": "10828004" if positive else "260385009"}]}}
    doc.update(kw)
    return doc


def condition(cid: str, icd: str, pid: str = "p1", **kw: Any) -> dict[str, Any]:
    doc = {"resourceType": "Condition", "id": cid, "subject": {"reference": f"Patient/{pid}"},
           "code": {"coding": [{"system": ICD, "code": icd}]},
           "onsetDateTime": "2025-11-19", "recordedDate": "2025-11-22"}
    doc.update(kw)
    return doc


def test_a_positive_lab_and_a_diagnosis_make_one_confirmed_draft() -> None:
    drafts, skipped = draft_reports([patient(), lab("o1"), condition("c1", "A00.1")], RULES)
    assert skipped == []
    [d] = drafts
    assert d.disease == "cholera" and d.rules == ("lab-vibrio", "notifiable-diagnosis")
    assert d.fields.to_args() == {
        "disease_code": "A00.1", "onset_date": "2025-11-19", "diagnosis_date": "2025-11-21",
        "district": "110105", "age_band": "5-14", "sex": "male", "lab_status": "confirmed"}
    assert d.patient_id == ("urn:oid:nid", "ID-p1")
    assert d.sources == ("Condition/c1", "Observation/o1")
    assert d.patient_details["name"][0]["family"] == "Synthetic"
    salt = os.urandom(16)
    assert d.digest(salt) != d.digest(os.urandom(16)) and len(d.digest(salt)) == 64


def test_bundle_entries_and_diagnosis_only_drafts_are_pending() -> None:
    bundle = [{"resource": patient("p2", gender="female", birthDate="1990-01-01")},
              {"resource": condition("c2", "B05.9", pid="p2")}]
    [d] = draft_reports(bundle, RULES)[0]
    assert (d.disease, d.fields.lab_status, d.fields.age_band, d.fields.sex) == (
        "measles", "pending", "25-44", "female")


@pytest.mark.parametrize("resource", [
    lab("o2", positive=False),
    lab("o3", status="registered"),
    lab("o4", code={"coding": [{"system": LOINC, "code": "OTHER"}]}),
    condition("c3", "J45.9"),  # asthma: not notifiable
    condition("c4", "A00.1", verificationStatus={"coding": [{"code": "refuted"}]}),
    condition("c5", "A00.1", code={"coding": [{"system": "http://snomed.info/sct",
                                               "code": "63650001"}]}),
], ids=["negative", "not-final", "other-test", "not-notifiable", "refuted", "not-icd10"])
def test_what_does_not_draft(resource: dict[str, Any]) -> None:
    assert draft_reports([patient(), resource], RULES) == ([], [])


def test_interpretation_and_value_string_count_as_positive() -> None:
    interp = lab("o5", valueCodeableConcept=None, interpretation=[{"coding": [{
        "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation",
        "code": "POS"}]}])
    text = lab("o6", pid="p2", valueCodeableConcept=None, valueString=" Detected ")
    drafts, _ = draft_reports([patient(), patient("p2"), interp, text], RULES)
    assert len(drafts) == 2


def test_problems_are_reported_with_codes_not_lost() -> None:
    drafts, skipped = draft_reports([
        lab("o7", pid="ghost"),
        patient("p3", address=[]), condition("c6", "A00.1", pid="p3"),
        patient("p4", identifier=[]), condition("c7", "A00.1", pid="p4"),
        patient("p5"), condition("c8", "A00.1", pid="p5"),
    ], RULES)
    assert [d.patient_ref for d in drafts] == ["Patient/p5"]
    reasons = {s.resource: (s.code, s.message) for s in skipped}
    assert reasons["Observation/o7"][0] == "not_found"
    assert reasons["Condition/c6"] == ("bad_args", "Patient/p3 has no district")
    assert reasons["Condition/c7"] == ("bad_args", "Patient/p4 has no usable identifier")


def test_rules_from_json_and_prefix_filters() -> None:
    rules = RuleSet.from_doc({"lab": [{"id": "l", "codes": [[LOINC, "X"]],
                                       "disease_code": "A03"}],
                              "diagnosis": [{"id": "gi", "prefixes": ["A0"]}]})
    assert rules.lab[0].codes == frozenset({(LOINC, "X")})
    drafts, _ = draft_reports([patient(), condition("c1", "B05"), condition("c2", "A01.0")],
                              rules)
    assert [d.disease for d in drafts] == ["typhoid"]
    with pytest.raises(ValueError, match="malformed"):
        RuleSet.from_doc({"lab": [{"id": "l"}]})
    custom = DraftContext(district_of=lambda p: "999999", identifier_system="urn:other")
    drafts, skipped = draft_reports([patient(), condition("c1", "A00")], RULES, custom)
    assert drafts == [] and skipped[0].message.endswith("no usable identifier")
