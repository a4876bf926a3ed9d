"""Seeded synthetic site data for tests, demos and benchmarks (no real patients anywhere)."""

from __future__ import annotations

from typing import Any

import numpy as np

from medledger.research.glm import F64, Family, GlmSiteData

__all__ = ["glm_sites", "site_tables"]


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


def site_tables(sizes: list[int], *, seed: int = 0, consent_rate: float = 0.9
                ) -> list[dict[str, np.ndarray[Any, Any]]]:
    """Per-site tables of synthetic patients: ``age``, ``sex`` ("F"/"M"), ``smoker`` (0/1),
    ``bmi``, ``sbp`` (gaussian outcome), ``event`` (0/1), ``visits`` (count), ``log_years``
    (offset), ``weight``, ``days`` / ``died`` (whole-day follow-up, ties on purpose; drawn from
    a separate stream) and ``consent_research``. Each site has its own case mix."""
    rng = np.random.default_rng(seed)
    srng = np.random.default_rng(seed + 1_000_003)
    out = []
    for j, n in enumerate(sizes):
        age = rng.uniform(20, 85, n).round(1)
        smoker = (rng.random(n) < 0.2 + 0.03 * j).astype(float)
        bmi = rng.normal(26 + 0.3 * j, 4, n).round(2)
        sex = np.where(rng.random(n) < 0.5, "F", "M")
        male = (sex == "M").astype(float)
        sbp = 100 + 0.5 * age + 5 * smoker + 0.8 * bmi + 3 * male + rng.normal(0, 10, n)
        eta = -6 + 0.05 * age + 0.7 * smoker + 0.04 * bmi
        event = (rng.random(n) < 1 / (1 + np.exp(-eta))).astype(float)
        log_years = np.log(rng.uniform(0.5, 5, n))
        visits = rng.poisson(np.exp(-1 + 0.01 * age + 0.3 * smoker + log_years)).astype(float)
        t_ev = srng.exponential(900 * np.exp(-(0.03 * (age - 50) + 0.5 * smoker)))
        t_c = srng.uniform(60, 720, n)
        days = np.clip(np.ceil(np.minimum(t_ev, t_c)), 1, 730)
        died = (t_ev <= t_c).astype(float)
        out.append({"days": days, "died": died,
                    "age": age, "sex": sex, "smoker": smoker, "bmi": bmi, "sbp": sbp,
                    "event": event, "visits": visits, "log_years": log_years,
                    "weight": rng.uniform(0.5, 2.0, n),
                    "consent_research": rng.random(n) < consent_rate})
    return out
