"""Shapley values against a brute-force definition, their axioms, duplication, Monte Carlo,
leave-one-out and the revenue split."""

from __future__ import annotations

import itertools
import time
from math import factorial

import numpy as np
import pytest

from medledger.research import glm
from medledger.research.contribution import (
    Utility,
    Validation,
    leave_one_out,
    revenue_split,
    shapley,
)
from medledger.research.synth import glm_sites

P = 4


def utility(family: glm.Family = "gaussian", weighting: str = "site") -> Utility:
    v = glm_sites(family, [1500], p=P, seed=99)[0]
    return Utility(family, Validation(v.X, v.y), weighting)  # type: ignore[arg-type]


def steps(sites: list[glm.GlmSiteData], family: glm.Family = "gaussian") -> list[glm.GlmStep]:
    return [glm.site_step(s, np.zeros(P), family) for s in sites]


def at_grand(sites: list[glm.GlmSiteData], family: glm.Family) -> list[glm.GlmStep]:
    """Each site's aggregates at the reference β: the grand model refitted with prior weights
    1/n_j at site j (a fit copies cannot move)."""
    weighted = [glm.GlmSiteData(s.X, s.y, np.full(len(s.y), 1.0 / len(s.y))) for s in sites]
    grand = glm.fit(lambda b: glm.sum_steps([glm.site_step(s, b, family) for s in weighted]),
                    P, family).coef
    return [glm.site_step(s, grand, family) for s in sites]


def brute_force(st: list[glm.GlmStep], u: Utility) -> np.ndarray:
    """φ_i = mean over all orderings of i's marginal contribution (the definition)."""
    n = len(st)

    def value(members: tuple[int, ...]) -> float:
        if not members:
            return 0.0
        one = shapley([st[i] for i in members], u)
        return one.grand

    phi = np.zeros(n)
    for order in itertools.permutations(range(n)):
        for k, i in enumerate(order):
            phi[i] += value(tuple(sorted(order[: k + 1]))) - value(tuple(sorted(order[:k])))
    return phi / factorial(n)


def test_exact_equals_the_definition_and_is_efficient() -> None:
    st = steps(glm_sites("gaussian", [40, 120, 300, 700], p=P, seed=2))
    u = utility()
    sh = shapley(st, u)
    assert sh.method == "exact"
    assert np.max(np.abs(sh.values - brute_force(st, u))) <= 1e-12
    assert abs(sh.values.sum() - sh.grand) <= 1e-9


def test_identical_sites_equal_and_empty_site_zero() -> None:
    a, b = glm_sites("gaussian", [200, 500], p=P, seed=4)
    empty = glm.GlmSiteData(np.zeros((0, P)), np.zeros(0))
    sh = shapley(steps([a, a, b, empty]), utility())
    assert sh.values[0] == pytest.approx(sh.values[1], abs=1e-12)
    assert sh.values[3] == 0.0


@pytest.mark.parametrize("family", ["gaussian", "binomial", "poisson"])
def test_duplicating_rows_does_not_raise_the_shapley_share(family: glm.Family) -> None:
    sites = glm_sites(family, [300, 300, 400, 500], p=P, seed=8)
    u = utility(family)
    d = sites[0]
    copied = glm.GlmSiteData(np.vstack([d.X] * 3), np.concatenate([d.y] * 3))
    base = shapley(at_grand(sites, family), u)
    dup = shapley(at_grand([copied, *sites[1:]], family), u)  # the study refits with copies
    share = base.values[0] / base.values.sum()
    assert dup.values[0] / dup.values.sum() <= share + 1e-12
    counts = np.array([300, 300, 400, 500.0])
    assert 900 / (counts.sum() + 600) > counts[0] / counts.sum()  # the row-count share grows


def test_monte_carlo_is_close_to_exact_and_efficient() -> None:
    st = steps(glm_sites("gaussian", [60, 90, 150, 200, 300, 500], p=P, seed=5))
    u = utility()
    exact = shapley(st, u)
    mc = shapley(st, u, permutations=400, seed=1, exact_max=0)
    assert mc.method == "monte-carlo" and mc.permutations == 400
    assert abs(mc.values.sum() - exact.grand) <= 1e-9
    assert np.all(np.abs(mc.values - exact.values) <= 5 * mc.stderr + 1e-12)
    assert np.all(mc.stderr > 0)


def test_monte_carlo_300_sites_under_5_seconds() -> None:
    sizes = [int(x) for x in np.random.default_rng(1).integers(50, 400, 300)]
    st = [glm.site_step(s, np.zeros(11), "gaussian")
          for s in glm_sites("gaussian", sizes, p=11, seed=3)]
    v = glm_sites("gaussian", [2000], p=11, seed=99)[0]
    t = time.perf_counter()
    sh = shapley(st, Utility("gaussian", Validation(v.X, v.y)), permutations=200)
    assert time.perf_counter() - t <= 5.0
    assert abs(sh.values.sum() - sh.grand) <= 1e-9


def test_leave_one_out_matches_refits() -> None:
    st = steps(glm_sites("gaussian", [100, 200, 300], p=P, seed=6))
    u = utility()
    loo = leave_one_out(st, u)
    full = shapley(st, u).grand
    for i in range(3):
        rest = [s for j, s in enumerate(st) if j != i]
        assert loo[i] == pytest.approx(full - shapley(rest, u).grand, abs=1e-12)


def test_revenue_split() -> None:
    assert revenue_split(100, [1, 1, 1]) == [34, 33, 33]
    assert revenue_split(1000, [0.5, -0.2, 0.5]) == [500, 0, 500]
    parts = revenue_split(99_999, [0.3, 0.2, 0.1, 0.4])
    assert sum(parts) == 99_999 and parts[3] > parts[0] > parts[1] > parts[2]
    assert revenue_split(10, [0, 0]) == [5, 5]


def test_utility_hash_changes_with_definition() -> None:
    assert utility().describe() != utility(weighting="rows").describe()
