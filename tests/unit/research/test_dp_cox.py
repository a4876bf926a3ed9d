"""DP Cox, Breslow ties (ADR 0053): sites return per-interval sums of w·(1, z, z·zᵀ) with
w = exp(zγ − ‖γ‖₁) ≤ 1 on clamped, scaled covariates, plus events and the events' covariates
— one row in one interval cell, so the L1 sensitivity is 2 + 2p + p(p+1)/2 (× k per person);
the coordinator forms the risk-set sums by reverse cumulative sums and takes noisy Newton
steps. Without noise the steps reach the exact fit; calibration, accounting, utility."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from scipy import stats
from statsmodels.duration.hazard_regression import PHReg
from tests.unit.research.conftest import pooled as pooled_rows
from tests.unit.research.harness import RESEARCHER, SITES, StudyHarness, active, gateway
from tests.unit.research.test_dp_survival import GRID, month_sites

from medledger.contracts.base import ContractError
from medledger.research import dpcox
from medledger.research.errors import QueryRefused
from medledger.research.federation import Federation
from medledger.research.recorder import LedgerRecorder

X = ["age", "smoker"]
BOUNDS = {"age": (0.0, 100.0), "smoker": (0.0, 1.0)}
SCALE = np.array([100.0, 1.0])
CLIP = {"x": [[0.0, 100.0], [0.0, 1.0]]}


def exact_stats(fed: Federation, gamma: np.ndarray[Any, Any], steps: int = 6
                ) -> np.ndarray[Any, Any]:
    values, _ = fed.run("cox", {"time": "months", "event": "died", "x": X, "grid": GRID,
                                "clip": CLIP, "steps": steps, "beta": gamma.tolist()})
    return np.asarray(values["stats"])


def test_noiseless_steps_reach_the_exact_cox_fit() -> None:
    """The interval sums, reverse-cumulated, give the exact risk-set sums: eight Newton steps
    on them (no noise, b → 0) equal statsmodels PHReg (Breslow) on the pooled rows."""
    sites = month_sites()
    fed = Federation(sites)
    G, gamma = len(GRID), np.zeros(2)
    for _ in range(8):
        gamma, info = dpcox.newton_update(exact_stats(fed, gamma), gamma, G, 1e-12)
    rows = pooled_rows(sites)
    ref = PHReg(rows["months"], np.column_stack([rows[v] for v in X]), status=rows["died"],
                ties="breslow").fit()
    assert np.max(np.abs(gamma / SCALE - ref.params)) <= 1e-8
    assert np.max(np.abs(np.sqrt(np.diag(np.linalg.inv(info))) / SCALE - ref.bse)) <= 1e-6
    assert exact_stats(fed, gamma).size == dpcox.length(G, 2)


@pytest.mark.parametrize("k", [1, 2])
def test_released_sums_carry_laplace_noise_of_scale_k_l1_over_eps(k: int) -> None:
    eps = 2.0
    fed = Federation(month_sites(), privacy_unit="person" if k > 1 else None,
                     unit_sensitivity=k)
    exact = exact_stats(fed, np.zeros(2), steps=1)
    l1 = dpcox.l1_bound(2)
    assert l1 == 9
    draws = []
    for _ in range(12):
        fed.cox("months", "died", X, GRID, epsilon=eps, bounds=BOUNDS, steps=1)
        draws.append(np.asarray(fed.trail[-1]["artifacts"]["result"]["values"]["stats"])
                     - exact)
    noise = np.concatenate(draws)
    assert stats.kstest(noise, stats.laplace(scale=k * l1 / eps).cdf).pvalue > 1e-3
    if k > 1:
        assert stats.kstest(noise, stats.laplace(scale=l1 / eps).cdf).pvalue < 1e-6


def test_large_epsilon_reaches_the_exact_fit_within_the_noise_bound() -> None:
    """With every noise entry |δ| ≤ t (union bound, prob ≥ 1 − 1e-6) and, at the exact
    optimum, |S1_j/S0_j| ≤ 1, |δS0_j|, |δS1_j| ≤ (G − j)·t: to first order
    |δU_i| ≤ t + G·t + Σ_j d_j·2(G − j)t/(S0_j − (G − j)t) and |δγ| ≤ 2‖I⁻¹‖·√p·max|δU_i|."""
    sites = month_sites()
    fed = Federation(sites)
    exact = fed.cox("months", "died", X, GRID)
    eps, T = 1e5, 6
    got = fed.cox("months", "died", X, GRID, epsilon=eps, bounds=BOUNDS, steps=T)
    G, p = len(GRID), 2
    s = exact_stats(fed, exact.coef * SCALE)
    t = dpcox.l1_bound(p) * T / eps * np.log(dpcox.length(G, p) * T / 1e-6)
    s0 = np.cumsum(s[:G][::-1])[::-1]
    d = s[G * (1 + p + 3):G * (2 + p + 3)]  # after Σw, Σw·z, Σw·z·zᵀ (3 entries)
    spread = (G - np.arange(G)) * t
    assert np.all(s0[d > 0] > 2 * spread[d > 0])
    dU = t + G * t + np.sum(np.where(d > 0, d * 2 * spread / np.maximum(s0 - spread, 1e-300),
                                     0.0))
    _, info = dpcox.newton_update(s, exact.coef * SCALE, G, 1e-12)
    dgamma = 2 * np.linalg.norm(np.linalg.inv(info), 2) * np.sqrt(p) * dU
    assert np.all(np.abs(got.coef - exact.coef) <= dgamma / SCALE)
    assert np.all(np.abs(got.se - exact.se) <= 0.05 * exact.se)
    assert got.iterations == T and np.isnan(got.loglik)


def test_a_dp_cox_fit_is_charged_once_before_any_site_is_asked() -> None:
    h = StudyHarness()
    active(h, "s1", analyses=["survival"], variables=["months", "died", "age", "smoker"],
           dp_budget_milli_eps=1000)
    sites = month_sites()
    rec = LedgerRecorder("s1", lambda m, a: h.call(RESEARCHER, m, a),
                         {n: (lambda m, a, n=n: h.call(gateway(n), m, a)) for n in SITES})
    fed = Federation(sites, study="s1", secure=True, recorder=rec)
    fed.cox("months", "died", X, GRID, epsilon=0.5, bounds=BOUNDS, steps=3)
    assert h.get("spent/s1/record") == {"milli_eps": 500}
    assert [h.get(f"query/s1/q{i}")["dp_milli_eps"] for i in (1, 2, 3)] == [500, 0, 0]
    assert h.get("query/s1/q1")["analysis"] == "survival"
    assert h.get("dpfit/s1/q1") == {"rounds": 3, "used": 3}
    result = fed.trail[-1]["artifacts"]["result"]
    assert set(result["values"]) == {"stats"} and result["n"] == -1
    fed.kaplan_meier("months", "died", GRID, epsilon=0.5)
    asked = [len(s.audit) for s in sites]
    with pytest.raises(ContractError, match="DP budget"):
        fed.cox("months", "died", X, GRID, epsilon=0.5, bounds=BOUNDS, steps=3)
    assert [len(s.audit) for s in sites] == asked == [4] * 4


def test_sites_keep_their_rules_for_dp_cox() -> None:
    with pytest.raises(QueryRefused) as info:
        Federation(month_sites([5, 400, 900, 1500])).cox(
            "months", "died", X, GRID, epsilon=1.0, bounds=BOUNDS, steps=2)
    assert info.value.refusals == {"hosp-a": "min_rows"}
