"""Kaplan–Meier and Cox proportional hazards (Breslow ties), federated and exact.

Both use a grid of times fixed by the query (the study protocol, e.g. whole days), which must
contain every event time; a site with an event off the grid refuses (``BAD_ARGS``).

* **Kaplan–Meier** (Kaplan & Meier 1958). Each site returns, per grid time t_j, the events d_j
  at t_j and the number at risk n_j = #{T ≥ t_j}. Pooled S(t) = Π_{t_j ≤ t} (1 − D_j / N_j).
* **Cox, Breslow ties** (Breslow 1974; federated form as WebDISCO, Lu et al. 2015, JAMIA).
  At β each site returns per grid time S0_j = Σ_{T≥t_j} e^{xβ}, S1_j = Σ_{T≥t_j} x e^{xβ},
  S2_j = Σ_{T≥t_j} x xᵀ e^{xβ}, d_j, and overall Σ_{events} x. The coordinator forms
  ℓ = βᵀΣx_ev − Σ_j d_j log S0_j, U = Σx_ev − Σ_j d_j S1_j/S0_j and
  I = Σ_j d_j (S2_j/S0_j − S1_j S1_jᵀ/S0_j²), and takes Newton steps from β = 0 until
  |Δℓ| ≤ tol·(|ℓ| + 0.1); SE = sqrt(diag(I⁻¹)).
* **Kaplan–Meier for a DP release** (ADR 0053). Each site returns, per grid interval
  [t_j, t_{j+1}) (the last one open), the events e_j and the censorings c_j in it: every row is
  in exactly one cell of one of the two (an event before t_0 counts at t_0; a censoring before
  t_0 is at risk at no grid time and is in none). The coordinator noises the two summed
  histograms and derives, as post-processing, d_j = max(e_j, 0) and
  N_j = Σ_{i ≥ j} (max(e_i, 0) + max(c_i, 0)); N is then non-increasing and N_j ≥ d_j. With
  every event time on the grid and no time before t_0, (d, N) without noise equal ``km_site``'s.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from medledger.errors import Code
from medledger.research.errors import ResearchError

__all__ = ["CoxFit", "CoxStep", "cox_fit", "cox_site", "km_combine", "km_from_intervals",
           "km_intervals", "km_site", "sum_cox"]

F64 = NDArray[np.float64]


def _check_grid(time: F64, event: F64, grid: F64) -> NDArray[np.int64]:
    idx = np.searchsorted(grid, time[event > 0])
    if np.any(idx >= len(grid)) or np.any(grid[np.minimum(idx, len(grid) - 1)] !=
                                          time[event > 0]):
        raise ResearchError(Code.BAD_ARGS, "an event time is not on the query's grid")
    return np.asarray(idx, dtype=np.int64)


def _at_risk_index(time: F64, grid: F64) -> NDArray[np.int64]:
    """For each row, the number of grid times t_j ≤ T (rows are at risk at those)."""
    return np.asarray(np.searchsorted(grid, time, side="right"), dtype=np.int64)


def km_site(time: F64, event: F64, grid: F64) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """(events d_j, at risk n_j) per grid time."""
    ev = _check_grid(time, event, grid)
    d = np.bincount(ev, minlength=len(grid)).astype(np.int64)
    k = _at_risk_index(time, grid)
    n = np.cumsum(np.bincount(k, minlength=len(grid) + 1)[::-1])[::-1][1:].astype(np.int64)
    return d, n


def km_combine(d: NDArray[np.int64], n: NDArray[np.int64]) -> F64:
    """S(t_j) for each grid time (1 where nobody is at risk and nothing happens)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        factor = np.where(n > 0, 1.0 - d / np.maximum(n, 1), 1.0)
    return np.asarray(np.cumprod(factor), dtype=np.float64)


