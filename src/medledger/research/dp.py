"""Differential privacy for releases that ask for it, through OpenDP 0.16 measurements.

Noise is added once, by the coordinator, to the summed statistic (central DP; with secure
aggregation the coordinator only ever holds that sum). Counts in a contingency table: adding or
removing one person changes one cell by 1, so the table's L1 sensitivity is 1 and each cell gets
Laplace noise of scale 1/ε (Dwork et al. 2006). The ε charged is the measurement's own privacy
map at that sensitivity (``make_laplace(...).map(1)``), not a number we compute beside it.
OpenDP samples from its own cryptographic RNG; nothing here takes a seed. The budget itself is
accounted on the ledger (``studies`` contract, milli-ε per study) and checked before dispatch.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import opendp.prelude as dp

__all__ = ["count_measurement", "noisy_counts", "noisy_mean"]

dp.enable_features("contrib")


def count_measurement(epsilon: float) -> Any:
    """Integer Laplace measurement for one count (sensitivity 1) spending ``epsilon``."""
    if not epsilon > 0:
        raise ValueError(f"epsilon must be > 0; got {epsilon}")
    return dp.m.make_laplace(dp.atom_domain(T=int), dp.absolute_distance(T=int),
                             scale=1.0 / epsilon)


def noisy_counts(counts: np.ndarray[Any, Any], epsilon: float) -> tuple[
        np.ndarray[Any, Any], float]:
    """(noisy table, ε charged). One person is in one cell: parallel composition over cells,
    so the whole table costs the measurement's ε once."""
    meas = dp.m.make_laplace(
        dp.vector_domain(dp.atom_domain(T=int)), dp.l1_distance(T=int), scale=1.0 / epsilon)
    flat = [int(c) for c in np.asarray(counts).ravel()]
    noisy = np.asarray(meas(flat), dtype=np.int64).reshape(np.asarray(counts).shape)
    return noisy, float(meas.map(1))  # type: ignore[no-untyped-call]


def noisy_mean(total: float, n: int, bound: float, epsilon: float) -> tuple[float, float, float]:
    """(noisy sum, noisy count, ε charged) for values clamped at the sites to |x| ≤ ``bound``:
    half of ε on the sum (sensitivity ``bound``), half on the count (sensitivity 1)."""
    half = epsilon / 2.0
    s_meas = dp.m.make_laplace(dp.atom_domain(T=float, nan=False),
                               dp.absolute_distance(T=float), scale=bound / half)
    c_meas = dp.m.make_laplace(dp.atom_domain(T=float, nan=False),
                               dp.absolute_distance(T=float), scale=1.0 / half)
    spent = float(s_meas.map(bound)) + float(c_meas.map(1.0))  # type: ignore[no-untyped-call]
    return float(s_meas(float(total))), float(c_meas(float(n))), spent
