"""The ``case_reports`` contract: states, access, refusals, linking and counts (in memory),
plus sealing and opening a report's payload."""

from __future__ import annotations

import os
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.unit.surveillance.harness import (
    CDC_ADMIN,
    CDC_EPI,
    DAY_MS,
    GATEWAY_A,
    GATEWAY_B,
    PHYSICIAN_A,
    RESEARCHER,
    Harness,
)

from medledger.crypto.keys import SigningKey, b64, key_id
from medledger.surveillance import casefile
from medledger.surveillance.casefile import CaseFields, ReportError
from medledger.surveillance.diseases import Catalog, Disease
from medledger.surveillance.tally import counted_cell

PKEY = os.urandom(32)
DR = SigningKey.generate()
CHAIN = "test-1"


def fields(**kw: Any) -> CaseFields:
    base: dict[str, Any] = {"disease_code": "A00.1", "onset_date": "2025-11-20",
                            "diagnosis_date": "2025-11-22", "district": "110105",
                            "age_band": "25-44", "sex": "female", "lab_status": "confirmed"}
    base.update(kw)
    return CaseFields(**base)


def submit_args(h: Harness, org: str, report_id: str, person: str = "P1",
                catalog: Catalog | None = None, **kw: Any) -> dict[str, Any]:
    return casefile.seal_report(
        chain_id=CHAIN, org=org, report_id=report_id, cdc="cdc", cdc_kex_key=h.cdc_key.public,
        fields=fields(**kw), patient_id=("urn:oid:national-id", person),
        patient_details={"name": "Test Person", "id": person}, pseudonym_key=PKEY,
        physician=f"{org}/dr", physician_key=DR, catalog=catalog)


def submit(h: Harness, org: str = "hosp-a", report_id: str = "r1", person: str = "P1",
           **kw: Any) -> Any:
    caller = GATEWAY_A if org == "hosp-a" else GATEWAY_B
    return h.call(caller, "case_reports", "submit", submit_args(h, org, report_id, person, **kw))


def cells(h: Harness, kind: str = "day") -> dict[str, int]:
    return {k.split("/", 3)[3]: v["n"] for k, v in h.scan(f"case_reports/{kind}/").items()}


# ------------------------------------------------------------------ submit and what is stored


def test_submit_counts_the_case_by_day_and_iso_week() -> None:
    h = Harness()
    out = submit(h)
    assert out == {"status": "submitted", "disease": "cholera", "episode": 0, "case": "new"}
    assert cells(h) == {"110105/2025-11-20": 1}  # onset date
    assert cells(h, "week") == {"110105/2025-W47": 1}
    day = h.get("case_reports/day/cholera/110105/2025-11-20")
    assert day["s"] == {"25-44|female|confirmed": 1}
    lines = h.scan("case_reports/line/cholera/110105/2025-11-20/")
    assert [v["report"] for v in lines.values()] == ["hosp-a/r1"]


def test_the_ledger_holds_no_identifier_and_the_cdc_opens_the_payload() -> None:
    h = Harness()
    # "~" occurs in neither hex nor base64, so the identifier cannot show up by chance in the
    # record's digests and ciphertext (a bare "4711" could, and made this test flaky)
    person = "ID~4711~"
    submit(h, person=person)
    rec = h.get("case_reports/report/hosp-a/r1")
    text = str(rec)
    assert person not in text and "~4711" not in text
    assert "Test Person" not in text and "hosp-a/dr" not in text
    assert rec["patient"] == casefile.patient_pseudonym(PKEY, "urn:oid:national-id", person,
                                                        "cholera")
    h.put("consortium/member/hosp-a/dr", {"role": "physician", "keys": [
        {"kid": DR.kid, "pub": b64(DR.public)}]})
    opened = casefile.open_report(CHAIN, rec, h.cdc_key.secret, h.state)
    assert opened.ok, opened.problems
    assert opened.physician == "hosp-a/dr" and opened.patient["id"] == person