def km_intervals(time: F64, event: F64, grid: F64
                 ) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """(events e_j, censorings c_j) per grid interval [t_j, t_{j+1}); no time is refused."""
    j = np.searchsorted(grid, time, side="right") - 1
    ev = event > 0
    e = np.bincount(np.maximum(j[ev], 0), minlength=len(grid)).astype(np.int64)
    cj = j[~ev]
    c = np.bincount(cj[cj >= 0], minlength=len(grid)).astype(np.int64)
    return e, c


def km_from_intervals(events: NDArray[np.int64], censored: NDArray[np.int64]
                      ) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """(d, N) per grid time from (noisy) interval counts: negatives taken as 0, N_j the
    reverse cumulative sum of events and censorings from j on (post-processing)."""
    e = np.maximum(np.asarray(events, dtype=np.int64), 0)
    c = np.maximum(np.asarray(censored, dtype=np.int64), 0)
    n = np.cumsum((e + c)[::-1])[::-1]
    return e, np.asarray(n, dtype=np.int64)


@dataclass(frozen=True)
class CoxStep:
    s0: F64
    s1: F64
    s2: F64
    d: F64
    x_events: F64


def cox_site(X: F64, time: F64, event: F64, grid: F64, beta: F64) -> CoxStep:
    """A site's risk-set sums at ``beta`` per grid time (reverse cumulative sums over rows)."""
    ev = _check_grid(time, event, grid)
    G, p = len(grid), X.shape[1]
    r = np.exp(X @ beta)
    k = _at_risk_index(time, grid)  # row contributes to grid indices 0..k-1

    def risk_sum(v: F64) -> F64:
        by = np.zeros((G + 1, *v.shape[1:]))
        np.add.at(by, k, v)
        return np.asarray(np.cumsum(by[::-1], axis=0)[::-1][1:], dtype=np.float64)

    s0 = risk_sum(r)
    s1 = risk_sum(X * r[:, None])
    s2 = risk_sum((X[:, :, None] * X[:, None, :]) * r[:, None, None])
    d = np.bincount(ev, minlength=G).astype(float)
    xe = X[event > 0].sum(axis=0) if p else np.zeros(0)
    return CoxStep(s0, s1, s2, d, np.asarray(xe, dtype=np.float64))


def sum_cox(steps: Sequence[CoxStep]) -> CoxStep:
    return CoxStep(*(np.sum([getattr(s, f) for s in steps], axis=0)
                     for f in ("s0", "s1", "s2", "d", "x_events")))


@dataclass(frozen=True)
class CoxFit:
    coef: F64
    se: F64
    loglik: float
    iterations: int
    converged: bool


def _pieces(t: CoxStep, beta: F64) -> tuple[float, F64, F64]:
    m = t.d > 0
    s0, s1, s2, d = t.s0[m], t.s1[m], t.s2[m], t.d[m]
    ll = float(beta @ t.x_events - np.sum(d * np.log(s0)))
    U = t.x_events - np.sum(d[:, None] * s1 / s0[:, None], axis=0)
    a = s2 / s0[:, None, None] - (s1[:, :, None] * s1[:, None, :]) / (s0 ** 2)[:, None, None]
    info = np.sum(d[:, None, None] * a, axis=0)
    return ll, U, info


def cox_fit(round_: Callable[[F64], CoxStep], p: int, *, tol: float = 1e-12,
            maxit: int = 30) -> CoxFit:
    beta = np.zeros(p)
    ll_old: float | None = None
    for it in range(1, maxit + 1):
        ll, U, info = _pieces(round_(beta), beta)
        if ll_old is not None and abs(ll - ll_old) <= tol * (abs(ll) + 0.1):
            return CoxFit(beta, np.sqrt(np.diag(np.linalg.inv(info))), ll, it, True)
        ll_old = ll
        beta = beta + np.linalg.solve(info, U)
    ll, _, info = _pieces(round_(beta), beta)
    return CoxFit(beta, np.sqrt(np.diag(np.linalg.inv(info))), ll, maxit, False)
