"""Federated IRLS equals statsmodels GLM on the pooled data (coefficients, SEs, deviance)."""

from __future__ import annotations

import numpy as np
import pytest
import statsmodels.api as sm

from medledger.research import glm
from medledger.research.errors import ResearchError
from medledger.research.synth import glm_sites

SM_FAMILY = {"gaussian": sm.families.Gaussian(), "binomial": sm.families.Binomial(),
             "poisson": sm.families.Poisson()}


def pooled(sites: list[glm.GlmSiteData], family: glm.Family) -> object:
    X = np.vstack([s.X for s in sites])
    y = np.concatenate([s.y for s in sites])
    kw = {}
    if sites[0].weights is not None:
        kw["var_weights"] = np.concatenate([s.weights for s in sites])  # type: ignore[misc]
    if sites[0].offset is not None:
        kw["offset"] = np.concatenate([s.offset for s in sites])  # type: ignore[misc]
    return sm.GLM(y, X, family=SM_FAMILY[family], **kw).fit(tol=1e-13, maxiter=100)


def federated(sites: list[glm.GlmSiteData], family: glm.Family) -> glm.GlmFit:
    def round_(beta: np.ndarray) -> glm.GlmStep:
        return glm.sum_steps([glm.site_step(s, beta, family) for s in sites])

    return glm.fit(round_, sites[0].X.shape[1], family)


@pytest.mark.parametrize("family", glm.FAMILIES)
@pytest.mark.parametrize(("weights", "offset"), [(False, False), (True, True)])
def test_federated_equals_pooled(family: glm.Family, weights: bool, offset: bool) -> None:
    sites = glm_sites(family, [45, 300, 800, 2000], p=5, seed=7, weights=weights, offset=offset)
    fed = federated(sites, family)
    ref = pooled(sites, family)
    assert fed.converged and fed.iterations <= 25
    assert np.max(np.abs(fed.coef - ref.params)) <= 1e-6  # type: ignore[attr-defined]
    assert np.max(np.abs(fed.se - ref.bse)) <= 1e-6  # type: ignore[attr-defined]
    assert abs(fed.deviance - ref.deviance) <= 1e-6 * max(1.0, ref.deviance)  # type: ignore[attr-defined]
    assert fed.n == sum(s.X.shape[0] for s in sites)


@pytest.mark.parametrize("family", glm.FAMILIES)
def test_one_site_equals_its_own_fit(family: glm.Family) -> None:
    """The acceptance list's "with 1 site" case: one site's rounds equal its own pooled fit
    (coefficients, SEs and deviance), with weights and offset."""
    sites = glm_sites(family, [500], p=4, seed=3, weights=True, offset=True)
    fed = federated(sites, family)
    ref = pooled(sites, family)
    assert fed.converged and fed.iterations <= 25
    assert np.max(np.abs(fed.coef - ref.params)) <= 1e-6  # type: ignore[attr-defined]
    assert np.max(np.abs(fed.se - ref.bse)) <= 1e-6  # type: ignore[attr-defined]
    assert abs(fed.deviance - ref.deviance) <= 1e-6 * max(1.0, ref.deviance)  # type: ignore[attr-defined]


def test_singular_design_is_refused() -> None:
    site = glm_sites("gaussian", [50], p=3, seed=1)[0]
    X = np.column_stack([site.X, site.X[:, 1]])
    with pytest.raises(ResearchError, match="singular"):
        federated([glm.GlmSiteData(X, site.y)], "gaussian")