def test_payload_does_not_open_without_the_cdc_key_or_in_another_report() -> None:
    h = Harness()
    submit(h)
    rec = h.get("case_reports/report/hosp-a/r1")
    with pytest.raises(ReportError, match="does not open"):
        casefile.open_report(CHAIN, rec, os.urandom(32), h.state)
    moved = {**rec, "report_id": "r2"}
    with pytest.raises(ReportError, match="does not open"):
        casefile.open_report(CHAIN, moved, h.cdc_key.secret, h.state)


def test_open_report_names_each_failed_check() -> None:
    h = Harness()
    submit(h)
    rec = h.get("case_reports/report/hosp-a/r1")
    h.put("consortium/member/hosp-a/dr", {"role": "nurse", "keys": [
        {"kid": DR.kid, "pub": b64(SigningKey.generate().public)}]})
    opened = casefile.open_report(CHAIN, {**rec, "reporter": "00" * 32}, h.cdc_key.secret,
                                  h.state)
    assert len(opened.problems) == 3 and not opened.ok
    assert "commitment" in opened.problems[0] and "not a physician" in opened.problems[1]
    assert "signature" in opened.problems[2]


def test_patient_pseudonyms_are_keyed_per_disease_and_normalised() -> None:
    p = casefile.patient_pseudonym
    assert p(PKEY, "nid", "ab 12", "cholera") == p(PKEY, "nid", "AB12", "cholera")
    assert p(PKEY, "nid", "AB12", "cholera") != p(PKEY, "nid", "AB12", "measles")
    assert p(PKEY, "nid", "AB12", "cholera") != p(os.urandom(32), "nid", "AB12", "cholera")
    with pytest.raises(ReportError, match="want >= 32"):
        p(b"short", "nid", "AB12", "cholera")


# ------------------------------------------------------------------ linking, not double counting


def test_same_person_from_two_hospitals_counts_once_and_survives_one_revocation() -> None:
    h = Harness()
    submit(h, "hosp-a", "r1", onset_date="2025-11-20", district="110105")
    second = submit(h, "hosp-b", "x9", onset_date="2025-11-18", district="110106")
    assert second["case"] == "linked" and second["episode"] == 0
    assert cells(h) == {"110106/2025-11-18": 1}  # the earliest report represents the case
    h.call(CDC_EPI, "case_reports", "revoke", {"org": "hosp-b", "report_id": "x9",
                                               "reason": "duplicate"})
    assert cells(h) == {"110105/2025-11-20": 1}
    h.call(CDC_EPI, "case_reports", "revoke", {"org": "hosp-a", "report_id": "r1",
                                               "reason": "not a case"})
    assert cells(h) == {} and cells(h, "week") == {}
    assert h.scan("case_reports/line/") == {}


def test_other_people_and_later_episodes_count_separately() -> None:
    h = Harness()
    submit(h, report_id="r1", person="P1", disease_code="J10.1", onset_date="2025-03-01",
           diagnosis_date="2025-03-02")
    assert submit(h, report_id="r2", person="P1", disease_code="J11", onset_date="2025-03-20",
                  diagnosis_date="2025-03-21")["case"] == "linked"  # within 30 days
    later = submit(h, report_id="r3", person="P1", disease_code="J10", onset_date="2025-10-01",
                   diagnosis_date="2025-10-01")
    assert later == {"status": "submitted", "disease": "influenza", "episode": 1, "case": "new"}
    assert submit(h, report_id="r4", person="P2", disease_code="J10", onset_date="2025-10-01",
                  diagnosis_date="2025-10-01")["case"] == "new"
    assert cells(h) == {"110105/2025-03-01": 1, "110105/2025-10-01": 2}
    # measles: once per person, however far apart
    submit(h, report_id="m1", person="P1", disease_code="B05.9", onset_date="2020-01-01",
           diagnosis_date="2020-01-02")
    assert submit(h, report_id="m2", person="P1", disease_code="B05", onset_date="2025-01-01",
                  diagnosis_date="2025-01-02")["case"] == "linked"


