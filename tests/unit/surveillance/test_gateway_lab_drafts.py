"""Lab rules on gateway runs (R7.5): a qualitative positive result for a notifiable pathogen,
mapped by the gateway (``gateway.qualitative``), drafts a lab-confirmed report inside the
hospital; a negative one, or a result no value map holds, drafts nothing."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from medledger.gateway import service
from medledger.gateway.deid import PseudonymKey
from medledger.gateway.identifiers import rid_check_char
from medledger.gateway.synth import ADDRESS_DISTRICTS
from medledger.gateway.synth_micro import MICRO_PROFILES
from medledger.gateway.vault import Vault
from medledger.surveillance.fromgateway import GatewayRules, draft_run

KEY = PseudonymKey("k1", b"\x09" * 32)
RULES = GatewayRules.from_doc({
    "lab": [{"id": "lab-shigella", "codes": [["http://loinc.org", "82300-5"]],
             "disease_code": "A03.9"},
            {"id": "lab-sars-cov-2", "codes": [["http://loinc.org", "94500-6"]],
             "disease_code": "U07.1"}],
    "diagnosis": [{"id": "notifiable-dx"}],
    "districts": [list(e) for e in ADDRESS_DISTRICTS]})
HEADER_A = ["AccessionNo", "NationalID", "PatientName", "Address", "DOB", "Sex",
            "CollectedDate", "LOINC", "TestName", "Result"]
HEADER_B = ["标本号", "身份证号", "姓名", "住址", "出生日期", "性别", "采样日期", "检验项目",
            "结果"]


def rid(body: str) -> str:
    return body + rid_check_char(body)


KID = rid("11010520170304013")     # a boy born 2017-03-04
NEG = rid("11010520160101024")
ODD = rid("11010519800101035")
COV = rid("31010419500502046")


def _run(tmp: Path, site: str, name: str, header: list[str], rows: list[list[str]],
         delimiter: str, encoding: str) -> tuple[Vault, str, list[Path], int]:
    buf = io.StringIO()
    w = csv.writer(buf, delimiter=delimiter, lineterminator="\r\n")
    w.writerow(header)
    w.writerows(rows)
    src = tmp / "syn" / site / name
    src.parent.mkdir(parents=True, exist_ok=True)
    src.write_bytes(buf.getvalue().encode(encoding))
    (src.parent / f"{name}.toml").write_text(MICRO_PROFILES[f"{site}/{name}"], encoding="utf-8")
    vault = Vault(tmp / "vault" / site)
    run_id, reports = service.ingest_export_dir(vault, KEY, [src], site)
    return vault, run_id, [src], reports[0].quarantined


def test_a_positive_culture_drafts_a_confirmed_report_and_a_negative_one_does_not(
        tmp_path: Path) -> None:
    vault, run_id, files, quarantined = _run(tmp_path, "hosp-a", "micro.csv", HEADER_A, [
        ["M1", KID, "Wang Lei", "12 Riverside Road", "03/04/2017", "M", "03/05/2024",
         "82300-5", "Shigella culture", "POS"],
        ["M2", NEG, "Li Jing", "9 Riverside Road", "01/01/2016", "F", "03/05/2024", "",
         "Shigella culture", "Negative"],
        ["M3", ODD, "Zhao Min", "3 Lakeside Road", "01/01/1980", "F", "03/06/2024", "",
         "Shigella culture", "weakly positive"],
        ["M4", COV, "Chen Fang", "7 Hillview Road", "05/02/1950", "F", "03/07/2024", "",
         "SARS-CoV-2 RNA", "Detected"],
        ["M5", NEG, "Li Jing", "9 Riverside Road", "01/01/2016", "F", "03/08/2024", "",
         "SARS-CoV-2 RNA", "Not detected"],
    ], ",", "utf-8")
    assert quarantined == 1                        # "weakly positive": unknown_result
    got = draft_run(vault, KEY, run_id, files, RULES)
    assert got.skipped == [] and got.unread == []
    by_disease = {d.draft.disease: d for d in got.new}
    assert set(by_disease) == {"shigellosis", "covid-19"}
    shig = by_disease["shigellosis"].draft
    assert shig.rules == ("lab-shigella",)
    assert shig.fields.lab_status == "confirmed" and shig.fields.disease_code == "A03.9"
    assert shig.fields.diagnosis_date == "2024-03-05"     # the true collection date
    assert shig.fields.district == "110101" and shig.fields.age_band == "5-14"
    assert shig.fields.sex == "male" and shig.patient_details["identifier"][0]["value"] == KID
    cov = by_disease["covid-19"].draft
    assert cov.fields.lab_status == "confirmed" and cov.fields.district == "110106"
    assert draft_run(vault, KEY, run_id, files, RULES).new == []      # idempotent
    vault.close()


def test_the_same_child_cultured_at_two_hospitals_gets_one_report_pseudonym(
        tmp_path: Path) -> None:
    va, run_a, files_a, _ = _run(tmp_path, "hosp-a", "micro.csv", HEADER_A, [
        ["M1", KID, "Wang Lei", "12 Riverside Road", "03/04/2017", "M", "03/05/2024", "",
         "Shigella culture", "Positive"]], ",", "utf-8")
    vb, run_b, files_b, _ = _run(tmp_path, "hosp-b", "micro.tsv", HEADER_B, [
        ["B1", KID, "王磊", "江城市解放路12号", "2017年03月04日", "男", "2024年3月6日",
         "志贺菌培养", "阳性（+）"],
        ["B2", NEG, "李静", "江城市解放路9号", "2016年01月01日", "女", "2024年3月6日",
         "志贺菌培养", "阴性"]], "\t", "gbk")
    a = draft_run(va, KEY, run_a, files_a, RULES).new
    b = draft_run(vb, KEY, run_b, files_b, RULES).new
    assert len(a) == len(b) == 1
    assert a[0].patient == b[0].patient and a[0].org == "hosp-a" and b[0].org == "hosp-b"
    assert b[0].draft.fields.lab_status == "confirmed"
    assert b[0].draft.fields.district == "110101"
    va.close()
    vb.close()
