"""Seeded synthetic site data for tests, demos and benchmarks (no real patients anywhere)."""

from __future__ import annotations

import numpy as np

from medledger.research.glm import F64, Family, GlmSiteData

__all__ = ["glm_sites"]


def glm_sites(family: Family, sizes: list[int], p: int = 4, *, seed: int = 0,
              weights: bool = False, offset: bool = False) -> list[GlmSiteData]:
    """One ``GlmSiteData`` per size: an intercept plus ``p - 1`` covariates (one binary), a
    site-specific covariate shift, and a response drawn from ``family`` around fixed β."""
    rng = np.random.default_rng(seed)
    beta = np.linspace(-0.5, 0.5, p)
    out = []
    for j, n in enumerate(sizes):
        X = np.column_stack([np.ones(n), rng.normal(0.1 * j, 1.0, (n, p - 2)),
                             rng.integers(0, 2, n)]).astype(float)
        off: F64 | None = rng.normal(0.0, 0.2, n) if offset else None
        eta = X @ beta + (off if off is not None else 0.0)
        if family == "gaussian":
            y = eta + rng.normal(0.0, 1.0, n)
        elif family == "binomial":
            y = (rng.random(n) < 1.0 / (1.0 + np.exp(-eta))).astype(float)
        else:
            y = rng.poisson(np.exp(eta)).astype(float)
        w: F64 | None = rng.uniform(0.5, 2.0, n) if weights else None
        out.append(GlmSiteData(X, y, w, off))
    return out
