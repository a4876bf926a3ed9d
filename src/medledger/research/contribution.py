"""How much each site contributed to a study: rows used, leave-one-out, Shapley value, and the
revenue split.

**Utility** (fixed in the protocol; its hash goes on the ledger): U(S) is the drop in mean loss
on a validation set held by the consortium (``Validation``) when the model is fitted from the
coalition S's sufficient statistics instead of predicting with β = 0; U(∅) = 0. Each site's
statistics are its IRLS aggregates (XᵀWX, XᵀWz) at the grand model's β, so a coalition's fit is
β_S = (Σ_S XᵀWX)⁻¹ Σ_S XᵀWz — exact least squares for gaussian, one IRLS step from the grand
estimate otherwise ("reconstruction" in the spirit of GTG-Shapley, Liu et al. 2022, ACM TIST
13(4):60). No coalition needs another site round-trip. A coalition whose information matrix is
singular has U = 0. Loss: squared error (gaussian) or mean unit deviance (binomial, poisson).

**Reference β.** Non-gaussian statistics depend on the β they are evaluated at; use the grand
model refitted with prior weights 1/n_j at site j (``Federation.glm(..., site_weighted=True)``),
which copies of rows cannot move, so the whole valuation is invariant to duplication.

**Duplication.** With ``weighting="site"`` (the default) each site's statistics enter as
per-row means (XᵀWX/n, XᵀWz/n): a site copying its rows changes nothing, so its Shapley value is
unchanged exactly, while its row-count share grows. A site's size still counts through the
precision of its means, which is what shows on held-out loss; copies add no information. With
``weighting="rows"`` (pooled-model weights) duplication moved a site's share from 0.2120 to
0.2141 in our check (5 equal sites, ×3 copies), so that option is offered for analysis only.

**Shapley value** (Shapley 1953): φ_i = Σ_{S ⊆ N∖i} |S|!(n−|S|−1)!/n! · (U(S∪i) − U(S)).
Exact over all 2ⁿ coalitions up to ``EXACT_MAX`` sites; beyond, Monte Carlo permutation
sampling (Castro, Gómez & Tejada 2009) with the standard error of each φ_i. Every permutation's
marginals sum to U(N), so Σφ = U(N) holds exactly in both.

**On the ledger** (``contribution_args``): per site n, φ_i, its standard error and its
leave-one-out value as integers in micro-units of U (``apportion.PHI_SCALE``), with the utility
hash, method, permutations and seed; share (ppm) and revenue are apportioned from n and the
recorded φ by the study's declared rule (``apportion.split``), which the contract recomputes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from math import factorial
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from medledger.research import apportion, audit
from medledger.research.glm import Family, GlmStep, _mean, _unit_deviance

__all__ = ["EXACT_MAX", "Shapley", "Utility", "Validation", "contribution_args", "leave_one_out",
           "micro", "revenue_split", "shapley"]

EXACT_MAX = 15
F64 = NDArray[np.float64]


@dataclass(frozen=True)
class Validation:
    """The consortium's validation set (synthetic or consented, held centrally)."""

    X: F64
    y: F64
    offset: F64 | None = None


@dataclass(frozen=True)
class Utility:
    family: Family
    validation: Validation
    weighting: Literal["site", "rows"] = "site"

    def describe(self) -> str:
        """SHA-256 of the utility's definition (recorded in the study's terms)."""
        v = self.validation
        return audit.digest({"utility": "validation-loss-drop", "family": self.family,
                             "weighting": self.weighting,
                             "X": v.X.ravel().tolist(), "y": v.y.tolist(),
                             "offset": None if v.offset is None else v.offset.tolist()})

    def loss(self, betas: F64) -> F64:
        """Mean validation loss for each row of ``betas`` (k × p). Gaussian uses the validation
        set's own sufficient statistics: ‖r − Xβ‖²/m = (rᵀr − 2βᵀXᵀr + βᵀXᵀXβ)/m, r = y − offset."""
        v = self.validation
        off = 0.0 if v.offset is None else v.offset
        if self.family == "gaussian":
            r = v.y - off
            G, c, m = v.X.T @ v.X, v.X.T @ r, len(r)
            quad = np.einsum("ki,ij,kj->k", betas, G, betas)
            return np.asarray((float(r @ r) - 2.0 * betas @ c + quad) / m, dtype=np.float64)
        eta = betas @ v.X.T + off
        mu, _, _ = _mean(self.family, eta)
        return np.asarray(_unit_deviance(self.family, v.y, mu).mean(axis=1), dtype=np.float64)

    def of(self, info: F64, xwz: F64) -> F64:
        """U for a stack of coalitions: info (k × p × p), xwz (k × p)."""
        k, p = xwz.shape
        base = self.loss(np.zeros((1, p)))[0]
        ok = _well_posed(info)
        betas = np.zeros((k, p))
        if ok.any():
            betas[ok] = np.linalg.solve(info[ok], xwz[ok][..., None])[..., 0]
        u: F64 = base - self.loss(betas)
        u[~ok] = 0.0
        return u


def _well_posed(info: F64) -> NDArray[np.bool_]:
    """Which information matrices are usable: all, when one batched Cholesky succeeds (positive
    definite); otherwise those whose eigenvalue ratio λ_min/λ_max exceeds 1e-12."""
    try:
        np.linalg.cholesky(info)
        diag = np.einsum("kii->k", info)
        if np.all(diag > 0):
            return np.ones(len(info), dtype=bool)
    except np.linalg.LinAlgError:
        pass
    ev = np.linalg.eigvalsh(info)
    out: NDArray[np.bool_] = ev[:, 0] > 1e-12 * np.maximum(ev[:, -1], 1e-300)
    return out


