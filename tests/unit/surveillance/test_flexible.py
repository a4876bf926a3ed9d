"""Improved Farrington pieces from their definitions (Noufaily 2013; note §3.3)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from medledger.surveillance import (
    FlexibleControl,
    SurveillanceError,
    WeekRange,
    WeekSeries,
    farrington_flexible,
)
from medledger.surveillance.flexible import nb_quantile, r_colon, season_labels

NOUFAILY = FlexibleControl(noPeriods=10, pastWeeksNotIncluded=26, pThresholdTrend=1.0,
                           thresholdMethod="nbPlugin")


def _labels(k: int, b: int, w: int, p: int, n: int = 400) -> dict[int, float]:
    refs = np.array([k - 52 * i for i in range(b + 1)])
    lab = season_labels(n, refs, w, p)
    return {week: lab[week - 1] for week in range(1, n + 1) if not math.isnan(lab[week - 1])}


def test_ten_periods_cut_each_45_week_gap_into_nine_blocks_of_five() -> None:
    lab = _labels(300, 2, 3, 10)
    assert all(lab[w] == 10 for w in range(297, 301))  # current window k-w..k
    assert all(lab[w] == 10 for w in range(245, 252))  # r_1 ± w
    assert [lab[w] for w in range(252, 297)] == [j for j in range(1, 10) for _ in range(5)]
    assert all(lab[w] == 10 for w in range(193, 200))
    assert min(lab) == 193  # nothing before r_b - w


def test_remainder_weeks_go_to_the_first_blocks() -> None:
    lab = _labels(300, 1, 3, 7)
    sizes = [sum(1 for w in range(252, 297) if lab[w] == j) for j in range(1, 7)]
    assert sizes == [8, 8, 8, 7, 7, 7]  # 45 = 6*7 + 3


def test_r_colon_descends_and_wide_windows_reproduce_r() -> None:
    assert list(r_colon(5, 4)) == [5, 4] and list(r_colon(2, 4)) == [2, 3, 4]
    lab = _labels(300, 1, 22, 10)  # gap of 7 weeks for 9 blocks: R's a:(a-1) writes 2 weeks
    first_gap_week = 248 + 22 + 1
    assert [lab[first_gap_week + j] for j in range(7)] == [1, 2, 3, 4, 5, 6, 9]
    assert lab[first_gap_week + 7] == 9  # first week of the current window, overwritten


def test_nb_plugin_quantile_has_mean_mu_and_variance_phi_mu() -> None:
    mu, phi = 12.0, 3.0
    size, prob = mu / (phi - 1), 1 / phi
    mean, var = stats.nbinom.stats(size, prob, moments="mv")
    assert float(mean) == pytest.approx(mu) and float(var) == pytest.approx(phi * mu)
    q = nb_quantile(0.95, mu, phi)
    assert stats.nbinom.cdf(q, size, prob) >= 0.95 > stats.nbinom.cdf(q - 1, size, prob)


def test_without_overdispersion_the_quantile_is_poisson() -> None:
    cdf = [sum(math.exp(-1) / math.factorial(j) for j in range(i + 1)) for i in range(6)]
    want = next(i for i, c in enumerate(cdf) if c >= 0.95)
    assert nb_quantile(0.95, 1.0, 1.0) == want == 3
    assert math.isnan(nb_quantile(0.95, math.inf, 2.0))


def _series(seed: int, level: float, n: int = 330) -> WeekSeries:
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    mu = level * np.exp(0.4 * np.sin(2 * np.pi * t / 52) + 0.002 * t)
    return WeekSeries(rng.negative_binomial(20, 20 / (20 + mu)).astype(np.float64))


def test_low_counts_give_an_undefined_bound_and_no_alarm() -> None:
    y = np.random.default_rng(6).poisson(2.0, 300).astype(np.float64)
    y[285:292] = [1, 0, 0, 1, 2, 1, 0]  # weeks 286-292: fewer than 5 cases in any 4 weeks
    result = farrington_flexible(WeekSeries(y), WeekRange(290, 292), NOUFAILY)
    assert np.isnan(result.upperbound).all()
    assert result.defined.all() and not result.alarm.any()  # R: FALSE, not NA


def test_no_convergence_gives_undefined_results_as_in_r() -> None:
    """All zeros: R's glm does not converge with the season factor, R reports NA."""
    result = farrington_flexible(WeekSeries(np.zeros(300)), WeekRange(290, 291), NOUFAILY)
    assert np.isnan(result.upperbound).all() and not result.defined.any()


def test_product_and_r_modes_differ_only_where_documented() -> None:
    """R's D* (prior weights in the dispersion) changes the bounds of large-count series."""
    series = _series(3, 300.0)
    rng = WeekRange(320, 330)
    muan = {**NOUFAILY.__dict__, "thresholdMethod": "muan"}  # uses se(η0)
    product = farrington_flexible(series, rng, FlexibleControl(**muan))
    r_like = farrington_flexible(series, rng, FlexibleControl(**{**muan, "r_compatible": True}))
    assert not np.allclose(product.upperbound, r_like.upperbound, rtol=1e-6)
    # nbPlugin with pThresholdTrend = 1 uses neither the trend test nor se(η0): no difference
    a = farrington_flexible(series, rng, NOUFAILY)
    b = farrington_flexible(series, rng, FlexibleControl(**{**NOUFAILY.__dict__,
                                                            "r_compatible": True}))
    assert np.array_equal(a.upperbound, b.upperbound)
    unweighted = {**NOUFAILY.__dict__, "reweight": False, "pThresholdTrend": 0.05,
                  "thresholdMethod": "delta"}
    # without reweighting R uses the Pearson dispersion, unclamped: equal when it is >= 1
    a = farrington_flexible(series, rng, FlexibleControl(**unweighted))
    b = farrington_flexible(series, rng, FlexibleControl(**{**unweighted,
                                                            "r_compatible": True}))
    assert np.allclose(a.upperbound, b.upperbound, rtol=1e-12)


def test_an_outbreak_alarms_and_the_past_26_weeks_are_left_out() -> None:
    series = _series(4, 20.0)
    y = series.observed.copy()
    y[320:323] += 80  # weeks 321-323
    result = farrington_flexible(WeekSeries(y), WeekRange(318, 325), NOUFAILY)
    assert {321, 322, 323} <= set(result.alarm_weeks())
    # with the default exclusion (w = 3 weeks) the outbreak enters the baseline of week 327+
    later = farrington_flexible(WeekSeries(y), WeekRange(328, 328), NOUFAILY)
    short = farrington_flexible(WeekSeries(y), WeekRange(328, 328), FlexibleControl(
        **{**NOUFAILY.__dict__, "pastWeeksNotIncluded": 3}))
    assert short.upperbound[0] > later.upperbound[0]


def test_bad_options_are_refused() -> None:
    series = _series(5, 5.0)
    with pytest.raises(SurveillanceError, match="before the series"):
        farrington_flexible(series, WeekRange(200, 201), FlexibleControl())
    with pytest.raises(SurveillanceError, match="limit54"):
        farrington_flexible(series, WeekRange(300, 301), FlexibleControl(limit54=(1, 0)))