def test_lab_status_of_a_case_is_confirmed_if_any_report_is() -> None:
    h = Harness()
    submit(h, "hosp-a", "r1", lab_status="pending", onset_date="2025-11-18")
    submit(h, "hosp-b", "r2", lab_status="confirmed", onset_date="2025-11-19")
    assert h.get("case_reports/day/cholera/110105/2025-11-18")["s"] == {
        "25-44|female|confirmed": 1}


# ------------------------------------------------------------------ the CDC's transitions


def test_revise_moves_the_count_and_keeps_the_history() -> None:
    h = Harness()
    submit(h)
    out = h.call(CDC_EPI, "case_reports", "revise", {
        "org": "hosp-a", "report_id": "r1", "reason": "address corrected", "district": "110108",
        "clear_onset_date": True})
    assert out["changed"] == ["district", "onset_date"]
    assert cells(h) == {"110108/2025-11-22": 1}  # diagnosis date once onset is cleared
    rec = h.get("case_reports/report/hosp-a/r1")
    assert rec["status"] == "revised"
    assert rec["history"][-1]["changes"] == {"district": ["110105", "110108"],
                                             "onset_date": ["2025-11-20", None]}
    h.call(CDC_EPI, "case_reports", "revise", {"org": "hosp-a", "report_id": "r1",
                                               "reason": "culture: typhoid",
                                               "disease_code": "A01.0"})
    assert cells(h) == {"110108/2025-11-22": 1}
    assert set(h.scan("case_reports/day/")) == {"case_reports/day/typhoid/110108/2025-11-22"}
    h.call(CDC_EPI, "case_reports", "verify", {"org": "hosp-a", "report_id": "r1"})
    assert h.get("case_reports/report/hosp-a/r1")["status"] == "verified"
    h.put("consortium/member/hosp-a/dr", {"role": "physician", "keys": [
        {"kid": DR.kid, "pub": b64(DR.public)}]})
    opened = casefile.open_report(CHAIN, h.get("case_reports/report/hosp-a/r1"),
                                  h.cdc_key.secret, h.state)
    assert opened.ok, opened.problems  # the signature covers the fields as submitted


def test_transitions_refused_from_the_wrong_state() -> None:
    h = Harness()
    submit(h)
    ref = {"org": "hosp-a", "report_id": "r1"}
    h.call(CDC_EPI, "case_reports", "revoke", {**ref, "reason": "not a case"})
    assert h.code_of(CDC_EPI, "case_reports", "verify", ref) == "invalid_state"
    assert h.code_of(CDC_EPI, "case_reports", "revoke", {**ref, "reason": "x"}) == \
        "invalid_state"
    assert h.code_of(GATEWAY_A, "case_reports", "submit", submit_args(h, "hosp-a", "r1")) == \
        "invalid_state"
    assert h.code_of(CDC_EPI, "case_reports", "verify", {"org": "hosp-a",
                                                         "report_id": "nope"}) == "not_found"
    submit(h, report_id="r2")
    assert h.code_of(CDC_EPI, "case_reports", "revise", {
        "org": "hosp-a", "report_id": "r2", "reason": "x", "sex": "female"}) == "bad_args"


def test_drafts_hold_no_case_data_and_can_be_submitted_or_discarded() -> None:
    h = Harness()
    digest = os.urandom(32).hex()
    h.call(GATEWAY_A, "case_reports", "draft", {"report_id": "d1", "digest": digest,
                                                "rule": "lab-cholera"})
    rec = h.get("case_reports/report/hosp-a/d1")
    assert set(rec) == {"org", "report_id", "status", "digest", "rule", "history"}
    assert cells(h) == {}
    assert h.code_of(GATEWAY_A, "case_reports", "draft", {
        "report_id": "d1", "digest": digest, "rule": "x"}) == "already_exists"
    submit(h, report_id="d1")
    rec = h.get("case_reports/report/hosp-a/d1")
    assert rec["status"] == "submitted" and rec["rule"] == "lab-cholera"
    assert [e["action"] for e in rec["history"]] == ["draft", "submit"]
    h.call(GATEWAY_A, "case_reports", "draft", {"report_id": "d2", "digest": digest,
                                                "rule": "dx"})
    h.call(GATEWAY_A, "case_reports", "discard", {"report_id": "d2", "reason": "ruled out"})
    assert h.code_of(GATEWAY_A, "case_reports", "submit", submit_args(h, "hosp-a", "d2")) == \
        "invalid_state"
    assert h.code_of(GATEWAY_A, "case_reports", "discard", {"report_id": "d1"}) == \
        "invalid_state"


