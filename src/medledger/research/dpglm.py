"""Differentially private GLM: noisy sufficient statistics (gaussian) and a fixed number of
noisy Newton steps (binomial, poisson), on rows clamped to bounds the query declares.

Bounds (ADR 0053). The query's ``clip`` holds, for each covariate, [lo_j, hi_j] and, for
gaussian and poisson, the outcome's [lo_y, hi_y]; they are inside the query's hash and on the
ledger. A site clamps each covariate to its bounds and divides it by B_j = max(|lo_j|, |hi_j|),
so every scaled covariate z_j lies in [−1, 1] (the intercept is 1); the model is fitted in
those scaled coordinates (γ) and reported back-scaled (β_j = γ_j / B_j; gaussian also × B_y).
Each row then contributes numbers in [−1, 1] only, so the L1 sensitivity of the summed vector
is its length ``entries(family, p)`` under the privacy unit ``record`` and k times that under
``person`` (ADR 0051). Prior weights are not supported (they would need a bound of their own).

* **gaussian — sufficient statistics perturbation** (Vu & Slavković 2009; Sheffet 2017,
  "Differentially private ordinary least squares", ICML; Wang 2018, "Revisiting differentially
  private linear regression", NeurIPS, its SSP baseline). The outcome y − offset is clamped to
  [lo_y, hi_y] and divided by B_y into u. A row contributes the upper triangle (with the
  diagonal) of a·aᵀ, a = (z, u) of length q = p + 1: m = q(q + 1)/2 numbers. One Laplace
  release of the summed vector at ε; γ = (ZᵀZ)⁻¹Zᵀu on the noisy statistics.
* **binomial, poisson — noisy Newton** (Avella-Medina, Bradshaw & Loh 2023, "Differentially
  private inference via noisy optimization", Ann. Statist. 51(5); Laplace noise here, for pure
  ε). T steps from γ = 0, T fixed by the query (``steps``). At γ a row contributes its score
  z·r, r = clip(y − μ, −R, R)/R, and the upper triangle of its Hessian term W·z·zᵀ,
  W = min(v(μ), V)/V: p + p(p + 1)/2 numbers. Binomial: R = 1, V = 1/4, never binding
  (|y − μ| < 1, μ(1 − μ) ≤ 1/4), so without noise the steps are Newton's for the MLE. Poisson:
  y clamped to [0, Y], R = V = Y. Each step's release spends ε/T (basic sequential
  composition, Dwork & Roth 2014, Thm 3.16); γ ← γ + H⁻¹g.

Post-processing only (no further privacy cost): a noisy symmetric matrix has its eigenvalues
raised to at least the noise scale b of its entries, so it can be inverted. Standard errors
are the model-based ones computed from the noisy statistics; they do not include the privacy
noise. A DP fit releases no deviance for binomial/poisson (it would be one more release).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy.special import expit

from medledger.errors import Code
from medledger.research.errors import ResearchError
from medledger.research.glm import F64, Family, GlmFit, GlmSiteData

__all__ = ["clip_params", "entries", "newton_fit", "newton_update", "site_stats", "ssp_fit"]


def entries(family: Family, p: int) -> int:
    """Length of a row's contribution (each entry in [−1, 1]): its L1 bound."""
    if family == "gaussian":
        q = p + 1
        return q * (q + 1) // 2
    return p + p * (p + 1) // 2


def clip_params(family: Family, x: Sequence[str], bounds: Mapping[str, Sequence[float]],
                y: str) -> dict[str, Any]:
    """The query's ``clip`` from the study's declared ``bounds`` {variable: (lo, hi)}."""
    need = [*x, *([y] if family != "binomial" else [])]
    missing = [v for v in need if v not in bounds]
    if missing:
        raise ResearchError(Code.BAD_ARGS, f"DP GLM needs bounds for {missing}")
    pairs = {v: [float(bounds[v][0]), float(bounds[v][1])] for v in need}
    if any(not lo < hi for lo, hi in pairs.values()):
        raise ResearchError(Code.BAD_ARGS, "want lo < hi for every bound")
    if family == "poisson" and pairs[y][0] < 0:
        raise ResearchError(Code.BAD_ARGS, "a poisson outcome's bounds must be >= 0")
    return {"x": [pairs[v] for v in x], "y": pairs[y] if family != "binomial" else None}


def covariate_scales(clip: Mapping[str, Any]) -> F64:
    """B_j = max(|lo_j|, |hi_j|) per clamped covariate: dividing by it puts each in [−1, 1]."""
    return np.asarray([max(abs(lo), abs(hi)) for lo, hi in clip["x"]], dtype=np.float64)


