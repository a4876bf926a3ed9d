"""``medledger bench research``: federated GLM at scale and Monte Carlo Shapley for 300 sites.

Targets (issue 6): GLM with 10 covariates over 10 sites × 100,000 rows ≤ 10 s; Monte Carlo
Shapley for 300 sites ≤ 5 s. Data generation is not timed (it stands for each site's own data).
The GLM is timed through the whole site path: consent filter, disclosure checks, egress check,
audit hashes, and (``secure``) masking and unmasking.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from medledger.research import glm
from medledger.research.contribution import Utility, Validation, shapley
from medledger.research.federation import Federation
from medledger.research.site import Site

__all__ = ["glm_run", "shapley_run"]


def _tables(sites: int, rows: int, covariates: int, seed: int) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    beta = np.linspace(-0.3, 0.3, covariates + 1)
    out = []
    for _ in range(sites):
        X = rng.normal(0, 1, (rows, covariates))
        eta = beta[0] + X @ beta[1:]
        y = (rng.random(rows) < 1 / (1 + np.exp(-eta))).astype(float)
        cols: dict[str, Any] = {f"x{k}": X[:, k].copy() for k in range(covariates)}
        cols["y"] = y
        out.append(cols)
    return out


def glm_run(sites: int = 10, rows: int = 100_000, covariates: int = 10,
            secure: bool = False, seed: int = 0) -> dict[str, Any]:
    tables = _tables(sites, rows, covariates, seed)
    fed = Federation([Site(f"site-{j}", t) for j, t in enumerate(tables)], secure=secure)
    t0 = time.perf_counter()
    fit = fed.glm("binomial", "y", [f"x{k}" for k in range(covariates)])
    seconds = time.perf_counter() - t0
    return {"family": "binomial", "sites": sites, "rows_per_site": rows,
            "covariates": covariates, "secure": secure, "iterations": fit.iterations,
            "converged": fit.converged, "seconds": round(seconds, 3)}


def shapley_run(sites: int = 300, permutations: int = 200, covariates: int = 10,
                seed: int = 0) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    p = covariates + 1
    beta = np.linspace(-0.5, 0.5, p)
    steps = []
    for _ in range(sites):
        n = int(rng.integers(50, 400))
        X = np.column_stack([np.ones(n), rng.normal(0, 1, (n, covariates))])
        steps.append(glm.site_step(glm.GlmSiteData(X, X @ beta + rng.normal(0, 1, n)),
                                   np.zeros(p), "gaussian"))
    Xv = np.column_stack([np.ones(2000), rng.normal(0, 1, (2000, covariates))])
    util = Utility("gaussian", Validation(Xv, Xv @ beta + rng.normal(0, 1, 2000)))
    t0 = time.perf_counter()
    sh = shapley(steps, util, permutations=permutations, seed=seed)
    seconds = time.perf_counter() - t0
    return {"sites": sites, "permutations": permutations, "method": sh.method,
            "efficiency_gap": float(abs(sh.values.sum() - sh.grand)),
            "mean_stderr": float(sh.stderr.mean()), "seconds": round(seconds, 3)}