@dataclass(frozen=True)
class Shapley:
    values: F64
    stderr: F64
    method: Literal["exact", "monte-carlo"]
    permutations: int
    seed: int
    grand: float


def _stack(steps: Sequence[GlmStep], utility: Utility) -> tuple[F64, F64]:
    info, xwz = np.stack([s.info for s in steps]), np.stack([s.xwz for s in steps])
    if utility.weighting == "site":
        n = np.array([max(s.n, 1) for s in steps], dtype=float)
        info, xwz = info / n[:, None, None], xwz / n[:, None]
    return info, xwz


def shapley(steps: Sequence[GlmStep], utility: Utility, *, permutations: int = 200,
            seed: int = 0, exact_max: int = EXACT_MAX) -> Shapley:
    """Shapley values of the sites whose aggregates are ``steps`` (one per site)."""
    info, xwz = _stack(steps, utility)
    n = len(steps)
    if n <= exact_max:
        return _exact(info, xwz, utility)
    return _monte_carlo(info, xwz, utility, permutations, seed)


def _exact(info: F64, xwz: F64, utility: Utility) -> Shapley:
    n, p = xwz.shape
    size = 1 << n
    s_info = np.zeros((size, p, p))
    s_xwz = np.zeros((size, p))
    for mask in range(1, size):
        low = (mask & -mask).bit_length() - 1
        s_info[mask] = s_info[mask & (mask - 1)] + info[low]
        s_xwz[mask] = s_xwz[mask & (mask - 1)] + xwz[low]
    u = np.zeros(size)
    u[1:] = utility.of(s_info[1:], s_xwz[1:])
    sizes = np.array([bin(m).count("1") for m in range(size)])
    weight = np.array([factorial(k) * factorial(n - k - 1) / factorial(n) for k in range(n)])
    phi = np.zeros(n)
    masks = np.arange(size)
    for i in range(n):
        without = masks[(masks >> i) & 1 == 0]
        phi[i] = float(np.sum(weight[sizes[without]] * (u[without | (1 << i)] - u[without])))
    return Shapley(phi, np.zeros(n), "exact", 0, 0, float(u[size - 1]))


def _monte_carlo(info: F64, xwz: F64, utility: Utility, m: int, seed: int) -> Shapley:
    n, _ = xwz.shape
    rng = np.random.default_rng(seed)
    marg = np.zeros((m, n))
    grand = 0.0
    for r in range(m):
        order = rng.permutation(n)
        u = utility.of(np.cumsum(info[order], axis=0), np.cumsum(xwz[order], axis=0))
        marg[r, order] = np.diff(np.concatenate([[0.0], u]))
        grand = float(u[-1])
    se = marg.std(axis=0, ddof=1) / np.sqrt(m) if m > 1 else np.zeros(n)
    return Shapley(marg.mean(axis=0), se, "monte-carlo", m, seed, grand)


def leave_one_out(steps: Sequence[GlmStep], utility: Utility) -> F64:
    """U(N) − U(N ∖ i) for each site."""
    info, xwz = _stack(steps, utility)
    tot_i, tot_x = info.sum(axis=0), xwz.sum(axis=0)
    grand = utility.of(tot_i[None], tot_x[None])[0]
    return np.asarray(grand - utility.of(tot_i[None] - info, tot_x[None] - xwz))


def revenue_split(pool: int, weights: Sequence[float]) -> list[int]:
    """Split ``pool`` (integer minor units) in proportion to max(w, 0) by largest remainder;
    ties go to the lower index. The parts always sum to ``pool``. For analysis: the split the
    ledger accepts is ``apportion.split`` on the recorded integers (``contribution_args``)."""
    w = np.maximum(np.asarray(weights, dtype=float), 0.0)
    if w.sum() == 0:
        w = np.ones_like(w)
    exact = pool * w / w.sum()
    parts = np.floor(exact).astype(int)
    rest = pool - int(parts.sum())
    order = sorted(range(len(w)), key=lambda i: (-(exact[i] - parts[i]), i))
    for i in order[:rest]:
        parts[i] += 1
    return [int(x) for x in parts]


def micro(x: float) -> int:
    """``x`` in micro-units of the utility, rounded half to even (``apportion.PHI_SCALE``)."""
    v = round(float(x) * apportion.PHI_SCALE)
    if abs(v) > 2**53 - 1:
        raise ValueError(f"{x!r} is outside the ledger's integer range in micro-units")
    return v


def contribution_args(study: str, rule: Mapping[str, Any], pool: int, sites: Sequence[str],
                      n: Sequence[int], sh: Shapley, loo: Sequence[float]) -> dict[str, Any]:
    """The ``studies.contribution`` arguments: per site (in ``sites`` order, matching ``n``,
    ``sh.values`` and ``loo``) rows used, φ, its standard error and leave-one-out in micro-units,
    and share (ppm) and revenue apportioned by the declared ``rule`` (the study's
    ``ContributionRule``: method, utility hash, shapley_weight_ppm) from n and the recorded φ —
    the integers the contract recomputes."""
    phi = [micro(v) for v in sh.values]
    ppm = apportion.split(rule, apportion.PPM, sites, n, phi)
    pay = apportion.split(rule, pool, sites, n, phi)
    shares = [{"site": site, "n": int(k), "phi_micro": f, "phi_se_micro": micro(se),
               "loo_micro": micro(lo), "share_ppm": s, "revenue": r}
              for site, k, f, se, lo, s, r in zip(sites, n, phi, sh.stderr, loo, ppm, pay,
                                                  strict=True)]
    return {"study": study, "utility": rule["utility"], "method": sh.method,
            "permutations": sh.permutations, "seed": sh.seed, "shares": shares}
