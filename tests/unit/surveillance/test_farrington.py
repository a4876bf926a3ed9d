"""Original Farrington pieces from their definitions (Farrington 1996; note §3.2)."""

from __future__ import annotations

import math
from datetime import date, timedelta

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy.stats import norm

from medledger.surveillance import (
    FarringtonControl,
    SurveillanceError,
    WeekRange,
    WeekSeries,
    farrington,
)
from medledger.surveillance.farrington import assign_weights, enough_cases, power_bound
from medledger.surveillance.reference import (
    farrington_window,
    reference_points,
    snap_to_weekday,
    years_back,
)


def test_undated_window_is_k_minus_52i_plus_minus_w() -> None:
    got = farrington_window(300, 2, 1, None).tolist()
    assert got == [195, 196, 197, 247, 248, 249]
    assert farrington_window(60, 2, 3, None).tolist() == [5, 6, 7, 8, 9, 10, 11]  # <1 dropped


def _dates(start: date, n: int) -> tuple[date, ...]:
    return tuple(start + timedelta(weeks=i) for i in range(n))


def test_dated_reference_weeks_lag_52_or_53_weeks() -> None:
    dates = _dates(date(2005, 1, 3), 600)
    k = 500
    refs = reference_points(k, 5, dates).tolist()
    lags = [k - r for r in refs]
    assert lags[:4] == [0, 52, 104, 157]  # 3 years back is 1095/1096 days: nearer 157 weeks
    assert lags[5] == 261  # five years back is always 261 weeks, not 260
    undated = reference_points(k, 5, None).tolist()
    assert [k - r for r in undated] == [0, 52, 104, 156, 208, 260]


def test_29_february_moves_to_1_march() -> None:
    assert years_back(date(2016, 2, 29), 1) == date(2015, 3, 1)
    assert years_back(date(2016, 2, 29), 4) == date(2012, 2, 29)
    assert snap_to_weekday(date(2015, 3, 1), date(2016, 2, 29)) == date(2015, 3, 2)


def test_missing_reference_weeks_are_an_error_for_flexible_only() -> None:
    with pytest.raises(SurveillanceError, match="before the series"):
        reference_points(100, 2, None)
    assert farrington_window(100, 2, 1, None).tolist() == [47, 48, 49]


def test_weights_sum_to_n_and_downweight_large_residuals() -> None:
    s = np.array([0.5, -1.0, 2.0, 4.0, 1.0])
    w = assign_weights(s, 1.0)
    assert w.sum() == pytest.approx(s.size)
    gamma = 5 / (1 + 1 + 0.25 + 1 / 16 + 1)
    assert w.tolist() == pytest.approx([gamma, gamma, gamma / 4, gamma / 16, gamma])


@given(st.floats(0.01, 1e4), st.floats(1.0, 20.0), st.floats(0.5, 3.5))
def test_two_thirds_power_bound(mu0: float, tau: float, z: float) -> None:
    want = (mu0 ** (2 / 3) + z * math.sqrt(4 / 9 * mu0 ** (1 / 3) * tau)) ** 1.5
    assert power_bound(mu0, tau, z, "2/3") == pytest.approx(want, rel=1e-12)
    assert power_bound(mu0, tau, z, "none") == pytest.approx(mu0 + z * math.sqrt(mu0 * tau))
    assert power_bound(mu0, tau, z, "1/2") == pytest.approx(
        (math.sqrt(mu0) + z * math.sqrt(tau / 4)) ** 2)


def test_five_in_four_includes_the_current_week() -> None:
    y = np.array([0, 0, 1, 1, 1, 2], dtype=float)
    assert enough_cases(y, 6, (5, 4))
    assert not enough_cases(y, 5, (5, 4))
    assert enough_cases(y, 3, (1, 4))  # window 0..3: R's 0:k drops index 0
    with pytest.raises(SurveillanceError, match="before week 0"):
        enough_cases(y, 2, (1, 4))  # R stops on -1:2


def test_low_counts_report_a_zero_bound_and_no_alarm() -> None:
    rng = np.random.default_rng(1)
    y = rng.poisson(0.2, 300).astype(float)
    y[280:284] = 0.0
    result = farrington(WeekSeries(y), WeekRange(283, 284), FarringtonControl())
    assert result.upperbound.tolist() == [0.0, 0.0] and not result.alarm.any()


def test_an_injected_outbreak_alarms_with_a_two_sided_z() -> None:
    rng = np.random.default_rng(2)
    y = rng.poisson(10, 300).astype(float)
    y[289] = 60.0
    result = farrington(WeekSeries(y), WeekRange(288, 291), FarringtonControl(trend=False))
    assert result.alarm_weeks() == [290]
    lower_alpha = farrington(WeekSeries(y), WeekRange(288, 291),
                             FarringtonControl(trend=False, alpha=0.1))
    assert (lower_alpha.upperbound < result.upperbound).all()  # z_{0.95} < z_{0.975}
    assert float(norm.ppf(0.975)) > float(norm.ppf(0.95))
