"""GLM through sites and the coordinator, with and without secure aggregation, equals
statsmodels on the pooled consented rows; refusals are not silent."""

from __future__ import annotations

import numpy as np
import pytest
import statsmodels.api as sm
from tests.unit.research.conftest import make_sites, pooled

from medledger.research.errors import QueryRefused
from medledger.research.federation import Federation
from medledger.research.site import Site

MODELS = [("gaussian", "sbp", None, None, sm.families.Gaussian()),
          ("binomial", "event", "weight", None, sm.families.Binomial()),
          ("poisson", "visits", "weight", "log_years", sm.families.Poisson())]
X = ["age", "smoker", "bmi"]


@pytest.mark.parametrize("secure", [False, True])
@pytest.mark.parametrize(("family", "y", "w", "off", "smf"), MODELS)
def test_site_glm_equals_pooled(sites: list[Site], secure: bool, family: str, y: str,
                                w: str | None, off: str | None, smf: object) -> None:
    fed = Federation(sites, secure=secure).glm(family, y, X, weights=w, offset=off)  # type: ignore[arg-type]
    ref_rows = pooled(sites)
    design = np.column_stack([np.ones(ref_rows["age"].size)] + [ref_rows[v] for v in X])
    kw = {}
    if w:
        kw["var_weights"] = ref_rows[w]
    if off:
        kw["offset"] = ref_rows[off]
    ref = sm.GLM(ref_rows[y], design, family=smf, **kw).fit(tol=1e-13, maxiter=100)
    assert fed.converged
    assert np.max(np.abs(fed.coef - ref.params)) <= 1e-6
    assert np.max(np.abs(fed.se - ref.bse)) <= 1e-6
    assert abs(fed.deviance - ref.deviance) <= 1e-6 * max(1.0, ref.deviance)


def test_small_site_is_refused_not_dropped() -> None:
    sites = make_sites([6, 400, 900, 1500])
    fed = Federation(sites)
    with pytest.raises(QueryRefused) as info:
        fed.glm("gaussian", "sbp", X)
    assert info.value.refusals == {"hosp-a": "min_rows"}
    assert fed.trail[-1]["outcomes"]["hosp-a"] == "refused:min_rows"
    assert "result" not in fed.trail[-1]


def test_fewer_than_three_sites_refused() -> None:
    with pytest.raises(Exception, match="want >= 3"):
        Federation(make_sites([400, 900])).glm("gaussian", "sbp", X)
