"""Differential privacy for releases that ask for it, through OpenDP 0.16 measurements.

Noise is added once, by the coordinator, to the summed statistic (central DP; with secure
aggregation the coordinator only ever holds that sum). Counts in a contingency table: adding or
removing one person changes one cell by 1, so the table's L1 sensitivity is 1 and each cell gets
Laplace noise of scale 1/ε (Dwork et al. 2006). The ε charged is the measurement's own privacy
map at that sensitivity (``make_laplace(...).map(1)``), not a number we compute beside it.
OpenDP samples from its own cryptographic RNG; nothing here takes a seed. The budget itself is
accounted on the ledger (``studies`` contract, milli-ε per study and privacy unit) and checked
before dispatch.

The privacy unit fixes the sensitivity (ADR 0051). Unit ``record`` (one row of one site's
table): one table changes by one row, so a count table's L1 sensitivity is 1. Unit ``person``:
sites are not linked, so one person may be a row at up to ``k`` sites (the study's
``max_sites_per_person``, by default all its sites); adding or removing that person changes
the pooled table by up to ``k`` in L1 (``k`` cells by 1, or one cell by ``k``). Every function
here takes that ``sensitivity`` and scales the noise by it, so ε is spent per person.

Vectors of real-valued sums (DP GLM, ``dpglm``) use OpenDP's Laplace on a float vector with
L1 distance: the caller gives the L1 sensitivity of one privacy unit's contribution to the
whole vector (per-row bound × unit sensitivity) and the ε the measurement may spend; the noise
scale is sensitivity/ε and the ε charged is, again, the measurement's own map (ADR 0053).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import opendp.prelude as dp

__all__ = ["count_measurement", "noisy_counts", "noisy_mean", "noisy_vector",
           "vector_measurement"]

dp.enable_features("contrib")


def count_measurement(epsilon: float, sensitivity: int = 1) -> Any:
    """Integer Laplace measurement for one count of L1 ``sensitivity`` spending ``epsilon``
    (scale sensitivity/ε)."""
    if not epsilon > 0 or sensitivity < 1:
        raise ValueError(f"want epsilon > 0, sensitivity >= 1; got {epsilon}, {sensitivity}")
    return dp.m.make_laplace(dp.atom_domain(T=int), dp.absolute_distance(T=int),
                             scale=sensitivity / epsilon)


def noisy_counts(counts: np.ndarray[Any, Any], epsilon: float, sensitivity: int = 1
                 ) -> tuple[np.ndarray[Any, Any], float]:
    """(noisy table, ε charged = the measurement's map at ``sensitivity``). Unit record: one
    row is in one cell (sensitivity 1); unit person: up to ``sensitivity`` rows."""
    meas = dp.m.make_laplace(dp.vector_domain(dp.atom_domain(T=int)), dp.l1_distance(T=int),
                             scale=sensitivity / epsilon)
    flat = [int(c) for c in np.asarray(counts).ravel()]
    noisy = np.asarray(meas(flat), dtype=np.int64).reshape(np.asarray(counts).shape)
    return noisy, float(meas.map(sensitivity))  # type: ignore[no-untyped-call]


def noisy_mean(total: float, n: int, bound: float, epsilon: float, sensitivity: int = 1
               ) -> tuple[float, float, float]:
    """(noisy sum, noisy count, ε charged) for values clamped at the sites to |x| ≤ ``bound``:
    half of ε on the sum (sensitivity ``sensitivity``·``bound``), half on the count
    (``sensitivity``: rows per privacy unit)."""
    half = epsilon / 2.0
    k = float(sensitivity)
    s_meas = dp.m.make_laplace(dp.atom_domain(T=float, nan=False),
                               dp.absolute_distance(T=float), scale=k * bound / half)
    c_meas = dp.m.make_laplace(dp.atom_domain(T=float, nan=False),
                               dp.absolute_distance(T=float), scale=k / half)
    spent = float(s_meas.map(k * bound)) + float(c_meas.map(k))  # type: ignore[no-untyped-call]
    return float(s_meas(float(total))), float(c_meas(float(n))), spent


def vector_measurement(epsilon: float, l1_sensitivity: float) -> Any:
    """Laplace measurement on a float vector whose L1 sensitivity is ``l1_sensitivity``,
    spending ``epsilon`` (scale l1_sensitivity/ε per entry)."""
    if not epsilon > 0 or not l1_sensitivity > 0:
        raise ValueError(f"want epsilon > 0, sensitivity > 0; got {epsilon}, {l1_sensitivity}")
    return dp.m.make_laplace(dp.vector_domain(dp.atom_domain(T=float, nan=False)),
                             dp.l1_distance(T=float), scale=l1_sensitivity / epsilon)


def noisy_vector(values: Any, epsilon: float, l1_sensitivity: float
                 ) -> tuple[np.ndarray[Any, Any], float]:
    """(noisy vector, ε charged = the measurement's map at ``l1_sensitivity``)."""
    meas = vector_measurement(epsilon, l1_sensitivity)
    flat = [float(v) for v in np.asarray(values, dtype=float).ravel()]
    noisy = np.asarray(meas(flat), dtype=np.float64)
    return noisy, float(meas.map(float(l1_sensitivity)))