# ------------------------------------------------------------------ access


def test_who_may_do_what() -> None:
    h = Harness()
    args = submit_args(h, "hosp-a", "r1")
    assert h.code_of(PHYSICIAN_A, "case_reports", "submit", args) == "forbidden"
    assert h.code_of(CDC_EPI, "case_reports", "submit", args) == "forbidden"
    h.call(GATEWAY_A, "case_reports", "submit", args)
    ref = {"org": "hosp-a", "report_id": "r1"}
    assert h.code_of(GATEWAY_A, "case_reports", "verify", ref) == "forbidden"
    assert h.code_of(RESEARCHER, "case_reports", "verify", ref) == "forbidden"
    other_cdc = type(CDC_EPI)("cdc2/epi", "cdc2", "physician", "cdc")
    assert h.code_of(other_cdc, "case_reports", "verify", ref) == "forbidden"
    assert h.code_of(CDC_EPI, "case_reports", "configure", {"districts": ["1"]}) == "forbidden"
    assert h.code_of(GATEWAY_B, "case_reports", "discard", {"report_id": "r1"}) == "not_found"


# ------------------------------------------------------------------ bad input changes nothing


BAD = {
    "not-notifiable": ({"disease_code": "J45"}, "bad_args", "not a notifiable disease"),
    "onset-after-diagnosis": ({"onset_date": "2025-11-23"}, "bad_args", "after diagnosis"),
    "future": ({"diagnosis_date": "2025-12-01", "onset_date": None}, "bad_args", "outside"),
    "not-a-date": ({"diagnosis_date": "2025-02-30"}, "bad_args", "not a calendar date"),
    "bad-age-band": ({"age_band": "30-40"}, "bad_args", None),
    "bad-sex": ({"sex": "F"}, "bad_args", None),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_fields_are_refused_and_change_nothing(name: str) -> None:
    h = Harness()
    before = dict(h.state.data)
    change, code, message = BAD[name]
    args = {**submit_args(h, "hosp-a", "r1"), **change}
    try:
        h.call(GATEWAY_A, "case_reports", "submit", args)
    except Exception as exc:  # ContractError, or pydantic's ValidationError (bad_args)
        got = getattr(exc, "code", "bad_args")
        assert str(got) == code
        if message:
            assert message in str(exc)
    else:
        raise AssertionError("accepted")
    assert h.state.data == before


def test_envelope_refusals() -> None:
    h = Harness()
    args = submit_args(h, "hosp-a", "r1")
    assert h.code_of(GATEWAY_A, "case_reports", "submit", {**args, "cdc": "research"}) == \
        "not_found"
    stale = key_id(os.urandom(32))
    assert h.code_of(GATEWAY_A, "case_reports", "submit", {**args, "kex_kid": stale}) == \
        "conflict"
    assert h.code_of(GATEWAY_A, "case_reports", "submit",
                     {**args, "payload": "!" * 80}) == "bad_args"
    assert h.code_of(GATEWAY_A, "case_reports", "submit",
                     {**args, "payload": b64(b"x" * 47)}) == "bad_args"
    assert cells(h) == {}


def test_configure_catalog_and_districts() -> None:
    h = Harness()
    custom = Catalog.of([Disease("cholera", "Cholera", ("A00",)),
                         Disease("norovirus", "Norovirus", ("A08.1",), 14)])
    h.call(CDC_ADMIN, "case_reports", "configure", {"catalog": custom.to_doc(),
                                                    "districts": ["110105", "110106"]})
    assert submit(h, report_id="n1", disease_code="A08.1", onset_date=None,
                  catalog=custom)["disease"] == "norovirus"
    assert h.code_of(GATEWAY_A, "case_reports", "submit",
                     submit_args(h, "hosp-a", "t1", disease_code="A01.0")) == "bad_args"
    assert h.code_of(GATEWAY_A, "case_reports", "submit",
                     submit_args(h, "hosp-a", "z1", district="999999")) == "bad_args"
    bad_catalog = [{"id": "x", "name": "X", "codes": ["A00"], "episode_days": None,
                    "severe": "no"}]
    assert h.code_of(CDC_ADMIN, "case_reports", "configure", {"catalog": bad_catalog}) == \
        "bad_args"
    dup = [*custom.to_doc(), {"id": "other", "name": "O", "codes": ["A00"],
                              "episode_days": None, "severe": False}]
    assert h.code_of(CDC_ADMIN, "case_reports", "configure", {"catalog": dup}) == "bad_args"


# ------------------------------------------------------------------ invariants under any history


OPS = st.lists(st.tuples(
    st.sampled_from(["submit", "submit", "revise", "revoke", "verify"]),
    st.sampled_from(["hosp-a", "hosp-b"]),
    st.integers(0, 5),                      # report number
    st.sampled_from(["P1", "P2", "P3"]),
    st.sampled_from(["J10", "B05", "A00"]),  # influenza (30 d), measles (once), cholera (90 d)
    st.integers(0, 200),                    # day offset
    st.sampled_from(["d1", "d2"]),
), min_size=1, max_size=25)


def _date(offset: int) -> str:
    from datetime import date, timedelta

    return (date(2025, 1, 1) + timedelta(days=offset)).isoformat()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=OPS)
