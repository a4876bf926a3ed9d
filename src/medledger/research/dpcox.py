"""Differentially private Cox regression (Breslow ties): noisy Newton steps on interval sums.

Why not the exact path's messages: the risk-set sums S0_j, S1_j, S2_j put one row into every
risk set up to its time, so one row moves up to G entries of each. Here (ADR 0053) a site
returns, per grid interval [t_j, t_{j+1}) (the last one open), sums over the rows *whose time
falls in that interval* only, and the coordinator forms the risk-set sums by reverse
cumulative sums — post-processing, as for the DP Kaplan–Meier. Each row is then in exactly one
interval cell.

At the current coefficients γ (scaled coordinates, public: they come from earlier noisy
releases) a site clamps every covariate to the query's bounds and divides it by
B_j = max(|lo_j|, |hi_j|), so z ∈ [−1, 1]^p, and weighs each row by w = exp(zγ − ‖γ‖₁) ∈ (0, 1]
(the common factor exp(−‖γ‖₁) cancels in S1/S0 and S2/S0, so score and information are those
of the partial likelihood). Per interval j it returns Σ w, Σ w·z, the upper triangle of
Σ w·z·zᵀ, the events d_j, and overall Σ_{events} z. One row adds at most
1 + p + p(p+1)/2 (its weight terms) + 1 (an event) + p (its covariates if an event) in L1:
``l1_bound(p)``, × k per person (ADR 0051). Each of T steps releases that vector with Laplace
noise at ε/T (OpenDP, ``dp.noisy_vector``) and takes a Newton step γ ← γ + I⁻¹U
(federated form: WebDISCO, Lu et al. 2015; noisy Newton: Avella-Medina, Bradshaw & Loh 2023).

Post-processing: negative event counts are taken as 0, risk-set sums S0 below the noise scale
b are raised to b, and the information's eigenvalues are raised to at least b. Standard errors
are model-based from the noisy information and exclude the privacy noise; no log-likelihood
is released.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from medledger.research.dpglm import covariate_scales, floored
from medledger.research.glm import F64
from medledger.research.survival import CoxFit

__all__ = ["MAX_STEP", "cox_fit", "l1_bound", "length", "newton_update", "site_stats"]

MAX_STEP = 1.0
"""Largest Newton step (Euclidean, scaled coordinates): a hazard ratio of e across a
covariate's whole declared range."""


def l1_bound(p: int) -> int:
    """Largest L1 norm of one row's contribution (see the module docstring)."""
    return 2 + 2 * p + p * (p + 1) // 2


def length(G: int, p: int) -> int:
    """Length of the released vector for G grid times and p covariates."""
    return G * (1 + p + p * (p + 1) // 2) + G + p


def site_stats(X: F64, time: F64, event: F64, grid: F64, params: Mapping[str, Any]) -> F64:
    """A site's interval sums at the query's ``beta`` (γ, scaled coordinates), flattened as
    [Σw (G), Σw·z (G·p), Σw·z·zᵀ upper (G·p(p+1)/2), d (G), Σ_events z (p)]."""
    clip = params["clip"]
    lo = np.asarray([c[0] for c in clip["x"]])
    hi = np.asarray([c[1] for c in clip["x"]])
    Z = np.clip(X, lo, hi) / covariate_scales(clip)
    gamma = np.asarray(params["beta"], dtype=float)
    w = np.exp(Z @ gamma - np.sum(np.abs(gamma)))
    G, p = len(grid), Z.shape[1]
    j = np.searchsorted(grid, time, side="right") - 1
    ev = event > 0
    cell = np.where(ev, np.maximum(j, 0), j)  # an event before t_0 counts at t_0
    keep = cell >= 0  # a censoring before t_0 is at risk at no grid time
    iu = np.triu_indices(p)
    per_row = np.column_stack([w, Z * w[:, None],
                               (Z[:, iu[0]] * Z[:, iu[1]]) * w[:, None]])
    sums = np.zeros((G, per_row.shape[1]))
    np.add.at(sums, cell[keep], per_row[keep])
    d = np.bincount(cell[ev], minlength=G).astype(float)
    q = p * (p + 1) // 2
    return np.concatenate([sums[:, 0], sums[:, 1:1 + p].ravel(), sums[:, 1 + p:1 + p + q].ravel(),
                           d, Z[ev].sum(axis=0)])


def newton_update(noisy: F64, gamma: F64, G: int, b: float) -> tuple[F64, F64]:
    """(next γ, floored information) from one step's noisy interval sums; ``b`` is the
    Laplace scale of their entries."""
    p = len(gamma)
    q = p * (p + 1) // 2
    a0 = noisy[:G]
    a1 = noisy[G:G + G * p].reshape(G, p)
    a2u = noisy[G + G * p:G + G * p + G * q].reshape(G, q)
    d = np.maximum(noisy[G + G * p + G * q:G * (2 + p + q)], 0.0)
    xe = noisy[G * (2 + p + q):]

    def rev(a: F64) -> F64:
        return np.asarray(np.cumsum(a[::-1], axis=0)[::-1], dtype=np.float64)

    s0 = np.maximum(rev(a0), b)
    s1 = rev(a1)
    iu = np.triu_indices(p)
    s2 = np.zeros((G, p, p))
    s2[:, iu[0], iu[1]] = rev(a2u)
    s2 = s2 + np.triu(s2, 1).transpose(0, 2, 1)
    mean1 = s1 / s0[:, None]
    U = xe - np.sum(d[:, None] * mean1, axis=0)
    info = np.sum(d[:, None, None] * (s2 / s0[:, None, None]
                                      - mean1[:, :, None] * mean1[:, None, :]), axis=0)
    info = floored(info, b)
    step = np.linalg.solve(info, U)
    norm = float(np.linalg.norm(step))
    if norm > MAX_STEP:  # a trust region: noise far from the optimum cannot throw γ away
        step = step * (MAX_STEP / norm)
    return np.asarray(gamma + step, dtype=np.float64), info


def cox_fit(gamma: F64, info: F64, clip: Mapping[str, Any], steps: int) -> CoxFit:
    """The reported fit after the last step: β = γ/B, model-based SE from the information."""
    s = covariate_scales(clip)
    se = np.sqrt(np.diag(np.linalg.inv(info))) / s
    return CoxFit(gamma / s, se, float("nan"), steps, False)
