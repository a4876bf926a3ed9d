"""DP Kaplan–Meier (ADR 0053): sites return events and censorings per grid interval, the
coordinator noises both summed histograms with OpenDP integer Laplace (one row in one cell:
L1 sensitivity 1 per record, k per person) and derives d and the numbers at risk by
post-processing. Calibration, accounting before data access, utility, noisy-only records."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
from scipy import stats
from statsmodels.duration.survfunc import SurvfuncRight
from tests.unit.research.conftest import make_sites
from tests.unit.research.conftest import pooled as pooled_rows
from tests.unit.research.harness import RESEARCHER, SITES, StudyHarness, active, gateway

from medledger.contracts.base import ContractError
from medledger.research import audit, dp, survival
from medledger.research.contract import Studies
from medledger.research.errors import QueryRefused
from medledger.research.federation import Federation
from medledger.research.recorder import LedgerRecorder
from medledger.research.site import Site

MONTH = 30.0
GRID = [MONTH * j for j in range(1, 26)]  # every event time is on it (times in months)


def month_sites(sizes: list[int] = [300, 400, 900, 1500]) -> list[Site]:  # noqa: B006
    """Synthetic sites with follow-up rounded up to whole 30-day months (ties on purpose)."""
    sites = make_sites(sizes)
    for s, name in zip(sites, SITES, strict=True):
        s.name = name
        cols = dict(s.columns)
        cols["months"] = np.ceil(np.asarray(cols["days"]) / MONTH) * MONTH
        s.columns = cols
    return sites


def ledger_federation(h: StudyHarness, sites: list[Site], **kw: Any) -> Federation:
    rec = LedgerRecorder("s1", lambda m, a: h.call(RESEARCHER, m, a),
                         {n: (lambda m, a, n=n: h.call(gateway(n), m, a)) for n in SITES})
    return Federation(sites, study="s1", secure=True, recorder=rec, **kw)


def exact_intervals(fed: Federation) -> np.ndarray[Any, Any]:
    values, _ = fed.run("km", {"time": "months", "event": "died", "grid": GRID,
                               "binned": True})
    return np.concatenate([values["events"], values["censored"]]).astype(np.int64)


def released(fed: Federation) -> np.ndarray[Any, Any]:
    v = fed.trail[-1]["artifacts"]["result"]["values"]
    return np.concatenate([v["events"], v["censored"]]).astype(np.int64)


def test_interval_counts_without_noise_give_the_exact_kaplan_meier() -> None:
    """Post-processing is exact: (d, N) from the interval counts equal ``km_site``'s, and the
    curve equals statsmodels on the pooled rows; a censoring before the grid is in no cell."""
    sites = month_sites()
    rows = pooled_rows(sites)
    t, e = rows["months"], rows["died"]
    ev, cens = survival.km_intervals(t, e, np.asarray(GRID))
    d, n = survival.km_from_intervals(ev, cens)
    d0, n0 = survival.km_site(t, e, np.asarray(GRID))
    assert np.array_equal(d, d0) and np.array_equal(n, n0)
    ref = SurvfuncRight(t, e)
    idx = np.searchsorted(ref.surv_times, GRID, side="right") - 1
    want = np.where(idx >= 0, ref.surv_prob[np.maximum(idx, 0)], 1.0)
    assert np.max(np.abs(survival.km_combine(d, n) - want)) <= 1e-9
    e2, c2 = survival.km_intervals(np.array([5.0, 5.0, 45.0, 900.0]),
                                   np.array([1.0, 0.0, 0.0, 1.0]), np.asarray(GRID))
    assert (e2.sum(), c2.sum(), e2[0], c2[0], e2[-1]) == (2, 1, 1, 1, 1)


@pytest.mark.parametrize("k", [1, 2])
def test_released_noise_is_integer_laplace_of_scale_k_over_eps(k: int) -> None:
    """Over many releases the noise (released − exact interval counts) is discrete Laplace of
    scale k/ε (chi-square against scipy's dlaplace); the scale-1/ε law is rejected at k = 2."""
    eps = 1.0
    fed = Federation(month_sites(), privacy_unit="person" if k > 1 else None,
                     unit_sensitivity=k)
    exact = exact_intervals(fed)
    noise = []
    for _ in range(60):
        fed.kaplan_meier("months", "died", GRID, epsilon=eps)
        noise.append(released(fed) - exact)
    draws = np.concatenate(noise)
    a = eps / k  # dlaplace(a): P(j) ∝ exp(-a|j|), scale 1/a
    ks = np.arange(-8 * k, 8 * k + 1)
    observed = np.array([np.sum(draws == j) for j in ks] + [np.sum(np.abs(draws) > 8 * k)])
    pmf = stats.dlaplace(a).pmf(ks)
    assert stats.chisquare(observed, np.append(pmf, 1 - pmf.sum()) * draws.size).pvalue > 1e-4
    # the sample variance of a Laplace law (kurtosis 6) has sd ≈ σ²·√(5/n): allow 5 sd
    assert np.var(draws) == pytest.approx(stats.dlaplace(a).var(), rel=5 * np.sqrt(5 / draws.size))
    if k > 1:
        wrong = stats.dlaplace(eps).pmf(ks)
        assert stats.chisquare(observed, np.append(wrong, 1 - wrong.sum()) * draws.size
                               ).pvalue < 1e-6


def test_large_epsilon_approaches_the_exact_curve_within_the_noise_bound() -> None:
    """At ε = 10 (scale b = 0.1) every |noise| < t = ceil(b·ln(4G/α)) with probability
    ≥ 1 − α (α = 1e-6, union bound over the 2G cells). Then |δd_j| ≤ t and
    |δN_j| ≤ 2(G − j)·t, and since |Πa − Πb| ≤ Σ|a_i − b_i| for factors in [0, 1],
    |ΔS_j| ≤ Σ_{i ≤ j} (t + (d_i/N_i)·|δN_i|)/(N_i − |δN_i|) where N_i > |δN_i|."""
    eps, alpha = 10.0, 1e-6
    fed = Federation(month_sites())
    exact_s = fed.kaplan_meier("months", "died", GRID)
    got = fed.kaplan_meier("months", "died", GRID, epsilon=eps)
    G = len(GRID)
    t = np.ceil((1 / eps) * np.log(4 * G / alpha))
    ev = exact_intervals(fed)
    d, n = survival.km_from_intervals(ev[:G], ev[G:])
    dn = 2 * (G - np.arange(G)) * t
    ok = n > 2 * dn
    terms = np.where(ok, (t + d / np.maximum(n, 1) * dn) / np.maximum(n - dn, 1), np.inf)
    bound = np.cumsum(terms)
    assert np.all(np.abs(got - exact_s)[ok] <= bound[ok])
    assert ok[: G // 2].all()  # the bound covers at least the first half of follow-up
    noise = released(fed) - ev
    assert np.all(np.abs(noise) <= t)


def test_dp_km_is_charged_before_sites_and_records_noisy_counts_only() -> None:
    h = StudyHarness()
    active(h, "s1", analyses=["survival"], variables=["months", "died"],
           dp_budget_milli_eps=1000)
    sites = month_sites()
    fed = ledger_federation(h, sites)
    exact = exact_intervals(Federation(sites))
    s1 = fed.kaplan_meier("months", "died", GRID, epsilon=0.5)
    entry = fed.trail[-1]
    result = entry["artifacts"]["result"]
    assert result["n"] == -1 and set(result["values"]) == {"events", "censored"}
    assert h.get(f"result/s1/{entry['query_id']}")["result_hash"] == audit.digest(result)
    assert not np.array_equal(released(fed), exact)  # P(50 cells all noise-free) < 1e-30
    assert "values" not in json.dumps(entry["artifacts"]["responses"])  # masked uploads only
    d, n = survival.km_from_intervals(np.asarray(result["values"]["events"]),
                                      np.asarray(result["values"]["censored"]))
    assert np.array_equal(s1, survival.km_combine(d, n))
    assert np.all(np.diff(n) <= 0) and np.all(d <= n) and np.all(np.diff(s1) <= 0)
    q = entry["artifacts"]["query"]
    assert q["dp"] == {"milli_eps": 500, "unit": "record", "sensitivity": 1}
    assert dp.noisy_counts(np.zeros(2 * len(GRID), dtype=np.int64), 0.5)[1] == 0.5  # the map
    assert h.get(f"query/s1/{entry['query_id']}")["analysis"] == "survival"
    fed.kaplan_meier("months", "died", GRID, epsilon=0.5)
    asked = [len(s.audit) for s in sites]
    with pytest.raises(ContractError, match="DP budget"):
        fed.kaplan_meier("months", "died", GRID, epsilon=0.5)
    assert [len(s.audit) for s in sites] == asked == [3] * 4  # the exact run + two DP
    assert h.get("spent/s1/record") == {"milli_eps": 1000}
    restarted = StudyHarness()
    restarted.state = h.state  # a restarted peer replays the account from its state
    restarted.contract = Studies()
    again = ledger_federation(restarted, sites, run_prefix="r")
    with pytest.raises(ContractError, match="spent 1000"):
        again.kaplan_meier("months", "died", GRID, epsilon=0.1)
    assert [len(s.audit) for s in sites] == asked


def test_sites_apply_their_disclosure_rules_to_the_dp_release() -> None:
    """The DP path changes what a site computes, not its rules: a site under min_rows still
    refuses, and an off-grid event time is binned (no data-dependent refusal)."""
    small = month_sites([5, 400, 900, 1500])
    with pytest.raises(QueryRefused) as info:
        Federation(small).kaplan_meier("months", "died", GRID, epsilon=1.0)
    assert info.value.refusals == {"hosp-a": "min_rows"}
    fed = Federation(month_sites())
    coarse = GRID[::2]  # events at odd months are now off the grid
    curve = fed.kaplan_meier("months", "died", coarse, epsilon=5.0)
    assert curve.shape == (len(coarse),) and np.all((curve >= 0) & (curve <= 1))
