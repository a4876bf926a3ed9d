"""The ``studies`` contract: terms fixed first, approvals co-signed, queries within terms,
DP budget, responses by the sites themselves, results and the revenue split."""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from tests.unit.research.harness import (
    RESEARCHER,
    SITES,
    StudyHarness,
    active,
    admin,
    gateway,
    steward,
    terms,
)

from medledger.contracts.context import Caller
from medledger.installed import default_registry
from medledger.research.recorder import LedgerRecorder

Q = {"study": "s1", "query_id": "q1", "query_hash": "11" * 32, "analysis": "glm",
     "variables": ["age", "sbp"], "sites": SITES}


def test_installed() -> None:
    assert "studies" in default_registry().contracts


def test_study_activates_only_after_every_site_approves() -> None:
    h = StudyHarness()
    h.call(RESEARCHER, "register", terms())
    for s in SITES[:3]:
        h.call(admin(s), "approve", {"study": "s1", "site": s, "committee_ref": "DC-1"},
               (steward(s),))
    assert h.get("study/s1")["status"] == "proposed"
    assert h.code_of(RESEARCHER, "query", Q) == "invalid_state"  # no data touched before
    h.call(admin("hosp-d"), "approve", {"study": "s1", "site": "hosp-d", "committee_ref": "x"},
           (steward("hosp-d"),))
    assert h.get("study/s1")["status"] == "active"
    assert h.get("approval/s1/hosp-d")["steward"] == "hosp-d/dsc"


def test_approval_needs_the_data_committee_cosignature_and_own_site() -> None:
    h = StudyHarness()
    h.call(RESEARCHER, "register", terms())
    args = {"study": "s1", "site": "hosp-a", "committee_ref": "DC"}
    assert h.code_of(admin("hosp-a"), "approve", args) == "missing_cosignature"
    assert h.code_of(admin("hosp-a"), "approve", args, (steward("hosp-b"),)) == \
        "missing_cosignature"
    assert h.code_of(admin("hosp-b"), "approve", args, (steward("hosp-a"),)) == "forbidden"
    assert h.code_of(admin("hosp-x"), "approve", {**args, "site": "hosp-x"},
                     (steward("hosp-x"),)) == "forbidden"


def test_register_refuses_fewer_than_three_sites_and_duplicates() -> None:
    h = StudyHarness()
    assert h.code_of(RESEARCHER, "register", terms(sites=["hosp-a", "hosp-b", "hosp-a"])) \
        == "bad_args"
    h.call(RESEARCHER, "register", terms())
    assert h.code_of(RESEARCHER, "register", terms()) == "already_exists"


def test_query_must_stay_within_the_protocol() -> None:
    h = StudyHarness()
    active(h)
    assert h.code_of(RESEARCHER, "query", {**Q, "analysis": "histogram"}) == "forbidden"
    assert h.code_of(RESEARCHER, "query", {**Q, "variables": ["age", "income"]}) == "forbidden"
    assert h.code_of(RESEARCHER, "query", {**Q, "sites": ["hosp-a", "hosp-b"]}) == "forbidden"
    h.call(RESEARCHER, "query", Q)
    assert h.get("query/s1/q1")["query_hash"] == "11" * 32


def test_dp_budget_refuses_the_third_query_of_a_two_query_budget() -> None:
    h = StudyHarness()
    active(h)
    for i in (1, 2):
        h.call(RESEARCHER, "query", {**Q, "query_id": f"d{i}", "dp_milli_eps": 500})
    assert h.code_of(RESEARCHER, "query", {**Q, "query_id": "d3", "dp_milli_eps": 500}) \
        == "forbidden"
    assert h.get("spent/s1") == {"milli_eps": 1000}


