"""Counts, cross-tabulations, moments, histograms and binned quantiles: site side and combine.

Every site function returns aggregates only (fixed shapes that do not depend on the number of
rows); every ``combine_*`` function works on those aggregates. Means and variances are exact
from (n, Σx, Σx²) — the variance uses the shifted two-pass-free formula
(Σx² − (Σx)²/n)/(n − 1). Quantiles use bin edges fixed by the query: the pooled histogram
locates the bin holding the pooled quantile exactly (Hyndman & Fan 1996 type 7 definition, as
``numpy.quantile``'s default), and the value inside that bin is linearly interpolated, so the
reported value is within one bin width of the pooled sample quantile.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from medledger.errors import Code
from medledger.research.errors import ResearchError

__all__ = ["Moments", "combine_moments", "crosstab", "histogram", "moments", "quantiles"]

F64 = NDArray[np.float64]
I64 = NDArray[np.int64]


def crosstab(columns: Mapping[str, Sequence[object]],
             levels: Mapping[str, Sequence[object]]) -> I64:
    """Counts of each combination of the query's declared ``levels`` (shape: one axis per
    variable, in ``levels`` order). Rows with a value outside the declared levels are not
    counted, so the shape never reveals a site's own levels."""
    names = list(levels)
    shape = tuple(len(levels[v]) for v in names)
    out = np.zeros(shape, dtype=np.int64)
    index = [{lv: i for i, lv in enumerate(levels[v])} for v in names]
    cols = [columns[v] for v in names]
    for row in zip(*cols, strict=True):
        pos = tuple(ix.get(val, -1) for ix, val in zip(index, row, strict=True))
        if -1 not in pos:
            out[pos] += 1
    return out


@dataclass(frozen=True)
class Moments:
    n: int
    total: float
    sum_sq: float

    @property
    def mean(self) -> float:
        return self.total / self.n

    @property
    def variance(self) -> float:
        """Sample variance (denominator n − 1)."""
        return (self.sum_sq - self.total * self.total / self.n) / (self.n - 1)


def moments(x: F64) -> Moments:
    """n, Σx and Σx² of the non-missing values."""
    v = x[~np.isnan(x)]
    return Moments(int(v.size), float(v.sum()), float(np.dot(v, v)))


def combine_moments(parts: Sequence[Moments]) -> Moments:
    return Moments(sum(p.n for p in parts), float(sum(p.total for p in parts)),
                   float(sum(p.sum_sq for p in parts)))


def histogram(x: F64, edges: F64) -> I64:
    """Counts per bin [e_i, e_{i+1}) (last bin closed). Values outside the edges are refused:
    the query's edges must cover the variable's declared range."""
    v = x[~np.isnan(x)]
    if v.size and (v.min() < edges[0] or v.max() > edges[-1]):
        raise ResearchError(Code.BAD_ARGS, "values outside the query's bin edges")
    counts, _ = np.histogram(v, bins=edges)
    return counts.astype(np.int64)


def quantiles(counts: I64, edges: F64, probs: Sequence[float]) -> list[tuple[float, float, float]]:
    """For each probability q: (estimate, bin low, bin high). The pooled type-7 quantile lies
    between ranks k = floor(h), h = (n − 1)·q; the bin holding the k-th order statistic (0-based)
    is found from the cumulative counts, and the estimate interpolates linearly within it."""
    n = int(counts.sum())
    if n == 0:
        raise ResearchError(Code.BAD_ARGS, "no observations in the histogram")
    cum = np.cumsum(counts)
    out = []
    for q in probs:
        k = int(np.floor((n - 1) * q))
        b = int(np.searchsorted(cum, k + 1))
        lo, hi = float(edges[b]), float(edges[b + 1])
        before = int(cum[b - 1]) if b else 0
        frac = (k - before + 0.5) / counts[b]
        out.append((lo + frac * (hi - lo), lo, hi))
    return out
