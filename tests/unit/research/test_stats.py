"""Counts, moments and quantiles through the federation equal the pooled computation."""

from __future__ import annotations

import numpy as np
import pytest
from tests.unit.research.conftest import make_sites, pooled

from medledger.research import stats
from medledger.research.errors import ResearchError
from medledger.research.federation import Federation
from medledger.research.site import Site


@pytest.mark.parametrize("secure", [False, True])
def test_crosstab_equals_pooled_counts(sites: list[Site], secure: bool) -> None:
    table = Federation(sites, secure=secure).crosstab({"sex": ["F", "M"], "smoker": [0.0, 1.0]})
    ref = pooled(sites)
    for i, sx in enumerate(["F", "M"]):
        for j, sm in enumerate([0.0, 1.0]):
            assert table[i, j] == np.sum((ref["sex"] == sx) & (ref["smoker"] == sm))


@pytest.mark.parametrize("secure", [False, True])
def test_mean_and_variance_exact(sites: list[Site], secure: bool) -> None:
    m = Federation(sites, secure=secure).moments("bmi")
    bmi = pooled(sites)["bmi"]
    assert m.n == bmi.size
    assert m.mean == pytest.approx(bmi.mean(), rel=1e-12)
    assert m.variance == pytest.approx(bmi.var(ddof=1), rel=1e-9)


def test_quantiles_within_one_bin_of_pooled() -> None:
    sites = make_sites([300, 400, 900, 1500])
    edges = np.linspace(20, 85, 27)
    probs = [0.05, 0.25, 0.5, 0.75, 0.95]
    got = Federation(sites).quantiles("age", edges.tolist(), probs)
    ref = np.quantile(pooled(sites)["age"], probs)
    width = edges[1] - edges[0]
    for (est, lo, hi), r in zip(got, ref, strict=True):
        assert abs(est - r) <= width
        assert lo <= est <= hi and lo <= r


def test_quantile_bin_located_exactly() -> None:
    x = np.arange(100, dtype=float)
    edges = np.linspace(0, 100, 11)
    ((est, lo, hi),) = stats.quantiles(stats.histogram(x, edges), edges, [0.5])
    assert (lo, hi) == (40.0, 50.0) and lo <= est <= hi
    assert abs(est - np.quantile(x, 0.5)) <= 10.0


def test_histogram_refuses_values_outside_edges() -> None:
    with pytest.raises(ResearchError):
        stats.histogram(np.array([1.0, 200.0]), np.linspace(0, 100, 5))
