"""The DP budget per (study, privacy unit): the unit and its count sensitivity are study terms,
a DP query states both inside its hashed specification, the ledger charges
``spent/<study>/<unit>`` and refuses an overspend (or another unit) before any site is asked,
and the account is replayed from state after a restart. Also: the hashed specification holds
the researcher, the algorithm and the consent filter (E15)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from tests.unit.research.conftest import make_sites
from tests.unit.research.harness import RESEARCHER, SITES, StudyHarness, active, gateway, terms

from medledger.contracts.base import ContractError
from medledger.research import audit, dp
from medledger.research.contract import Studies
from medledger.research.federation import Federation
from medledger.research.recorder import LedgerRecorder
from medledger.research.site import Site

Q = {"study": "s1", "query_id": "d1", "query_hash": "11" * 32, "analysis": "crosstab",
     "variables": ["sex"], "sites": SITES, "dp_milli_eps": 500}
CONSENT = {"purpose": "research", "recipient": {"org": "rc", "role": "researcher"},
           "categories": ["demographics"]}


def federation(h: StudyHarness, sites: list[Site], study: str = "s1", **kw: object
               ) -> Federation:
    rec = LedgerRecorder(study, lambda m, a: h.call(RESEARCHER, m, a),
                         {n: (lambda m, a, n=n: h.call(gateway(n), m, a)) for n in SITES})
    return Federation(sites, study=study, secure=True, recorder=rec, **kw)  # type: ignore[arg-type]


def named_sites() -> list[Site]:
    sites = make_sites([300, 400, 900, 1500])
    for s, name in zip(sites, SITES, strict=True):
        s.name = name
    return sites


def test_study_terms_fix_the_unit_and_its_sensitivity() -> None:
    h = StudyHarness()
    assert h.code_of(RESEARCHER, "register", terms(max_sites_per_person=2)) == "bad_args"
    assert h.code_of(RESEARCHER, "register", terms(privacy_unit="person",
                                                   max_sites_per_person=5)) == "bad_args"
    active(h, "s1", analyses=["crosstab"], privacy_unit="person", max_sites_per_person=2)
    assert h.get("spent/s1/person") == {"milli_eps": 0}
    assert h.get("study/s1")["privacy_unit"] == "person"
    # a DP query for another unit, or at another sensitivity, is refused
    assert h.code_of(RESEARCHER, "query", {**Q, "privacy_unit": "record"}) == "forbidden"
    assert h.code_of(RESEARCHER, "query", {**Q, "privacy_unit": "person",
                                           "dp_sensitivity": 1}) == "forbidden"
    for i in (1, 2):
        h.call(RESEARCHER, "query", {**Q, "query_id": f"d{i}", "privacy_unit": "person",
                                     "dp_sensitivity": 2})
    assert h.code_of(RESEARCHER, "query", {**Q, "query_id": "d3"}) == "forbidden"
    assert h.get("spent/s1/person") == {"milli_eps": 1000}
    assert h.get("spent/s1") == {"milli_eps": 1000}  # the study's total across units
    # a study registered before privacy units keeps its spent total as its unit's account
    old = StudyHarness()
    active(old, "s2", analyses=["crosstab"])
    del old.state.data["studies/spent/s2/record"]
    old.state.data["studies/spent/s2"] = b'{"milli_eps":800}'
    assert old.code_of(RESEARCHER, "query", {**Q, "study": "s2"}) == "forbidden"


def test_person_unit_overspend_is_refused_before_data_access_and_after_restart() -> None:
    h = StudyHarness()
    active(h, "s1", analyses=["crosstab"], privacy_unit="person", max_sites_per_person=2,
           dp_budget_milli_eps=1000)
    sites = named_sites()
    wrong_unit = federation(h, sites, run_prefix="w")  # no unit given: record, sensitivity 1
    with pytest.raises(ContractError, match="unit record"):
        wrong_unit.crosstab({"sex": ["F", "M"]}, epsilon=0.5)
    assert all(s.audit == [] for s in sites)  # no site was asked
    fed = federation(h, sites, privacy_unit="person", unit_sensitivity=2)
    fed.crosstab({"sex": ["F", "M"]}, epsilon=0.5)
    fed.crosstab({"sex": ["F", "M"]}, epsilon=0.5)
    asked = [len(s.audit) for s in sites]
    with pytest.raises(ContractError, match="DP budget of unit person"):
        fed.crosstab({"sex": ["F", "M"]}, epsilon=0.5)
    assert [len(s.audit) for s in sites] == asked == [2] * 4
    assert h.get("spent/s1/person") == {"milli_eps": 1000}
    q = fed.trail[0]["artifacts"]["query"]
    assert q["dp"] == {"milli_eps": 500, "unit": "person", "sensitivity": 2}
    assert h.get("query/s1/q1")["query_hash"] == audit.digest(q)
    assert (h.get("query/s1/q1")["privacy_unit"], h.get("query/s1/q1")["dp_sensitivity"]) == (
        "person", 2)
    # a restarted peer replays the per-unit account from its state and still refuses
    restarted = StudyHarness()
    restarted.state = h.state
    restarted.contract = Studies()
    again = federation(restarted, sites, privacy_unit="person", unit_sensitivity=2,
                       run_prefix="r")
    with pytest.raises(ContractError, match="spent 1000"):
        again.crosstab({"sex": ["F", "M"]}, epsilon=0.1)
    assert [len(s.audit) for s in sites] == asked


def test_count_noise_scales_with_the_units_sensitivity() -> None:
    """Integer Laplace at ε = 0.5 and sensitivity 2 has scale 4 and is charged ε = 0.5."""
    assert dp.count_measurement(0.5, 2).map(2) == pytest.approx(0.5)
    noisy, spent = dp.noisy_counts(np.zeros(10_000, dtype=np.int64), 0.5, sensitivity=2)
    assert spent == pytest.approx(0.5)
    a = 0.25  # discrete Laplace of scale 4: P(k) ∝ exp(-|k|/4)
    assert np.var(noisy) == pytest.approx(2 * np.exp(-a) / (1 - np.exp(-a)) ** 2, rel=0.1)
    ks = np.arange(-30, 31)
    observed = np.array([np.sum(noisy == k) for k in ks] + [np.sum(np.abs(noisy) > 30)])
    pmf = stats.dlaplace(a).pmf(ks)
    assert stats.chisquare(observed, np.append(pmf, 1 - pmf.sum()) * noisy.size).pvalue > 1e-4
    assert dp.noisy_mean(100.0, 10, 5.0, 0.5, sensitivity=3)[2] == pytest.approx(0.5)


def test_hashed_query_holds_researcher_algorithm_and_consent_filter() -> None:
    h = StudyHarness()
    active(h, "s1", analyses=["moments"])
    fed = federation(h, named_sites(), researcher="rc/dr", consent=CONSENT)
    fed.moments("bmi")
    q = fed.trail[0]["artifacts"]["query"]
    assert q["researcher"] == "rc/dr" and q["consent"] == CONSENT
    assert q["algorithm"]["name"] == "medledger.research.moments" and q["algorithm"]["version"]
    assert h.get("query/s1/q1")["query_hash"] == audit.digest(q)
    assert h.get("query/s1/q1")["researcher"] == "rc/dr"
    other = federation(h, named_sites(), researcher="rc/someone", run_prefix="o")
    with pytest.raises(ContractError, match="only rc/dr"):  # the spec names another researcher
        other.moments("bmi")
