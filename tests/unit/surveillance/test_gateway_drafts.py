"""Drafts from a gateway run (``surveillance.fromgateway``) on small hand-written exports:
true dates, districts from addresses, age bands from full birth dates, episodes, the
consortium pseudonym across hospitals, sealing at rest, confirmation to the CDC."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import orjson
import pytest

from medledger.crypto import hpke
from medledger.crypto.keys import AgreementKey, SigningKey, unb64
from medledger.errors import Code, MedLedgerError
from medledger.gateway import service
from medledger.gateway.deid import Pseudonymizer, PseudonymKey
from medledger.gateway.identifiers import rid_check_char
from medledger.gateway.synth import ADDRESS_DISTRICTS, PROFILES
from medledger.gateway.vault import Vault
from medledger.surveillance.casefile import ReportError, patient_pseudonym, payload_info
from medledger.surveillance.fromgateway import (
    GATEWAY_PSEUDONYM,
    DistrictTable,
    DraftStore,
    GatewayRules,
    draft_run,
    record_args,
    submit_args,
)

KEY = PseudonymKey("k1", b"\x09" * 32)
RULES = GatewayRules.from_doc({"diagnosis": [{"id": "notifiable-dx"}],
                               "districts": [list(e) for e in ADDRESS_DISTRICTS]})
HEADER_A = ["DxID", "NationalID", "MRN", "PatientName", "Phone", "Address", "DOB", "Sex",
            "VisitDate", "DxCode", "DxText"]
HEADER_B = ["诊断流水号", "身份证号", "姓名", "联系电话", "住址", "出生日期", "性别", "就诊日期",
            "诊断编码", "诊断名称"]


def rid(region: str, birth: str, seq: str) -> str:
    body = f"{region}{birth}{seq}"
    return body + rid_check_char(body)


A = rid("110105", "20190115", "013")     # a boy born 2019-01-15
B = rid("310104", "19500502", "024")     # a woman born 1950-05-02
C = rid("440106", "19800101", "035")
D = rid("330106", "19900101", "046")


def _csv(rows: list[list[str]], header: list[str], delimiter: str = ",") -> str:
    buf = io.StringIO()
    w = csv.writer(buf, delimiter=delimiter, lineterminator="\r\n")
    w.writerow(header)
    w.writerows(rows)
    return buf.getvalue()


@dataclass
class Site:
    vault: Vault
    run_id: str
    files: list[Path]


def _ingest(tmp: Path, site: str, name: str, text: str, encoding: str = "utf-8") -> Site:
    src = tmp / site / name
    src.parent.mkdir(parents=True, exist_ok=True)
    src.write_bytes(text.encode(encoding))
    profile = "hosp-a/diagnoses.csv" if site == "hosp-a" else "hosp-b/diagnoses.tsv"
    (src.parent / f"{name}.toml").write_text(PROFILES[profile], encoding="utf-8")
    vault = Vault(tmp / "vault" / site)
    run_id, reports = service.ingest_export_dir(vault, KEY, [src], site)
    assert reports[0].emitted > 0, reports[0].to_doc()
    return Site(vault, run_id, [src])


def _hosp_a(tmp: Path, name: str = "dx.csv", rows: list[list[str]] | None = None) -> Site:
    rows = rows if rows is not None else [
        ["K1", A, "A1", "Wang Wei", "+86 13800000001", "12 Riverside Road", "01/15/2019", "M",
         "01/05/2024", "U07.1", ""],
        ["K2", A, "A1", "Wang Wei", "+86 13800000001", "12 Riverside Road", "01/15/2019", "M",
         "01/20/2024", "", "COVID-19"],
        ["K3", A, "A1", "Wang Wei", "+86 13800000001", "12 Riverside Road", "01/15/2019", "M",
         "03/10/2024", "u07.1", ""],
        ["K4", B, "A2", "Li Fang", "+86 13900000002", "8 Lakeside Road", "05/02/1950", "F",
         "02/01/2023", "B18.1", ""],
        ["K5", B, "A2", "Li Fang", "+86 13900000002", "8 Lakeside Road", "05/02/1950", "F",
         "06/01/2024", "", "Chronic hepatitis B"],
        ["K6", C, "A3", "Zhao Min", "", "", "01/01/1980", "F", "02/02/2024", "U07.1", ""],
        ["K7", A, "A1", "Wang Wei", "+86 13800000001", "12 Riverside Road", "01/15/2019", "M",
         "02/01/2024", "I10", ""],
        ["K8", D, "A4", "Chen Jie", "", "99 Nowhere Street", "01/01/1990", "M", "02/03/2024",
         "U07.1", ""],
    ]
    return _ingest(tmp, "hosp-a", name, _csv(rows, HEADER_A))


def test_a_run_becomes_one_draft_per_person_disease_and_episode(tmp_path: Path) -> None:
    site = _hosp_a(tmp_path)
    got = draft_run(site.vault, KEY, site.run_id, site.files, RULES)
    assert got.unread == [] and got.known == []
    by = {(d.draft.disease, d.draft.fields.diagnosis_date): d for d in got.new}
    assert sorted(by) == [("covid-19", "2024-01-05"), ("covid-19", "2024-03-10"),
                          ("hepatitis-b", "2023-02-01")]
    first, second, hep = (by[("covid-19", "2024-01-05")], by[("covid-19", "2024-03-10")],
                          by[("hepatitis-b", "2023-02-01")])
    assert first.draft.fields.to_args() == {
        "disease_code": "U07.1", "onset_date": None, "diagnosis_date": "2024-01-05",
        "district": "110101", "age_band": "0-4", "sex": "male", "lab_status": "pending"}
    assert [p for _, p, _ in first.records] == ["1", "2"]          # K1 + K2: one episode
    assert second.draft.fields.age_band == "5-14"                  # five by 2024-03-10
    assert [p for _, p, _ in second.records] == ["3"]
    assert hep.draft.fields.to_args() == {
        "disease_code": "B18.1", "onset_date": None, "diagnosis_date": "2023-02-01",
        "district": "110102", "age_band": "65+", "sex": "female", "lab_status": "pending"}
    assert [p for _, p, _ in hep.records] == ["4", "5"]            # once per person
    gateway_pseud = Pseudonymizer(KEY).pseudonym("cn-rid", A)
    assert first.patient == second.patient == patient_pseudonym(
        KEY.secret, GATEWAY_PSEUDONYM, gateway_pseud, "covid-19")
    assert first.draft.patient_id == (GATEWAY_PSEUDONYM, gateway_pseud)
    details = first.draft.patient_details
    assert details["identifier"] == [{"system": "urn:oid:2.16.156.10011.1.1", "value": A}]
    assert details["name"] == [{"text": "Wang Wei"}] and details["birthDate"] == "2019-01-15"
    assert {s.resource: s.message for s in got.skipped}.keys() == {"hosp-a/dx.csv#6",
                                                                   "hosp-a/dx.csv#8"}
    assert all("no district" in s.message for s in got.skipped)
    assert {d.status for d in got.new} == {"open"} and all(d.id.startswith("gw-")
                                                           for d in got.new)


def test_drafts_are_stored_sealed_and_a_rerun_drafts_nothing_new(tmp_path: Path) -> None:
    site = _hosp_a(tmp_path)
    got = draft_run(site.vault, KEY, site.run_id, site.files, RULES)
    store = DraftStore(site.vault)
    assert sorted(d.id for d in store.all()) == sorted(d.id for d in got.new)
    assert store.get(got.new[0].id) == got.new[0]
    site.vault.db.execute("PRAGMA wal_checkpoint(FULL)")
    root = site.vault.root
    at_rest = b"".join(p.read_bytes() for p in root.iterdir() if p.name.startswith("vault.db"))
    for secret in (A.encode(), B.encode(), b"Wang Wei", b"12 Riverside Road", b"2024-01-05",
                   b"2019-01-15"):
        assert secret not in at_rest
    again = draft_run(site.vault, KEY, site.run_id, site.files, RULES)
    assert again.new == [] and sorted(again.known) == sorted(d.id for d in got.new)
    # a later run: one row inside the second COVID episode, one opening a third
    rows = [["K9", A, "A1", "Wang Wei", "", "12 Riverside Road", "01/15/2019", "M",
             "03/30/2024", "U07.1", ""],
            ["K10", A, "A1", "Wang Wei", "", "12 Riverside Road", "01/15/2019", "M",
             "06/01/2024", "U07.1", ""]]
    later = _hosp_a(tmp_path, "dx-2.csv", rows)
    third = draft_run(later.vault, KEY, later.run_id, later.files, RULES)
    [new] = third.new
    assert new.draft.fields.diagnosis_date == "2024-06-01" and len(third.known) == 1
    fresh = _hosp_a(tmp_path / "fresh")
    recent = draft_run(fresh.vault, KEY, fresh.run_id, fresh.files, RULES,
                       since=date(2024, 3, 1))
    assert sorted((d.draft.disease, d.draft.fields.diagnosis_date) for d in recent.new) == [
        ("covid-19", "2024-03-10"), ("hepatitis-b", "2024-06-01")]
    assert recent.skipped == []                 # K6 and K8 are dated before 2024-03-01


def test_two_hospitals_give_the_same_person_the_same_report_pseudonym(tmp_path: Path) -> None:
    a = _hosp_a(tmp_path)
    rows_b = [["BX1", A, "王伟", "13800000001", "江城市解放路12号", "2019年01月15日", "男",
               "2024年1月7日", "", "新冠肺炎"]]
    b = _ingest(tmp_path, "hosp-b", "dx.tsv", _csv(rows_b, HEADER_B, "\t"), "gbk")
    da = draft_run(a.vault, KEY, a.run_id, a.files, RULES).new
    [db] = draft_run(b.vault, KEY, b.run_id, b.files, RULES).new
    first = next(d for d in da if d.draft.fields.diagnosis_date == "2024-01-05")
    assert (db.org, db.patient, db.draft.fields.district) == ("hosp-b", first.patient, "110101")
    assert db.draft.patient_details["name"] == [{"text": "王伟"}]


def test_confirmation_seals_identified_details_to_the_cdc(tmp_path: Path) -> None:
    site = _hosp_a(tmp_path)
    drafts = draft_run(site.vault, KEY, site.run_id, site.files, RULES).new
    d = next(x for x in drafts if x.draft.disease == "covid-19")
    cdc, doctor = AgreementKey.generate(), SigningKey.generate()
    args = submit_args(d, chain_id="c1", cdc="cdc", cdc_kex_key=cdc.public, key=KEY,
                       physician="hosp-a/dr-li", physician_key=doctor,
                       onset_date="2024-01-03")
    assert args["report_id"] == d.id and args["patient"] == d.patient
    assert (args["onset_date"], args["diagnosis_date"], args["district"]) == (
        "2024-01-03", "2024-01-05", "110101")
    text = orjson.dumps(args)
    assert A.encode() not in text and b"Wang" not in text and b"k1-" not in text
    body = orjson.loads(hpke.open(cdc.secret, unb64(args["payload"]),
                                  payload_info("c1", "hosp-a", d.id)))
    assert body["patient"]["identifier"][0]["value"] == A
    assert body["reporter"]["member"] == "hosp-a/dr-li"
    assert body["clinical"]["source_records"] == [rid_ for _, _, rid_ in d.records]
    assert record_args(d) == {"report_id": d.id, "digest": d.digest, "rule": "notifiable-dx"}
    with pytest.raises(ReportError, match="not of hosp-a"):
        submit_args(d, chain_id="c1", cdc="cdc", cdc_kex_key=cdc.public, key=KEY,
                    physician="hosp-b/dr", physician_key=doctor)
    with pytest.raises(ReportError, match="pseudonym key differs"):
        submit_args(d, chain_id="c1", cdc="cdc", cdc_kex_key=cdc.public,
                    key=PseudonymKey("k1", b"\x08" * 32), physician="hosp-a/dr-li",
                    physician_key=doctor)
    store = DraftStore(site.vault)
    store.recorded(d.id, "tx-1")
    store.confirmed(d.id, "tx-2")
    done = store.get(d.id)
    assert done is not None and (done.status, done.recorded_tx, done.submitted_tx) == (
        "confirmed", "tx-1", "tx-2")
    with pytest.raises(ReportError) as exc:
        store.discarded(d.id, "no")
    assert exc.value.code == Code.INVALID_STATE
    with pytest.raises(ReportError, match="is confirmed"):
        submit_args(done, chain_id="c1", cdc="cdc", cdc_kex_key=cdc.public, key=KEY,
                    physician="hosp-a/dr-li", physician_key=doctor)
    with pytest.raises(ReportError) as missing:
        store.discarded("gw-nope", "x")
    assert missing.value.code == Code.NOT_FOUND


def test_a_tampered_stored_draft_does_not_open(tmp_path: Path) -> None:
    site = _hosp_a(tmp_path)
    first, second, *_ = draft_run(site.vault, KEY, site.run_id, site.files, RULES).new
    body = site.vault.db.execute("SELECT body FROM surveillance_drafts WHERE draft_id=?",
                                 (second.id,)).fetchone()[0]
    site.vault.db.execute("UPDATE surveillance_drafts SET body=? WHERE draft_id=?",
                          (body, first.id))          # a sealed body moved to another draft
    with pytest.raises(MedLedgerError, match="fails authentication"):
        DraftStore(site.vault).get(first.id)


def test_rules_document_and_district_table() -> None:
    table = DistrictTable((("riverside", "110101"), ("江城", "110101")))
    assert table.district_of({"address": [{"text": "12 RIVERSIDE Rd"}]}) == "110101"
    assert table.district_of({"address": [{"line": ["解放路"], "city": "江城市"}]}) == "110101"
    assert table.district_of({"address": [{"text": "elsewhere"}]}) is None
    assert table.district_of({}) is None
    for bad in ({"districts": [["x"]]}, {"districts": [["", "110101"]]},
                {"districts": [["x", "no spaces allowed"]]}, {"districts": "x"}):
        with pytest.raises(ValueError):
            GatewayRules.from_doc(bad)
    rules = GatewayRules.from_doc({
        "lab": [{"id": "lab-x", "codes": [["http://loinc.org", "1234-5"]],
                 "disease_code": "A00.9"}],
        "diagnosis": [{"id": "dx-covid", "prefixes": ["U07"]}]})
    from medledger.surveillance.diseases import Catalog

    want = rules.wants(Catalog())
    assert want("icd10", "U07.1") and not want("icd10", "B18.1")     # outside the prefixes
    assert not want("icd10", "I10") and not want("icd10", "")
    assert want("loinc", "1234-5") and not want("loinc", "718-7")
    assert not want("medication", "x")
