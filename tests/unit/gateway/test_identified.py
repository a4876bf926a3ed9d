"""The identified side of a gateway run (``gateway.identified``): the rows a run emitted, read
again from the hospital's source files, identified, consistent with the vault, nothing
written."""

from __future__ import annotations

import csv
import shutil
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import orjson
import pytest

from medledger.gateway import service
from medledger.gateway.deid import Pseudonymizer, PseudonymKey
from medledger.gateway.errors import GatewayError
from medledger.gateway.identified import RESIDENT_ID_SYSTEM, identified_records
from medledger.gateway.identifiers import valid_rid
from medledger.gateway.synth import ADDRESS_DISTRICTS, NOTIFIABLE_CODE, generate
from medledger.gateway.vault import Vault

KEY = PseudonymKey("k1", b"\x05" * 32)


@dataclass
class Run:
    root: Path
    vault: Vault
    run_id: str
    files: list[Path]


def _ingest(root: Path, site: str) -> Run:
    files = sorted(p for p in (root / "syn" / site).iterdir() if p.suffix != ".toml")
    vault = Vault(root / "vault" / site)
    run_id, _ = service.ingest_export_dir(vault, KEY, files, site)
    return Run(root, vault, run_id, files)


@pytest.fixture(scope="module")
def syn(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("identified")
    generate(root / "syn", seed=5, persons=40, rows=60, notifiable=3)
    return root


def _counts(vault: Vault) -> dict[str, int]:
    return {t: vault.db.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
            for t in ("runs", "files", "records", "outcomes", "quarantine", "review")}


def _truth(root: Path) -> dict[tuple[str, str], dict[str, str]]:
    with (root / "syn" / "truth.csv").open(encoding="utf-8") as fh:
        return {(r["source_file"], r["row"]): r for r in csv.DictReader(fh)}


def test_every_emitted_diagnosis_comes_back_identified_with_its_true_date(syn: Path) -> None:
    run = _ingest(syn, "hosp-a")
    before = _counts(run.vault)
    records, unread = identified_records(run.vault, KEY, run.run_id, run.files,
                                         lambda system, _: system == "icd10")
    assert unread == [] and _counts(run.vault) == before       # nothing written
    truth = _truth(syn)
    mapped = {k for k, t in truth.items() if k[0].startswith("hosp-a/") and (
        t["expected_outcome"] == "duplicate" or t["expected_code_system"] == "icd10")}
    got = {(r.source_name, r.position) for r in records}
    assert got and got <= mapped
    assert any(":" in r.position for r in records)                  # HL7 v2 DG1 rows too
    shift = Pseudonymizer(KEY)
    for r in records:
        stored = run.vault.rows("SELECT version, body FROM records WHERE record_id=? "
                                "ORDER BY version DESC", (r.record_id,))[0]
        body = orjson.loads(run.vault.record_body(r.record_id, stored["version"],
                                                  stored["body"]))["resource"]
        true_day = date.fromisoformat(r.resource["recordedDate"])
        assert body["recordedDate"] == (true_day + timedelta(
            days=shift.shift_days(r.pseudonym))).isoformat()
        assert body["subject"]["reference"] == f"Patient/{r.pseudonym}" == \
            r.resource["subject"]["reference"]
        assert body["code"] == r.resource["code"]
        assert r.patient["id"] == r.pseudonym and r.site == "hosp-a"
        if (t := truth.get((r.source_name, r.position))) is not None:
            assert t["expected_code"] in ("", r.resource["code"]["coding"][0]["code"])
        if ":" not in r.position:                                   # the CSV export
            ident = r.patient["identifier"][0]
            assert ident["system"] == RESIDENT_ID_SYSTEM and valid_rid(ident["value"])
            assert r.patient["name"][0]["text"] and len(r.patient["birthDate"]) == 10
            assert any(city in r.patient["address"][0]["text"]
                       for city, _ in ADDRESS_DISTRICTS)
        else:                                                       # HL7: MRN, no address
            assert r.patient["identifier"][0]["system"].startswith("urn:medledger:mrn:")
    added = [r for r in records if r.source_name == "hosp-a/diagnoses.csv"
             and r.resource["code"]["coding"][0]["code"] == NOTIFIABLE_CODE]
    assert len(added) >= 3                  # the generator's shared cases (and random ones)


def test_labs_from_xlsx_come_back_as_observations(syn: Path) -> None:
    run = _ingest(syn, "hosp-c")
    records, unread = identified_records(run.vault, KEY, run.run_id, run.files,
                                         lambda system, code: system == "loinc"
                                         and code == "718-7")
    assert records and unread == []
    for r in records:
        assert r.source_name == "hosp-c/labs.xlsx"
        assert r.resource["resourceType"] == "Observation"
        assert r.resource["code"]["coding"][0]["code"] == "718-7"
        assert len(r.resource["effectiveDateTime"]) == 10


def test_missing_changed_or_foreign_files_and_a_wrong_key_are_reported(syn: Path,
                                                                       tmp_path: Path) -> None:
    run = _ingest(syn, "hosp-b")
    dx = next(p for p in run.files if p.name == "diagnoses.tsv")
    want = lambda system, _: system == "icd10"                      # noqa: E731
    records, unread = identified_records(run.vault, KEY, run.run_id, [], want)
    assert records == [] and [u.reason for u in unread] == [
        f"{_emitted_dx(run)} selected rows not read: the file was not given"]
    changed = tmp_path / "diagnoses.tsv"
    shutil.copy(dx, changed)
    changed.write_bytes(changed.read_bytes() + b"\r\n")
    foreign = syn / "syn" / "hosp-a" / "diagnoses.csv"
    _, unread = identified_records(run.vault, KEY, run.run_id, [changed, foreign], want)
    assert sum("not a file of run" in u.reason for u in unread) == 2
    other = PseudonymKey("k1", b"\x06" * 32)
    records, unread = identified_records(run.vault, other, run.run_id, [dx], want)
    assert records == [] and unread and all("another pseudonym" in u.reason for u in unread)
    with pytest.raises(GatewayError, match="no run"):
        identified_records(run.vault, KEY, "run-nope", [dx], want)


def _emitted_dx(run: Run) -> int:
    return int(run.vault.db.execute(
        "SELECT count(DISTINCT o.position) FROM outcomes o JOIN files f USING (file_hash) "
        "WHERE f.run_id=? AND o.outcome IN ('mapped', 'duplicate') AND o.code_system='icd10'",
        (run.run_id,)).fetchone()[0])
