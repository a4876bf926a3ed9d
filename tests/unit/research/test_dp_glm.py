"""DP GLM (ADR 0053): gaussian by noisy sufficient statistics, binomial and poisson by a fixed
number of noisy Newton steps, on rows clamped and scaled to declared bounds (each row adds
numbers in [−1, 1], so the L1 sensitivity is the vector's length; × k per person).
Calibration, accounting (whole fit charged on its first query, before any site is asked),
utility against the exact federated fit, noisy-only records."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
from scipy import stats
from tests.unit.research.conftest import make_sites
from tests.unit.research.harness import RESEARCHER, SITES, StudyHarness, active, gateway

from medledger.contracts.base import ContractError
from medledger.research import audit, dp, dpglm
from medledger.research.contract import Studies
from medledger.research.errors import QueryRefused, ResearchError
from medledger.research.federation import Federation
from medledger.research.recorder import LedgerRecorder
from medledger.research.site import Site

BOUNDS = {"age": (0.0, 100.0), "bmi": (10.0, 50.0), "smoker": (0.0, 1.0),
          "sbp": (50.0, 300.0), "visits": (0.0, 20.0)}
MODELS: dict[str, tuple[str, list[str], str | None]] = {
    "gaussian": ("sbp", ["age", "bmi", "smoker"], None),
    "binomial": ("event", ["age", "smoker", "bmi"], None),
    "poisson": ("visits", ["age", "smoker"], "log_years")}


def named_sites(sizes: list[int] = [300, 400, 900, 1500]) -> list[Site]:  # noqa: B006
    sites = make_sites(sizes)
    for s, name in zip(sites, SITES, strict=True):
        s.name = name
    return sites


def params(family: str, beta: list[float] | None = None, steps: int = 6) -> dict[str, Any]:
    """The query parameters ``Federation.glm(epsilon=...)`` sends (for the exact sums)."""
    y, x, off = MODELS[family]
    p: dict[str, Any] = {"family": family, "y": y, "x": x, "weights": None, "offset": off,
                         "site_weighted": False,
                         "clip": dpglm.clip_params(family, x, BOUNDS, y)}  # type: ignore[arg-type]
    if family != "gaussian":
        p.update(steps=steps, beta=beta if beta is not None else [0.0] * (len(x) + 1))
    return p


def exact_stats(fed: Federation, family: str, **kw: Any) -> np.ndarray[Any, Any]:
    values, _ = fed.run("glm", params(family, **kw))
    return np.asarray(values["stats"])


def released(fed: Federation, i: int = -1) -> np.ndarray[Any, Any]:
    return np.asarray(fed.trail[i]["artifacts"]["result"]["values"]["stats"])


def test_float_laplace_vector_has_scale_sensitivity_over_eps() -> None:
    noisy, spent = dp.noisy_vector(np.zeros(20_000), 0.5, 3.0)
    assert spent == pytest.approx(0.5)
    assert stats.kstest(noisy, stats.laplace(scale=6.0).cdf).pvalue > 1e-3
    assert stats.kstest(noisy, stats.laplace(scale=3.0).cdf).pvalue < 1e-6


@pytest.mark.parametrize("k", [1, 2])
def test_released_statistics_carry_laplace_noise_of_scale_k_m_over_eps(k: int) -> None:
    """Gaussian: m = q(q+1)/2 entries (q = p + 1 = 5: m = 15), scale k·m/ε (KS test against
    scipy over 60 releases); at k = 2 the k = 1 scale is rejected. One noisy Newton step of a
    binomial fit at ε/T has scale k·(p + p(p+1)/2)·T/ε."""
    eps = 2.0
    fed = Federation(named_sites(), privacy_unit="person" if k > 1 else None,
                     unit_sensitivity=k)
    y, x, _ = MODELS["gaussian"]
    exact = exact_stats(fed, "gaussian")
    m = dpglm.entries("gaussian", len(x) + 1)
    assert (m, exact.size) == (15, 15)
    draws = []
    for _ in range(60):
        fed.glm("gaussian", y, x, epsilon=eps, bounds=BOUNDS)
        draws.append(released(fed) - exact)
    noise = np.concatenate(draws)
    assert stats.kstest(noise, stats.laplace(scale=k * m / eps).cdf).pvalue > 1e-3
    if k > 1:
        assert stats.kstest(noise, stats.laplace(scale=m / eps).cdf).pvalue < 1e-6
    yb, xb, _ = MODELS["binomial"]
    step0 = exact_stats(fed, "binomial", steps=1)
    first = []
    for _ in range(60):
        fed.glm("binomial", yb, xb, epsilon=eps, bounds=BOUNDS, steps=1)
        first.append(released(fed) - step0)
    mb = dpglm.entries("binomial", len(xb) + 1)
    assert stats.kstest(np.concatenate(first), stats.laplace(scale=k * mb / eps).cdf
                        ).pvalue > 1e-3


def _tail(b: float, count: int, alpha: float = 1e-6) -> float:
    """t with P(max of ``count`` |Laplace(b)| > t) ≤ α (union bound: count·e^{−t/b} = α)."""
    return b * float(np.log(count / alpha))


def test_gaussian_at_large_epsilon_is_the_exact_fit_within_the_noise_bound() -> None:
    """γ = A⁻¹c on the scaled statistics; with every noise entry |δ| ≤ t (prob ≥ 1 − 1e-6),
    to first order |δγ| ≤ ‖A⁻¹‖(√p·t + p·t·‖γ‖) (‖δA‖₂ ≤ ‖δA‖_F ≤ p·t); the bound doubled
    covers the second-order term at this ε (‖A⁻¹‖·p·t < 0.01). β_j = B_y·γ_j/B_j."""
    fed = Federation(named_sites())
    y, x, _ = MODELS["gaussian"]
    exact = fed.glm("gaussian", y, x)
    eps = 2e4
    got = fed.glm("gaussian", y, x, epsilon=eps, bounds=BOUNDS)
    p = len(x) + 1
    stats_ = exact_stats(fed, "gaussian")
    A = np.zeros((p + 1, p + 1))
    A[np.triu_indices(p + 1)] = stats_
    A = A + np.triu(A, 1).T
    inv = np.linalg.norm(np.linalg.inv(A[:p, :p]), 2)
    gamma = np.linalg.solve(A[:p, :p], A[:p, p])
    t = _tail(15 / eps, 15)
    assert inv * p * t < 0.01
    dgamma = 2 * inv * (np.sqrt(p) * t + p * t * np.linalg.norm(gamma))
    scale = np.array([1.0, *(max(abs(BOUNDS[v][0]), abs(BOUNDS[v][1])) for v in x)])
    tol = BOUNDS["sbp"][1] * dgamma / scale
    assert np.all(np.abs(got.coef - exact.coef) <= tol)
    assert np.allclose(exact.coef, BOUNDS["sbp"][1] * gamma / scale, rtol=1e-9)  # no clamping
    assert got.n == pytest.approx(exact.n, abs=t)
    assert np.all(np.abs(got.se - exact.se) <= 0.05 * exact.se)


@pytest.mark.parametrize("family", ["binomial", "poisson"])
def test_noisy_newton_at_large_epsilon_is_the_exact_fit_within_the_noise_bound(
        family: str) -> None:
    """Without noise T = 8 Newton steps from 0 reach the federated IRLS fit (1e-8); with noise
    at ε the last step's noise dominates: |δγ| ≤ 2‖H⁻¹‖·(R·√p·t + V·p·t·‖Δγ‖) with every
    noise entry |δ| ≤ t (prob ≥ 1 − 1e-6), earlier steps' noise being contracted by Newton's
    quadratic convergence; β_j = γ_j/B_j."""
    fed = Federation(named_sites())
    y, x, off = MODELS[family]
    exact = fed.glm(family, y, x, offset=off)  # type: ignore[arg-type]
    T, p = 8, len(x) + 1
    clip = params(family)["clip"]
    R, V = (1.0, 0.25) if family == "binomial" else (20.0, 20.0)
    gamma = np.zeros(p)
    for _ in range(T):  # the same steps on the exact sums
        s = exact_stats(fed, family, beta=gamma.tolist(), steps=T)
        H = np.zeros((p, p))
        H[np.triu_indices(p)] = s[p:]
        H = (H + np.triu(H, 1).T) * V
        step = np.linalg.solve(H, s[:p] * R)
        gamma = gamma + step
    scale = np.array([1.0, *(max(abs(lo), abs(hi)) for lo, hi in clip["x"])])
    assert np.allclose(gamma / scale, exact.coef, atol=1e-8)
    eps = 2e4
    got = fed.glm(family, y, x, offset=off, epsilon=eps, bounds=BOUNDS, steps=T)  # type: ignore[arg-type]
    m = dpglm.entries(family, p)  # type: ignore[arg-type]
    t = _tail(m * T / eps, m * T)
    inv = np.linalg.norm(np.linalg.inv(H), 2)
    dgamma = 2 * inv * (R * np.sqrt(p) * t + V * p * t * np.linalg.norm(step))
    assert np.all(np.abs(got.coef - exact.coef) <= dgamma / scale)
    assert np.all(np.abs(got.se - exact.se) <= 0.05 * exact.se)
    assert got.iterations == T and np.isnan(got.deviance) and got.n == -1


def ledger(budget: int = 1000) -> tuple[StudyHarness, list[Site], Federation]:
    h = StudyHarness()
    active(h, "s1", analyses=["glm"], dp_budget_milli_eps=budget,
           variables=["age", "smoker", "bmi", "sbp", "event"])
    sites = named_sites()
    rec = LedgerRecorder("s1", lambda m, a: h.call(RESEARCHER, m, a),
                         {n: (lambda m, a, n=n: h.call(gateway(n), m, a)) for n in SITES})
    return h, sites, Federation(sites, study="s1", secure=True, recorder=rec)


def test_a_newton_fit_is_charged_whole_on_its_first_query_before_any_site_is_asked() -> None:
    h, sites, fed = ledger()
    y, x, _ = MODELS["binomial"]
    T, eps = 3, 0.5
    fed.glm("binomial", y, x, epsilon=eps, bounds=BOUNDS, steps=T)
    assert h.get("spent/s1/record") == {"milli_eps": 500}
    l1 = dpglm.entries("binomial", len(x) + 1)
    per_step = dp.vector_measurement(eps / T, l1).map(float(l1))
    assert T * per_step == pytest.approx(eps, rel=1e-12)  # the charge is the maps' sum
    q1, q2, q3 = (h.get(f"query/s1/q{i}") for i in (1, 2, 3))
    assert (q1["dp_milli_eps"], q1["dp_rounds"]) == (500, 3) and "dp_round_of" not in q1
    assert (q2["dp_milli_eps"], q2["dp_round_of"], q3["dp_round_of"]) == (0, "q1", "q1")
    assert fed.trail[1]["artifacts"]["query"]["dp"] == {
        "milli_eps": 0, "unit": "record", "sensitivity": 1, "rounds": 3, "round": 2, "of": "q1"}
    assert h.get("dpfit/s1/q1") == {"rounds": 3, "used": 3}
    # a fourth round of that fit is refused, as is a round naming a query that is no fit
    extra = {"study": "s1", "query_id": "x4", "query_hash": "11" * 32, "analysis": "glm",
             "variables": sorted([*x, y]), "sites": SITES, "dp_round_of": "q1"}
    assert h.code_of(RESEARCHER, "query", extra) == "forbidden"
    assert h.code_of(RESEARCHER, "query", {**extra, "dp_round_of": "q2"}) == "forbidden"
    h.state.data["studies/dpfit/s1/q1"] = b'{"rounds":9,"used":3}'  # room left: then only
    assert h.code_of(RESEARCHER, "query", {**extra, "variables": ["sbp"]}) == "forbidden"
    h.call(RESEARCHER, "query", extra)  # the same analysis, sites and variables pass, free
    assert h.get("spent/s1/record") == {"milli_eps": 500}
    h.state.data["studies/dpfit/s1/q1"] = b'{"rounds":3,"used":3}'
    extra = {**extra, "query_id": "x5"}
    assert h.code_of(RESEARCHER, "query", {**extra, "dp_round_of": "q1",
                                           "dp_milli_eps": 1}) == "bad_args"
    fed.glm("gaussian", "sbp", ["age", "bmi", "smoker"], epsilon=eps, bounds=BOUNDS)
    assert h.get("spent/s1/record") == {"milli_eps": 1000}
    asked = [len(s.audit) for s in sites]
    with pytest.raises(ContractError, match="DP budget"):
        fed.glm("binomial", y, x, epsilon=eps, bounds=BOUNDS, steps=T)
    assert [len(s.audit) for s in sites] == asked == [T + 1] * 4
    restarted = StudyHarness()
    restarted.state = h.state  # a restarted peer replays the account from its state
    restarted.contract = Studies()
    rec = LedgerRecorder("s1", lambda m, a: restarted.call(RESEARCHER, m, a), {})
    again = Federation(sites, study="s1", recorder=rec, run_prefix="r")
    with pytest.raises(ContractError, match="spent 1000"):
        again.glm("gaussian", "sbp", ["age"], epsilon=0.1, bounds=BOUNDS)
    assert [len(s.audit) for s in sites] == asked


def test_a_dp_fit_records_noisy_statistics_only() -> None:
    h, sites, fed = ledger()
    exact = exact_stats(Federation(sites), "gaussian")
    fed.glm("gaussian", "sbp", ["age", "bmi", "smoker"], epsilon=1.0, bounds=BOUNDS)
    entry = fed.trail[-1]
    result = entry["artifacts"]["result"]
    assert set(result) == {"values", "n"} and result["n"] == -1
    assert set(result["values"]) == {"stats"}
    assert not np.any(np.isclose(released(fed), exact, rtol=0, atol=1e-9))
    assert h.get(f"result/s1/{entry['query_id']}")["result_hash"] == audit.digest(result)
    assert "values" not in json.dumps(entry["artifacts"]["responses"])  # masked uploads only
    q = entry["artifacts"]["query"]
    assert q["params"]["clip"] == {"x": [[0.0, 100.0], [10.0, 50.0], [0.0, 1.0]],
                                   "y": [50.0, 300.0]}
    assert h.get(f"query/s1/{entry['query_id']}")["query_hash"] == audit.digest(q)


def test_sites_keep_their_glm_rules_and_bad_requests_are_refused() -> None:
    with pytest.raises(QueryRefused) as info:
        Federation(named_sites([5, 400, 900, 1500])).glm(
            "binomial", "event", ["age"], epsilon=1.0, bounds=BOUNDS, steps=2)
    assert info.value.refusals == {"hosp-a": "min_rows"}
    fed = Federation(named_sites())
    with pytest.raises(ResearchError, match="bounds for"):
        fed.glm("gaussian", "sbp", ["age"], epsilon=1.0, bounds={"age": (0, 100)})
    with pytest.raises(ResearchError, match="prior weights"):
        fed.glm("gaussian", "sbp", ["age"], weights="weight", epsilon=1.0, bounds=BOUNDS)
    with pytest.raises(ResearchError, match="steps"):
        fed.glm("binomial", "event", ["age"], epsilon=1.0, bounds=BOUNDS, steps=0)
    assert all(s.audit == [] for s in fed.sites)  # type: ignore[attr-defined]
