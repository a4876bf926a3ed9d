"""``synth.generate(hospitals=N)``: hospitals after the first three, in their dialects, without
changing a byte of what the first three hospitals write (gateway, surveillance and demo tests
pin those files and truth rows)."""

from __future__ import annotations

import csv
from pathlib import Path

import openpyxl

from medledger.gateway import service
from medledger.gateway.deid import PseudonymKey
from medledger.gateway.evaluate import evaluate
from medledger.gateway.synth import generate, site_names
from medledger.gateway.vault import Vault

KW = {"seed": 13, "persons": 80, "rows": 90}


def _content(path: Path) -> object:
    if path.suffix == ".xlsx":  # the workbook's zip carries a timestamp; compare its cells
        wb = openpyxl.load_workbook(path, read_only=True)
        return [list(r) for r in wb.active.iter_rows(values_only=True)]
    return path.read_bytes()


def _rows(path: Path) -> list[list[str]]:
    with path.open(encoding="utf-8", newline="") as fh:
        return list(csv.reader(fh))


def test_more_hospitals_leave_the_first_three_unchanged(tmp_path: Path) -> None:
    three = generate(tmp_path / "3", **KW)
    five = generate(tmp_path / "5", hospitals=5, **KW)
    assert site_names(5) == ["hosp-a", "hosp-b", "hosp-c", "hosp-d", "hosp-e"]
    assert [n for n in five if n.split("/")[0] in site_names(3)] == three
    for name in three:
        assert _content(tmp_path / "3" / name) == _content(tmp_path / "5" / name), name
    for table in ("truth.csv", "linkage.csv"):
        new = _rows(tmp_path / "5" / table)
        assert [r for r in new if not r[0].startswith(("hosp-d/", "hosp-e/"))] == \
            _rows(tmp_path / "3" / table)
        assert any(r[0].startswith("hosp-e/") for r in new)
    # hosp-d writes like hosp-a, hosp-e like hosp-b; each profile names its own site
    assert {n for n in five if n.startswith("hosp-d")} == {"hosp-d/diagnoses.csv",
                                                            "hosp-d/labs.csv"}
    assert (tmp_path / "5" / "hosp-d" / "diagnoses.csv").read_bytes()[:3] == b"\xef\xbb\xbf"
    prof = (tmp_path / "5" / "hosp-e" / "diagnoses.tsv.toml").read_text(encoding="utf-8")
    assert 'site = "hosp-e"' in prof and 'id = "hosp-e-diagnoses"' in prof
    assert "hosp-b" not in prof


def test_a_fourth_hospital_is_ingested_as_its_truth_says(tmp_path: Path) -> None:
    names = generate(tmp_path / "syn", hospitals=6, **KW)
    key = PseudonymKey("k1", b"\x07" * 32)
    vaults = []
    for site in ("hosp-d", "hosp-e", "hosp-f"):
        v = Vault(tmp_path / "vaults" / site)
        files = [tmp_path / "syn" / n for n in names if n.startswith(site + "/")]
        service.ingest_export_dir(v, key, files, site)
        named = {r[0].split("/")[0] for r in v.rows("SELECT source_name FROM files")}
        assert named == {site}, named  # the profile names the new site
        vaults.append(v)
    doc = evaluate(vaults, tmp_path / "syn" / "truth.csv",
                   tmp_path / "syn" / "linkage.csv").to_doc()
    try:
        assert doc["rows_without_outcome"] == 0
        assert doc["wrong_auto_accepted_rate"] <= 0.005
        assert doc["categories"]["defect"]["rate"] >= 0.98
        assert doc["categories"]["duplicate"]["rate"] == 1.0
        assert doc["linkage"]["recall"] >= 0.99 and doc["linkage"]["false_merges"] == 0
        assert {f.split("/")[0] for f in doc["files_not_ingested"]} == {"hosp-a", "hosp-b",
                                                                         "hosp-c"}
    finally:
        for v in vaults:
            v.close()
