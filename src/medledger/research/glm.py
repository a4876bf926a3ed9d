"""Generalised linear models fitted by federated IRLS, identical to pooled fitting.

Method (DataSHIELD ``ds.glm`` / vantage6 ``v6-glm-py``; Cellamare et al. 2022, Algorithms
15(7):243; McCullagh & Nelder 1989, §2.5): at the current coefficients β every site returns

* ``info``  = XᵀWX            (p × p), W = w·(dμ/dη)²/V(μ) with prior weights w,
* ``xwz``   = XᵀWz            (p), working response z = η − offset + (y − μ)·dη/dμ,
* ``deviance`` at β, and the number of rows n.

The coordinator sums them and solves β ← (ΣXᵀWX)⁻¹ ΣXᵀWz. Iteration starts at β = 0 and stops
when |dev − dev_old| / (|dev| + 0.1) ≤ ``tol`` (R's rule); the last round is evaluated at the
returned β, so standard errors use the information at the estimate:
SE = sqrt(diag(I⁻¹)·φ), φ = deviance/(n − p) for gaussian (Pearson χ² = deviance there), else 1.
Only canonical links are offered (identity, logit, log), so expected and observed information
coincide and results equal ``statsmodels.GLM`` with ``var_weights``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from numpy.typing import NDArray
from scipy.special import expit, xlogy

from medledger.errors import Code
from medledger.research.errors import ResearchError

__all__ = ["FAMILIES", "GlmFit", "GlmSiteData", "GlmStep", "fit", "site_step", "sum_steps"]

Family = Literal["gaussian", "binomial", "poisson"]
FAMILIES: tuple[Family, ...] = ("gaussian", "binomial", "poisson")
F64 = NDArray[np.float64]


@dataclass(frozen=True)
class GlmSiteData:
    """One site's design matrix and response; stays at the site. ``weights``/``offset`` optional."""

    X: F64
    y: F64
    weights: F64 | None = None
    offset: F64 | None = None


@dataclass(frozen=True)
class GlmStep:
    """The aggregate one site returns for one IRLS round (or the sum over sites)."""

    info: F64
    xwz: F64
    deviance: float
    n: int


@dataclass(frozen=True)
class GlmFit:
    family: Family
    coef: F64
    se: F64
    deviance: float
    n: int
    iterations: int
    converged: bool
    scale: float
    trace: list[float] = field(default_factory=list)


def _mean(family: Family, eta: F64) -> tuple[F64, F64, F64]:
    """(μ, dμ/dη, V(μ)) under the canonical link."""
    if family == "gaussian":
        one = np.ones_like(eta)
        return eta, one, one
    if family == "binomial":
        mu = expit(eta)
        d = mu * (1.0 - mu)
        return mu, d, d
    mu = np.exp(eta)
    return mu, mu, mu


def _unit_deviance(family: Family, y: F64, mu: F64) -> F64:
    if family == "gaussian":
        return (y - mu) ** 2
    if family == "binomial":
        out: F64 = 2.0 * (xlogy(y, y / mu) + xlogy(1.0 - y, (1.0 - y) / (1.0 - mu)))
        return out
    pois: F64 = 2.0 * (xlogy(y, y / mu) - (y - mu))
    return pois


def _close(dev: float, dev_old: float, tol: float) -> bool:
    return abs(dev - dev_old) / (abs(dev) + 0.1) <= tol


def site_step(data: GlmSiteData, beta: F64, family: Family) -> GlmStep:
    """Site side of one IRLS round at ``beta``. Precondition: len(beta) == data.X.shape[1]."""
    n = data.X.shape[0]
    off = data.offset if data.offset is not None else np.zeros(n)
    w = data.weights if data.weights is not None else np.ones(n)
    eta = data.X @ beta + off
    mu, dmu, var = _mean(family, eta)
    W = w * dmu * dmu / var
    z = eta - off + (data.y - mu) / dmu
    XW = data.X * W[:, None]
    dev = float(np.sum(w * _unit_deviance(family, data.y, mu)))
    return GlmStep(XW.T @ data.X, XW.T @ z, dev, n)


def sum_steps(steps: Sequence[GlmStep]) -> GlmStep:
    """Coordinator side: the plain sum of the sites' aggregates."""
    return GlmStep(sum((s.info for s in steps), np.zeros_like(steps[0].info)),
                   sum((s.xwz for s in steps), np.zeros_like(steps[0].xwz)),
                   float(sum(s.deviance for s in steps)), sum(s.n for s in steps))


Round = Callable[[F64], GlmStep]


def fit(round_: Round, p: int, family: Family, *, tol: float = 1e-10,
        maxit: int = 25) -> GlmFit:
    """Coordinator loop. ``round_(beta)`` asks every site for its step and returns the total
    (plain sum, or the result of a secure-aggregation round). Raises ``ResearchError`` when the
    summed information is singular."""
    if family not in FAMILIES:
        raise ResearchError(Code.BAD_ARGS, f"family {family!r}; want one of {FAMILIES}")
    beta: F64 = np.zeros(p)
    dev_old: float | None = None
    trace: list[float] = []
    for it in range(1, maxit + 1):
        total = round_(beta)
        trace.append(total.deviance)
        if dev_old is not None and _close(total.deviance, dev_old, tol):
            return _finish(family, beta, total, it, True, trace)
        dev_old = total.deviance
        try:
            beta = np.asarray(np.linalg.solve(total.info, total.xwz), dtype=np.float64)
        except np.linalg.LinAlgError as exc:
            raise ResearchError(Code.BAD_ARGS, f"singular information matrix: {exc}") from exc
    return _finish(family, beta, round_(beta), maxit, False, trace)


def _finish(family: Family, beta: F64, total: GlmStep, it: int, ok: bool,
            trace: list[float]) -> GlmFit:
    p = len(beta)
    scale = total.deviance / (total.n - p) if family == "gaussian" else 1.0
    cov = np.linalg.inv(total.info) * scale
    return GlmFit(family, beta, np.sqrt(np.diag(cov)), total.deviance, total.n, it, ok, scale,
                  trace)
