"""Federated Kaplan–Meier and Cox (Breslow) equal statsmodels on the pooled data."""

from __future__ import annotations

import numpy as np
import pytest
from statsmodels.duration.hazard_regression import PHReg
from statsmodels.duration.survfunc import SurvfuncRight
from tests.unit.research.conftest import make_sites
from tests.unit.research.conftest import pooled as pooled_rows
from tests.unit.research.harness import RESEARCHER, SITES, StudyHarness, active, gateway

from medledger.contracts.base import ContractError
from medledger.research import survival
from medledger.research.errors import QueryRefused, ResearchError
from medledger.research.federation import Federation
from medledger.research.recorder import LedgerRecorder

GRID = np.arange(1.0, 366.0)


def sites(sizes: list[int], seed: int = 3) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Whole-day event/censoring times (ties on purpose), two covariates, per-site shifts."""
    rng = np.random.default_rng(seed)
    out = []
    for j, n in enumerate(sizes):
        X = np.column_stack([rng.normal(0.2 * j, 1, n), rng.integers(0, 2, n)]).astype(float)
        t_ev = rng.exponential(200 * np.exp(-(0.4 * X[:, 0] - 0.6 * X[:, 1])))
        t_c = rng.uniform(30, 500, n)
        time = np.clip(np.ceil(np.minimum(t_ev, t_c)), 1, 365)
        event = ((t_ev <= t_c) & (np.ceil(t_ev) <= 365)).astype(float)
        out.append((X, time, event))
    return out


def pooled(ss: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> tuple[np.ndarray, ...]:
    return tuple(np.concatenate([s[i] for s in ss]) for i in range(3))


def test_kaplan_meier_equals_pooled() -> None:
    ss = sites([80, 300, 500, 900])
    parts = [survival.km_site(t, e, GRID) for _, t, e in ss]
    d = np.sum([p[0] for p in parts], axis=0)
    n = np.sum([p[1] for p in parts], axis=0)
    surv = survival.km_combine(d, n)
    _, t, e = pooled(ss)
    ref = SurvfuncRight(t, e)
    idx = np.searchsorted(ref.surv_times, GRID, side="right") - 1
    want = np.where(idx >= 0, ref.surv_prob[np.maximum(idx, 0)], 1.0)
    assert np.max(np.abs(surv - want)) <= 1e-9


def test_cox_breslow_equals_pooled() -> None:
    ss = sites([80, 300, 500, 900])

    def round_(beta: np.ndarray) -> survival.CoxStep:
        return survival.sum_cox([survival.cox_site(X, t, e, GRID, beta) for X, t, e in ss])

    fit = survival.cox_fit(round_, 2)
    X, t, e = pooled(ss)
    ref = PHReg(t, X, status=e, ties="breslow").fit()
    assert fit.converged
    assert np.max(np.abs(fit.coef - ref.params)) <= 1e-6
    assert np.max(np.abs(fit.se - ref.bse)) <= 1e-6
    assert fit.loglik == pytest.approx(ref.llf, abs=1e-6)


def test_event_off_the_grid_is_refused() -> None:
    with pytest.raises(ResearchError, match="grid"):
        survival.km_site(np.array([1.5, 3.0]), np.array([1.0, 0.0]), GRID)


@pytest.mark.parametrize("secure", [False, True])
def test_site_kaplan_meier_and_cox_equal_pooled(secure: bool) -> None:
    sites = make_sites([200, 400, 900, 1500])
    grid = list(np.arange(1.0, 731.0))
    fed = Federation(sites, secure=secure)
    surv = fed.kaplan_meier("days", "died", grid)
    rows = pooled_rows(sites)
    ref = SurvfuncRight(rows["days"], rows["died"])
    idx = np.searchsorted(ref.surv_times, grid, side="right") - 1
    want = np.where(idx >= 0, ref.surv_prob[np.maximum(idx, 0)], 1.0)
    assert np.max(np.abs(surv - want)) <= 1e-9
    fit = fed.cox("days", "died", ["age", "smoker"], grid)
    X = np.column_stack([rows["age"], rows["smoker"]])
    cref = PHReg(rows["days"], X, status=rows["died"], ties="breslow").fit()
    assert np.max(np.abs(fit.coef - cref.params)) <= 1e-6
    assert np.max(np.abs(fit.se - cref.bse)) <= 1e-6


def test_survival_needs_ten_rows_per_site() -> None:
    with pytest.raises(QueryRefused) as info:
        Federation(make_sites([8, 400, 900])).kaplan_meier("days", "died", list(range(1, 731)))
    assert info.value.refusals == {"hosp-a": "min_rows"}


def test_survival_queries_are_recorded_on_the_ledger_as_the_protocols_survival() -> None:
    """Kaplan–Meier and Cox run under a study's recorder: the contract knows them as
    ``survival`` (a federation's ``km``/``cox`` were refused by its schema), each round's query,
    responses and result are recorded, and a protocol without ``survival`` refuses them before
    any site is asked."""
    sites = make_sites([200, 400, 900, 1500])
    for s, name in zip(sites, SITES, strict=True):
        s.name = name
    grid = list(np.arange(1.0, 731.0))
    h = StudyHarness()
    active(h, "s1", analyses=["survival"], variables=["days", "died", "age", "smoker"])
    rec = LedgerRecorder("s1", lambda m, a: h.call(RESEARCHER, m, a),
                         {n: (lambda m, a, n=n: h.call(gateway(n), m, a)) for n in SITES})
    fed = Federation(sites, study="s1", secure=True, recorder=rec)
    surv = fed.kaplan_meier("days", "died", grid)
    assert np.array_equal(surv, Federation(sites).kaplan_meier("days", "died", grid))
    fit = fed.cox("days", "died", ["age", "smoker"], grid)
    assert fit.converged
    queries = [e["query_id"] for e in fed.trail]
    assert len(queries) >= 3  # one KM query, then one per Newton–Raphson round of the Cox fit
    for qid in queries:
        q = h.get(f"query/s1/{qid}")
        assert q["analysis"] == "survival" and q["query_hash"] == fed.trail[
            queries.index(qid)]["query"]
        assert h.get(f"result/s1/{qid}")["result_hash"] == fed.trail[queries.index(qid)]["result"]
        assert h.get(f"response/s1/{qid}/hosp-a")["outcome"] == "released"
    assert sorted(h.get(f"query/s1/{queries[1]}")["variables"]) == ["age", "days", "died",
                                                                       "smoker"]

    h2 = StudyHarness()
    active(h2, "s2", analyses=["glm"], variables=["days", "died"])
    rec2 = LedgerRecorder("s2", lambda m, a: h2.call(RESEARCHER, m, a), {})
    before = [len(s.audit) for s in sites]
    with pytest.raises(ContractError, match="survival not in the protocol"):
        Federation(sites, study="s2", recorder=rec2).kaplan_meier("days", "died", grid)
    assert [len(s.audit) for s in sites] == before
