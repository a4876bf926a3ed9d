"""The R-style IRLS against statsmodels' GLM (an independent implementation) and R's rules."""

from __future__ import annotations

import numpy as np
import statsmodels.api as sm
from hypothesis import given, settings
from hypothesis import strategies as st

from medledger.surveillance.glm import EPS, fit_poisson, linkinv


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**32 - 1), st.floats(0.5, 50.0), st.booleans())
def test_coefficients_and_dispersion_match_statsmodels(seed: int, level: float,
                                                       weighted: bool) -> None:
    rng = np.random.default_rng(seed)
    n = 40
    t = np.arange(n, dtype=np.float64)
    x = np.column_stack([np.ones(n), t, (t % 4 == 0).astype(np.float64)])
    y = rng.poisson(level * np.exp(0.01 * t)).astype(np.float64)
    if y.sum() == 0:
        y[0] = 1.0
    w = rng.uniform(0.2, 2.0, n) if weighted else None
    ours = fit_poisson(x, y, w)
    ref = sm.GLM(y, x, family=sm.families.Poisson(), var_weights=w).fit(
        scale="X2", tol=1e-12, maxiter=200)
    assert ours.converged
    assert np.allclose(ours.coef, ref.params, rtol=1e-5, atol=1e-6)
    # R (and so ours) takes the dispersion and covariance from the last step's working weights,
    # one iteration behind the final μ; statsmodels uses the final μ (note §3.4): close, not equal
    assert np.isclose(ours.dispersion(), ref.scale, rtol=1e-3)
    row = x[-1]
    eta, se = ours.predict_link(row, ours.dispersion())
    assert np.isclose(eta, row @ ref.params, rtol=1e-6, atol=1e-6)
    assert np.isclose(se, np.sqrt(row @ ref.cov_params() @ row), rtol=1e-3)


def test_hat_values_sum_to_the_number_of_coefficients() -> None:
    y = np.array([3.0, 0.0, 5.0, 2.0, 8.0, 1.0, 4.0])
    x = np.column_stack([np.ones(7), np.arange(7.0)])
    fit = fit_poisson(x, y)
    assert np.isclose(fit.hat.sum(), 2.0)
    assert fit.df_residual == 5


def test_link_floor_is_machine_epsilon() -> None:
    assert linkinv(np.array([-800.0]))[0] == EPS
    assert linkinv(np.array([0.0]))[0] == 1.0


def test_all_zero_counts_fit_towards_zero_like_r() -> None:
    fit = fit_poisson(np.ones((6, 1)), np.zeros(6))
    assert fit.mu.max() < 1e-8  # R converges to a tiny rate, it does not fail
