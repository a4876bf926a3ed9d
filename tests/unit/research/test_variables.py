"""The variable map: declared variables over FHIR records → one row per patient."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from medledger.cli.main import app
from medledger.research.errors import ResearchError
from medledger.research.variables import DEFAULT_MAP, DEFAULT_TOML, extract, parse_map

WHO = "http://hl7.org/fhir/sid/icd-10"
LOINC = "http://loinc.org"

MAP = parse_map("""
id = "t"
version = "1"
reference_year = 2024

[[variable]]
name = "age"
kind = "age"
[[variable]]
name = "age5"
kind = "age"
band = 5
[[variable]]
name = "born"
kind = "birth_year"
band = 10
[[variable]]
name = "sex"
kind = "gender"
map = { female = "F", male = "M" }
[[variable]]
name = "female"
kind = "gender"
map = { female = 1, male = 0 }
[[variable]]
name = "raw_gender"
kind = "gender"
[[variable]]
name = "diabetes"
kind = "condition"
codes = ["E11"]
[[variable]]
name = "circulatory"
kind = "condition"
codes = ["I1", "I25"]
[[variable]]
name = "glu_mean"
kind = "lab"
loinc = "14749-6"
[[variable]]
name = "glu_first"
kind = "lab"
loinc = "14749-6"
reduce = "first"
[[variable]]
name = "glu_last"
kind = "lab"
loinc = "14749-6"
reduce = "last"
[[variable]]
name = "glu_max"
kind = "lab"
loinc = "14749-6"
reduce = "max"
[[variable]]
name = "glu_n"
kind = "lab"
loinc = "14749-6"
reduce = "count"
[[variable]]
name = "metformin"
kind = "medication"
codes = ["A10BA"]
[[variable]]
name = "visits"
kind = "visits"
[[variable]]
name = "all_visits"
kind = "visits"
categories = ["conditions", "labs", "medications"]
[[variable]]
name = "followup"
kind = "followup_days"
[[variable]]
name = "to_diabetes"
kind = "time_to"
codes = ["E11"]
""")


def patient(pid: str, gender: str, year: str | None) -> tuple[str, str, dict[str, Any]]:
    res: dict[str, Any] = {"resourceType": "Patient", "id": pid, "gender": gender}
    if year:
        res["birthDate"] = year
    return pid, "Patient", res


def cond(pid: str, rid: str, code: str, day: str) -> tuple[str, str, dict[str, Any]]:
    return pid, "Condition", {"resourceType": "Condition", "id": rid, "recordedDate": day,
                              "code": {"coding": [{"system": WHO, "code": code},
                                                  {"system": "other", "code": "E11.900"}]}}


def lab(pid: str, rid: str, value: float, day: str, code: str = "14749-6"
        ) -> tuple[str, str, dict[str, Any]]:
    return pid, "Observation", {"resourceType": "Observation", "id": rid,
                                "effectiveDateTime": day,
                                "code": {"coding": [{"system": LOINC, "code": code}]},
                                "valueQuantity": {"value": value, "unit": "mmol/L"}}


def med(pid: str, rid: str, code: str, day: str) -> tuple[str, str, dict[str, Any]]:
    return pid, "MedicationRequest", {"resourceType": "MedicationRequest", "id": rid,
                                      "authoredOn": day, "medicationCodeableConcept": {
                                          "coding": [{"system": "atc", "code": code}]}}


RECORDS = [
    patient("p1", "female", "1961"),
    cond("p1", "c1", "I10", "2023-03-01"),
    cond("p1", "c2", "E11.9", "2023-05-01"),
    lab("p1", "l1", 7.0, "2023-02-01"),
    lab("p1", "l2", 9.0, "2023-03-01"),
    lab("p1", "l3", 5.0, "2023-01-15"),
    lab("p1", "l4", 140.0, "2023-01-10", code="2951-2"),  # sodium: another analyte
    med("p1", "m1", "A10BA02", "2023-06-01"),
    patient("p2", "male", None),                          # 90+: no birth year
    cond("p2", "c3", "I25.1", "2022-01-01"),
    lab("p2", "l5", 6.0, "2022-01-31"),
    patient("p3", "other", "2000"),                       # demographics only
]


def test_extract_one_row_per_patient() -> None:
    ext = extract(MAP, RECORDS)
    assert ext.patients == ["p1", "p2", "p3"]
    c = ext.columns

    def row(name: str) -> list[Any]:
        return [None if isinstance(v, float) and math.isnan(v) else v for v in c[name]]

    assert row("age") == [63.0, None, 24.0]
    assert row("age5") == [60.0, None, 20.0]
    assert row("born") == [1960.0, None, 2000.0]
    assert c["sex"].tolist() == ["F", "M", None]
    assert row("female") == [1.0, 0.0, None]
    assert c["raw_gender"].tolist() == ["female", "male", "other"]
    assert row("diabetes") == [1.0, 0.0, 0.0]             # WHO coding only, prefix match
    assert row("circulatory") == [1.0, 1.0, 0.0]          # I1 covers I10; I25 covers I25.1
    assert row("glu_mean") == [7.0, 6.0, None]
    assert row("glu_first") == [5.0, 6.0, None]           # by date, not by record order
    assert row("glu_last") == [9.0, 6.0, None]
    assert row("glu_max") == [9.0, 6.0, None]
    assert row("glu_n") == [3.0, 1.0, 0.0]
    assert row("metformin") == [1.0, 0.0, 0.0]
    # p1: diagnoses on 03-01, 05-01; labs on 01-10, 01-15, 02-01, 03-01 → 5 distinct days
    assert row("visits") == [5.0, 2.0, 0.0]
    assert row("all_visits") == [6.0, 2.0, 0.0]
    assert row("followup") == [111.0, 30.0, None]          # 2023-01-10 … 2023-05-01
    assert row("to_diabetes") == [111.0, 30.0, None]       # event on 05-01; p2 censored
    assert c["sex"].dtype == object and c["age"].dtype == float


def test_a_subset_of_names_and_categories() -> None:
    ext = extract(MAP, RECORDS, ["age", "glu_n"])
    assert list(ext.columns) == ["age", "glu_n"]
    assert MAP.categories(["age", "sex"]) == ["demographics"]
    assert MAP.categories(["glu_n", "diabetes"]) == ["conditions", "labs"]
    assert MAP.categories(["to_diabetes"]) == ["conditions", "labs"]
    assert MAP.categories(["all_visits", "metformin"]) == ["conditions", "labs", "medications"]


def test_digest_pins_the_definitions() -> None:
    again = parse_map(DEFAULT_TOML)
    assert again.digest() == DEFAULT_MAP.digest()
    changed = parse_map(DEFAULT_TOML.replace('codes = ["I10"]', 'codes = ["I1"]'))
    assert changed.digest() != DEFAULT_MAP.digest()
    assert "glucose" in DEFAULT_MAP and "smoker" not in DEFAULT_MAP


@pytest.mark.parametrize("body, why", [
    ('[[variable]]\nname = "a"\nkind = "age"', "reference_year"),
    ('[[variable]]\nname = "x"\nkind = "lab"', "loinc"),
    ('[[variable]]\nname = "x"\nkind = "condition"', "codes"),
    ('[[variable]]\nname = "x"\nkind = "lab"\nloinc = "1-1"\ncodes = ["A"]', "codes"),
    ('[[variable]]\nname = "x"\nkind = "visits"\nband = 5', "band"),
    ('[[variable]]\nname = "x"\nkind = "gender"\nmap = { female = 1, male = "M" }', "map"),
    ('[[variable]]\nname = "x"\nkind = "condition"\ncodes = ["I10"]\n'
     '[[variable]]\nname = "x"\nkind = "condition"\ncodes = ["I11"]', "repeat"),
    ('[[variable]]\nname = "1x"\nkind = "visits"', "name"),
    ('[[variable]]\nname = "x"\nkind = "visits"\ncolour = "red"', "colour"),
])
def test_bad_maps_are_refused(body: str, why: str) -> None:
    with pytest.raises(ResearchError) as info:
        parse_map(f'id = "t"\nversion = "1"\n{body}\n')
    assert why in info.value.message


def test_records_without_dates_or_values_are_skipped() -> None:
    recs = [patient("p", "female", "1980"),
            ("p", "Condition", {"resourceType": "Condition", "id": "c", "code": {
                "coding": [{"system": WHO, "code": "E11.9"}]}}),           # no date
            ("p", "Observation", {"resourceType": "Observation", "id": "o",
                                  "effectiveDateTime": "2023-01-01",
                                  "code": {"coding": [{"system": LOINC, "code": "14749-6"}]}}),
            ("p", "Encounter", {"resourceType": "Encounter", "id": "e"})]
    ext = extract(MAP, recs, ["diabetes", "glu_n", "visits"])
    assert [ext.columns[n].tolist() for n in ("diabetes", "glu_n", "visits")] == [
        [0.0], [0.0], [1.0]]
    assert extract(MAP, recs, ["followup"]).columns["followup"].tolist() == [0.0]


def test_cli_lists_the_map_and_its_digest(tmp_path: Path) -> None:
    """``medledger research variables``: the digest a study's ``variable_map`` term names, the
    built-in map as TOML (which parses back to the same digest), another map from ``--file``,
    and a bad file refused with its code."""
    runner = CliRunner()
    shown = runner.invoke(app, ["research", "variables"], env={"COLUMNS": "300"})
    assert shown.exit_code == 0, shown.output
    assert DEFAULT_MAP.digest() in shown.output and "days_to_stroke" in shown.output
    toml = runner.invoke(app, ["research", "variables", "--toml"])
    assert toml.exit_code == 0 and toml.output == DEFAULT_TOML
    path = tmp_path / "map.toml"
    path.write_text(toml.output.replace('name = "hba1c"', 'name = "hba1c_latest"'))
    other = runner.invoke(app, ["research", "variables", "--file", str(path)],
                          env={"COLUMNS": "300"})
    assert other.exit_code == 0, other.output
    assert parse_map(path.read_text()).digest() in other.output
    assert DEFAULT_MAP.digest() not in other.output
    path.write_text("id = 1\n")
    bad = runner.invoke(app, ["research", "variables", "--file", str(path)])
    assert bad.exit_code == 2 and "bad_args" in bad.output
    missing = runner.invoke(app, ["research", "variables", "--file", str(tmp_path / "no.toml")])
    assert missing.exit_code == 2 and "not_found" in missing.output
