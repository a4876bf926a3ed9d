"""Qualitative lab results (``gateway.qualitative``, ADR 0047): the curated EN/ZH value map to
SNOMED CT, the profile's own spellings, unknown results quarantined and never guessed, the
coded Observation and its checks, and the synthetic microbiology exports scored by the truth
file."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from medledger.gateway import fhir, loinc, qualitative, service
from medledger.gateway.deid import PseudonymKey
from medledger.gateway.errors import Reason, RowRejected
from medledger.gateway.evaluate import evaluate
from medledger.gateway.identifiers import rid_check_char
from medledger.gateway.profile import Profile
from medledger.gateway.standardize import standardise
from medledger.gateway.synth import generate
from medledger.gateway.synth_micro import MICRO_PROFILES
from medledger.gateway.terminology import Terminology
from medledger.gateway.vault import Vault

PAT = "k1-0123456789abcdef0123456789abcdef"
PROFILE = Profile.model_validate(tomllib.loads(MICRO_PROFILES["hosp-a/micro.csv"]))
SHIGELLA = loinc.BY_LOINC["82300-5"]
RID = "11010520190115013" + rid_check_char("11010520190115013")


@pytest.mark.parametrize(("raw", "code"), [
    ("POS", "10828004"), ("Positive", "10828004"), ("+", "10828004"), ("阳性", "10828004"),
    ("阳性（+）", "10828004"), (" pos ", "10828004"), ("NEG", "260385009"), ("阴性", "260385009"),
    ("-", "260385009"), ("Detected", "260373001"), ("检出", "260373001"),
    ("Not detected", "260415000"), ("NOT  DETECTED", "260415000"), ("未检出", "260415000"),
    ("ND", "260415000"), ("Reactive", "11214006"), ("有反应性", "11214006"),
    ("Non-reactive", "131194007"), ("non reactive", "131194007"), ("无反应性", "131194007"),
    ("10828004", "10828004"),
])
def test_curated_spellings_map_to_snomed(raw: str, code: str) -> None:
    got = qualitative.result(raw, PROFILE, SHIGELLA)
    assert got[0] == code and got == qualitative.CODES[code]


@pytest.mark.parametrize(("raw", "reason"), [
    ("weakly positive", Reason.UNKNOWN_RESULT), ("弱阳性", Reason.UNKNOWN_RESULT),
    ("可疑", Reason.UNKNOWN_RESULT), ("32.5", Reason.UNKNOWN_RESULT),
    ("++", Reason.UNKNOWN_RESULT), ("12345678", Reason.UNKNOWN_RESULT),
    ("", Reason.MISSING_VALUE),
])
def test_unknown_results_are_never_guessed(raw: str, reason: Reason) -> None:
    with pytest.raises(RowRejected) as exc:
        qualitative.result(raw, PROFILE, SHIGELLA)
    assert exc.value.reason is reason


def test_the_profile_adds_its_own_spellings() -> None:
    doc = tomllib.loads(MICRO_PROFILES["hosp-a/micro.csv"])
    doc["values"] = {"result": {"++": "positive", "Growth": "10828004", "bad": "maybe"}}
    prof = Profile.model_validate(doc)
    assert qualitative.result("++", prof, SHIGELLA)[0] == "10828004"
    assert qualitative.result("growth", prof, SHIGELLA)[0] == "10828004"
    with pytest.raises(RowRejected, match="unknown_result"):
        qualitative.result("bad", prof, SHIGELLA)      # a target outside the six values


def _row(test_name: str, result: str, code: str = "") -> dict[str, str]:
    return {"AccessionNo": "M1", "NationalID": RID, "PatientName": "X",
            "Address": "1 Riverside Road", "DOB": "01/15/2019", "Sex": "M",
            "CollectedDate": "03/04/2024", "LOINC": code, "TestName": test_name,
            "Result": result}


def test_standardise_gives_the_coded_result_by_code_or_name() -> None:
    terms = Terminology()
    by_name = standardise(_row("志贺菌培养", "阳性"), PROFILE, terms)
    by_code = standardise(_row("whatever", "Negative", "82300-5"), PROFILE, terms)
    assert by_name.lab is not None and by_name.lab.analyte is SHIGELLA
    assert by_name.result == ("10828004", "Positive") and by_name.value is None
    assert by_code.result == ("260385009", "Negative")


def test_a_numeric_test_still_wants_a_number() -> None:
    with pytest.raises(RowRejected) as exc:
        standardise(_row("Glucose", "阳性"), PROFILE, Terminology())
    assert exc.value.reason is Reason.INVALID_VALUE


def test_coded_observation_passes_the_checks_and_broken_ones_do_not() -> None:
    v = fhir.Validator(full=True)
    obs = fhir.coded_observation("lab-1", PAT, SHIGELLA, qualitative.RESULTS["positive"],
                                 "2024-03-04")
    v.check(obs, lambda p: p == PAT)
    built = fhir.built_coded_observation("lab-2", PAT, SHIGELLA, qualitative.RESULTS["negative"],
                                         "2024-03-05")
    fhir.Validator().check_built(built, lambda p: p == PAT)
    with_quantity = dict(obs, valueQuantity={"value": 1.0, "unit": "1", "code": "1",
                                             "system": loinc.UCUM_SYSTEM})
    other_code = dict(obs, valueCodeableConcept={"coding": [
        {"system": qualitative.SNOMED_SYSTEM, "code": "260408008"}]})
    glucose = fhir.coded_observation("lab-3", PAT, loinc.BY_KEY["glucose"],
                                     qualitative.RESULTS["positive"], "2024-03-04")
    for bad, reason in ((with_quantity, Reason.INVALID_FHIR), (other_code, Reason.UNKNOWN_RESULT),
                        (glucose, Reason.INVALID_FHIR)):
        with pytest.raises(RowRejected) as exc:
            v.check(bad, lambda p: p == PAT)
        assert exc.value.reason is reason


def test_pathogen_table_is_qualitative_and_reachable() -> None:
    assert {a.loinc for a in loinc.PATHOGEN_TESTS} == {"94500-6", "94558-4", "82300-5",
                                                        "5196-1", "11259-9"}
    assert all(a.scale == "Ord" and a in loinc.ANALYTES for a in loinc.PATHOGEN_TESTS)
    assert all(a.scale == "Qn" for a in loinc.QUANTITATIVE)
    assert {"10828004", "260373001", "11214006"} == qualitative.POSITIVE


def test_synthetic_micro_exports_score_right_and_leave_other_files_alone(tmp_path: Path
                                                                         ) -> None:
    plain = generate(tmp_path / "plain", seed=5, persons=40, rows=40)
    names = generate(tmp_path / "syn", seed=5, persons=40, rows=40, pathogen=30)
    assert set(names) - set(plain) == {"hosp-a/micro.csv", "hosp-b/micro.tsv"}
    for n in plain:          # (an .xlsx carries its write time: compared by rows elsewhere)
        if n.endswith(".xlsx"):
            continue
        assert (tmp_path / "plain" / n).read_bytes() == (tmp_path / "syn" / n).read_bytes(), n
    key = PseudonymKey("k1", b"\x07" * 32)
    vaults = []
    for site in ("hosp-a", "hosp-b"):
        vault = Vault(tmp_path / "v" / site)
        vaults.append(vault)
        name = next(n for n in names if n.startswith(site) and "micro" in n)
        _, reports = service.ingest_export_dir(vault, key, [tmp_path / "syn" / name], site)
        assert reports[0].emitted >= 30 and set(reports[0].reasons) <= {"unknown_result"}
    doc = evaluate(vaults, tmp_path / "syn" / "truth.csv").to_doc()
    assert doc["rows_without_outcome"] == 0 and doc["wrong_auto_accepted"] == 0
    assert doc["by_language"]["lab/en"] == {"right": 30, "total": 30, "rate": 1.0}
    assert doc["by_language"]["lab/zh"] == {"right": 30, "total": 30, "rate": 1.0}
    assert doc["categories"]["defect"]["rate"] == 1.0
    assert doc["categories"]["defect"]["total"] > 0
    for v in vaults:
        v.close()
