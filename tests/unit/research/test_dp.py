"""DP releases through OpenDP: calibration, budget refused before data access, budget kept in
ledger state, no exact sum kept in the trail."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import stats
from tests.unit.research.conftest import make_sites
from tests.unit.research.harness import RESEARCHER, SITES, StudyHarness, active, gateway

from medledger.contracts.base import ContractError
from medledger.research import audit, dp
from medledger.research.contract import Studies
from medledger.research.federation import Federation
from medledger.research.recorder import LedgerRecorder


def test_laplace_count_at_eps_half_has_scale_two() -> None:
    meas = dp.count_measurement(0.5)
    assert meas.map(1) == pytest.approx(0.5)
    noisy, spent = dp.noisy_counts(np.zeros(10_000, dtype=np.int64), 0.5)
    assert spent == pytest.approx(0.5)
    # integer Laplace with scale 2 = discrete Laplace dlaplace(a = 1/2)
    ks = np.arange(-12, 13)
    observed = np.array([np.sum(noisy == k) for k in ks] + [np.sum(np.abs(noisy) > 12)])
    pmf = stats.dlaplace(0.5).pmf(ks)
    expected = np.append(pmf, 1 - pmf.sum()) * noisy.size
    assert stats.chisquare(observed, expected).pvalue > 1e-4
    assert np.var(noisy) == pytest.approx(2 * np.exp(-0.5) / (1 - np.exp(-0.5)) ** 2, rel=0.1)
    wrong = stats.dlaplace(1.0).pmf(ks)  # a scale-1 mechanism would be rejected
    assert stats.chisquare(observed, np.append(wrong, 1 - wrong.sum()) * noisy.size).pvalue < 1e-6


def setup() -> tuple[StudyHarness, Federation]:
    h = StudyHarness()
    active(h, "s1", analyses=["crosstab"], dp_budget_milli_eps=1000)
    sites = make_sites([300, 400, 900, 1500])
    for s, name in zip(sites, SITES, strict=True):
        s.name = name
    rec = LedgerRecorder("s1", lambda m, a: h.call(RESEARCHER, m, a),
                         {n: (lambda m, a, n=n: h.call(gateway(n), m, a)) for n in SITES})
    return h, Federation(sites, study="s1", secure=True, recorder=rec)


def test_third_query_over_a_two_query_budget_is_refused_before_data_access() -> None:
    h, fed = setup()
    exact = Federation(list(fed.sites)).crosstab({"sex": ["F", "M"]})
    before = [len(s.audit) for s in fed.sites]  # type: ignore[attr-defined]
    t1 = fed.crosstab({"sex": ["F", "M"]}, epsilon=0.5)
    fed.crosstab({"sex": ["F", "M"]}, epsilon=0.5)
    after_two = [len(s.audit) for s in fed.sites]  # type: ignore[attr-defined]
    with pytest.raises(ContractError, match="DP budget"):
        fed.crosstab({"sex": ["F", "M"]}, epsilon=0.5)
    assert [len(s.audit) for s in fed.sites] == after_two  # type: ignore[attr-defined]
    assert len(fed.trail) == 2  # the refused query was never dispatched nor kept
    assert after_two == [b + 2 for b in before]
    assert h.get("spent/s1") == {"milli_eps": 1000}
    assert np.all(np.abs(t1 - exact) < 60)  # noisy, but a count table
    # what the trail keeps and hashes is the released (noisy) table, with n withheld
    first = fed.trail[-2]["artifacts"]["result"]
    assert first == {"values": {"counts": t1.tolist()}, "n": -1}
    assert fed.trail[-2]["result"] == audit.digest(first)
    assert "values" not in json.dumps(fed.trail[-2]["artifacts"]["responses"])  # masked only


def test_budget_survives_a_restart() -> None:
    h, fed = setup()
    fed.crosstab({"sex": ["F", "M"]}, epsilon=0.7)
    restarted = StudyHarness()
    restarted.state = h.state  # the store a restarted peer reopens
    restarted.contract = Studies()
    assert restarted.get("spent/s1") == {"milli_eps": 700}
    rec = LedgerRecorder("s1", lambda m, a: restarted.call(RESEARCHER, m, a), {})
    fed2 = Federation(list(fed.sites), study="s1", recorder=rec, run_prefix="r")
    with pytest.raises(ContractError, match="DP budget"):
        fed2.crosstab({"sex": ["F", "M"]}, epsilon=0.5)


def test_dp_mean_is_charged_and_near_the_clamped_mean() -> None:
    _, fed = setup()
    h2 = StudyHarness()
    active(h2, "s2", analyses=["moments"], dp_budget_milli_eps=1000)
    rec = LedgerRecorder("s2", lambda m, a: h2.call(RESEARCHER, m, a),
                         {n: (lambda m, a, n=n: h2.call(gateway(n), m, a)) for n in SITES})
    fed2 = Federation(list(fed.sites), study="s2", secure=True, recorder=rec)
    mean, released = fed2.dp_mean("bmi", (10.0, 45.0), epsilon=1.0)
    exact = Federation(list(fed.sites)).moments("bmi")
    assert abs(mean - exact.mean) < 0.5  # scale 90 on a sum of ~2,800; 2 on n
    assert set(released) == {"total", "count"}
    assert h2.get("spent/s2") == {"milli_eps": 1000}
    assert fed2.trail[-1]["artifacts"]["result"]["n"] == -1
    assert dp.noisy_mean(100.0, 10, 5.0, 0.5)[2] == pytest.approx(0.5)


def test_dp_histogram_and_quantiles_are_charged_and_noisy_only() -> None:
    """A histogram (and the quantiles read off it) can ask for DP: one person is in one bin, so
    it is charged like a count table, before any site is asked; what is released, hashed and
    recorded is the noisy histogram, never the exact one or n."""
    h = StudyHarness()
    active(h, "s3", analyses=["histogram"], dp_budget_milli_eps=1000)
    sites = make_sites([300, 400, 900, 1500])
    for s, name in zip(sites, SITES, strict=True):
        s.name = name
    rec = LedgerRecorder("s3", lambda m, a: h.call(RESEARCHER, m, a),
                         {n: (lambda m, a, n=n: h.call(gateway(n), m, a)) for n in SITES})
    fed = Federation(sites, study="s3", secure=True, recorder=rec)
    edges = [float(e) for e in np.linspace(20, 85, 14)]
    exact = Federation(list(sites)).histogram("age", edges)
    noisy = fed.histogram("age", edges, epsilon=0.5)
    assert h.get("spent/s3") == {"milli_eps": 500}
    assert noisy.shape == exact.shape and np.all(np.abs(noisy - exact) < 60)
    released = fed.trail[-1]["artifacts"]["result"]
    assert released == {"values": {"counts": noisy.tolist()}, "n": -1}
    assert h.get(f"result/s3/{fed.trail[-1]['query_id']}")["result_hash"] == audit.digest(released)
    probs = [0.25, 0.5, 0.75]
    got = fed.quantiles("age", edges, probs, epsilon=0.5)
    want = Federation(list(sites)).quantiles("age", edges, probs)
    width = edges[1] - edges[0]
    for (est, lo, hi), (ref, _, _) in zip(got, want, strict=True):
        assert lo <= est <= hi and abs(est - ref) <= 2 * width  # ~2,000 rows, scale-2 noise
    before = [len(s.audit) for s in sites]
    with pytest.raises(ContractError, match="DP budget"):
        fed.quantiles("age", edges, probs, epsilon=0.5)
    assert [len(s.audit) for s in sites] == before