def test_site_records_its_own_response_and_refusal() -> None:
    h = StudyHarness()
    active(h)
    h.call(RESEARCHER, "query", Q)
    r = {"study": "s1", "query_id": "q1", "response_hash": "22" * 32, "outcome": "released",
         "policy_hash": "33" * 32}
    h.call(gateway("hosp-a"), "respond", r)
    assert h.code_of(gateway("hosp-a"), "respond", r) == "already_exists"
    h.call(gateway("hosp-b"), "respond", {**r, "response_hash": None,
                                          "outcome": "refused:min_rows"})
    assert h.code_of(gateway("hosp-c"), "respond", {**r, "response_hash": None}) == "bad_args"
    assert h.get("response/s1/q1/hosp-b")["outcome"] == "refused:min_rows"


def test_result_records_credits_once_and_only_for_a_recorded_query() -> None:
    """Credits for the research output (contributors and their roles) are kept with the
    result, through the recorder that a federation writes with."""
    h = StudyHarness()
    active(h)
    h.call(RESEARCHER, "query", Q)
    credits = [{"member": "rc/dr", "role": "principal-investigator"},
               {"member": "hosp-a/dsc", "role": "data-provider"}]
    rec = LedgerRecorder("s1", lambda m, a: h.call(RESEARCHER, m, a), {}, credits=credits)
    rec.result("q1", "44" * 32, ["hosp-d"])
    stored = h.get("result/s1/q1")
    assert stored["credits"] == credits and stored["dropped"] == ["hosp-d"]
    assert stored["result_hash"] == "44" * 32
    again = {"study": "s1", "query_id": "q1", "result_hash": "44" * 32}
    assert h.code_of(RESEARCHER, "result", again) == "already_exists"
    assert h.code_of(RESEARCHER, "result", {**again, "query_id": "q9"}) == "not_found"
    h2 = StudyHarness()
    active(h2)
    h2.call(RESEARCHER, "query", Q)
    with pytest.raises(ValidationError, match="role"):  # schema refuses it; nothing written
        h2.call(RESEARCHER, "result", {**again, "credits": [{"member": "rc/dr", "role": ""}]})
    assert h2.get("result/s1/q1") is None


def test_revenue_split_must_use_the_whole_pool() -> None:
    h = StudyHarness()
    active(h)
    shares = [{"site": s, "n": 100, "phi_micro": 50_000, "phi_se_micro": 0, "loo_micro": 1_000,
               "share_ppm": 250_000, "revenue": 25_000} for s in SITES]
    bad = [dict(x) for x in shares]
    bad[0]["revenue"] = 24_999
    args = {"study": "s1", "utility": "cd" * 32, "method": "exact", "shares": bad}
    assert h.code_of(RESEARCHER, "contribution", args) == "bad_args"
    h.call(RESEARCHER, "contribution", {**args, "shares": shares})
    assert h.get("contribution/s1")["rule"]["method"] == "shapley"


def test_only_the_studys_researcher_records() -> None:
    h = StudyHarness()
    active(h)
    other = Caller("rc/other", "rc", "researcher", "research")
    assert h.code_of(other, "query", Q) == "forbidden"


def test_only_approved_algorithms_run_when_the_study_says_so() -> None:
    h = StudyHarness()
    active(h, approved_algorithms_only=True)
    digest = "ee" * 32
    review = {"digest": digest, "name": "medledger.research.glm", "version": "0.1.0"}
    assert h.code_of(RESEARCHER, "query", {**Q, "algorithm": digest}) == "forbidden"
    assert h.code_of(RESEARCHER, "query", Q) == "forbidden"  # no algorithm named
    h.call(RESEARCHER, "review_algorithm", review)
    same_org = Caller("rc/other", "rc", "researcher", "research")
    assert h.call(same_org, "review_algorithm", review) == {"approved": False}  # one org
    assert h.code_of(RESEARCHER, "review_algorithm", review) == "already_exists"
    assert h.code_of(steward("hosp-a"), "review_algorithm", {**review, "version": "9"}) == \
        "conflict"
    assert h.call(steward("hosp-a"), "review_algorithm", review) == {"approved": True}
    h.call(RESEARCHER, "query", {**Q, "algorithm": digest})