def test_counts_match_the_cases_whatever_the_history(ops: list[Any]) -> None:
    h = Harness(time_ms=1_764_201_600_000 + 30 * DAY_MS)
    from medledger.contracts.base import ContractError

    for op, org, n, person, code, offset, district in ops:
        rid, ref = f"r{n}", {"org": org, "report_id": f"r{n}"}
        try:
            if op == "submit":
                submit(h, org, rid, person, disease_code=code, onset_date=_date(offset),
                       diagnosis_date=_date(offset + 1), district=district)
            elif op == "revise":
                h.call(CDC_EPI, "case_reports", "revise", {
                    **ref, "reason": "r", "onset_date": _date(offset), "district": district,
                    "diagnosis_date": _date(offset + 2), "disease_code": code})
            else:
                h.call(CDC_EPI, "case_reports", op, {**ref, "reason": "r"} if op == "revoke"
                       else ref)
        except ContractError:
            pass
    reports = h.scan("case_reports/report/")
    cases = h.scan("case_reports/case/")
    counted = 0
    seen: list[str] = []
    for key, case in cases.items():
        _, _, disease, _patient = key.split("/")
        active_episodes = 0
        for ep in case["episodes"]:
            recs = [reports[f"case_reports/report/{r}"] for r in ep["reports"]]
            assert ep["counted"] == counted_cell(recs)
            assert all(r["disease"] == disease for r in recs)
            seen += [r for r, rec in zip(ep["reports"], recs, strict=True)
                     if rec["status"] != "revoked"]
            if ep["counted"] is not None:
                counted += 1
                active_episodes += 1
        if disease == "measles":
            assert active_episodes <= 1
    active = [f"{r['org']}/{r['report_id']}" for r in reports.values()
              if r["status"] in ("submitted", "verified", "revised")]
    assert sorted(seen) == sorted(active)  # every active report in exactly one case
    for kind in ("day", "week"):
        values = h.scan(f"case_reports/{kind}/").values()
        assert sum(v["n"] for v in values) == counted
        assert all(v["n"] == sum(v["s"].values()) > 0 and all(v["s"].values()) for v in values)
    assert len(h.scan("case_reports/line/")) == counted