def _scales(clip: Mapping[str, Any]) -> F64:
    """The design's column scales: 1 for the intercept, then ``covariate_scales``."""
    return np.concatenate([[1.0], covariate_scales(clip)])


def _scaled(X: F64, clip: Mapping[str, Any]) -> F64:
    lo = np.asarray([-np.inf, *(c[0] for c in clip["x"])])
    hi = np.asarray([np.inf, *(c[1] for c in clip["x"])])
    out: F64 = np.clip(X, lo, hi) / _scales(clip)
    return out


def _bounds(family: Family, clip: Mapping[str, Any]) -> tuple[float, float]:
    """(R, V): the residual and weight bounds of a noisy Newton step."""
    if family == "binomial":
        return 1.0, 0.25
    y_hi = float(clip["y"][1])
    return y_hi, y_hi


def site_stats(data: GlmSiteData, params: Mapping[str, Any]) -> F64:
    """A site's clamped, scaled contribution summed over its rows (see the module docstring).
    Precondition: ``data.X`` has the intercept column first."""
    if data.weights is not None:
        raise ResearchError(Code.BAD_ARGS, "DP GLM takes no prior weights")
    family: Family = params["family"]
    clip = params["clip"]
    Z = _scaled(data.X, clip)
    off = data.offset if data.offset is not None else np.zeros(len(data.y))
    if family == "gaussian":
        lo, hi = clip["y"]
        u = np.clip(data.y - off, lo, hi) / max(abs(lo), abs(hi))
        A = np.column_stack([Z, u])
        full = A.T @ A
        return np.asarray(full[np.triu_indices(A.shape[1])], dtype=np.float64)
    R, V = _bounds(family, clip)
    y = data.y if family == "binomial" else np.clip(data.y, *clip["y"])
    eta = Z @ np.asarray(params["beta"], dtype=float) + off
    mu = expit(eta) if family == "binomial" else np.exp(np.minimum(eta, 700.0))
    var = mu * (1.0 - mu) if family == "binomial" else mu
    r = np.clip(y - mu, -R, R) / R
    w = np.minimum(var, V) / V
    hess = (Z * w[:, None]).T @ Z
    return np.concatenate([Z.T @ r, hess[np.triu_indices(Z.shape[1])]])


def _symmetric(upper: F64, q: int) -> F64:
    M = np.zeros((q, q))
    M[np.triu_indices(q)] = upper
    return np.asarray(M + np.triu(M, 1).T, dtype=np.float64)


def floored(M: F64, floor: float) -> F64:
    """``M`` with its eigenvalues raised to at least ``floor`` (post-processing)."""
    vals, vecs = np.linalg.eigh(M)
    return np.asarray((vecs * np.maximum(vals, floor)) @ vecs.T, dtype=np.float64)


def ssp_fit(noisy: F64, clip: Mapping[str, Any], p: int, b: float) -> GlmFit:
    """The gaussian fit from the noisy statistics; ``b`` is their Laplace scale."""
    A = _symmetric(noisy, p + 1)
    zz, zu, uu = floored(A[:p, :p], b), A[:p, p], float(A[p, p])
    gamma = np.linalg.solve(zz, zu)
    lo, hi = clip["y"]
    by = max(abs(lo), abs(hi))
    s = _scales(clip)
    n = float(A[0, 0])
    rss = max(uu - 2.0 * gamma @ zu + gamma @ zz @ gamma, 0.0) * by * by
    scale = rss / (n - p) if n > p else float("nan")
    se = np.sqrt(np.diag(np.linalg.inv(zz)) * scale) / s
    return GlmFit("gaussian", gamma * by / s, se, rss, round(n), 1, True, scale)


def newton_update(noisy: F64, gamma: F64, family: Family, clip: Mapping[str, Any],
                  b: float) -> tuple[F64, F64]:
    """(next γ, floored noisy Hessian) from one step's noisy score and Hessian."""
    p = len(gamma)
    R, V = _bounds(family, clip)
    H = floored(_symmetric(noisy[p:], p), b) * V
    step = np.linalg.solve(H, noisy[:p] * R)
    return np.asarray(gamma + step, dtype=np.float64), H


def newton_fit(family: Family, gamma: F64, H: F64, clip: Mapping[str, Any],
               steps: int) -> GlmFit:
    """The reported fit after the last step: β back-scaled, model-based SE from H."""
    s = _scales(clip)
    se = np.sqrt(np.diag(np.linalg.inv(H))) / s
    return GlmFit(family, gamma / s, se, float("nan"), -1, steps, False, 1.0)
