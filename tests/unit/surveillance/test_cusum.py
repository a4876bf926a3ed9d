"""CUSUM from its definition (Rossi 1999; R algo.cusum), with and without reset."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from medledger.surveillance import CusumControl, SurveillanceError, WeekRange, cusum

K, H = 1.04, 2.26


def _by_hand(y: list[float], m: float, reset: bool) -> tuple[list[float], list[bool]]:
    """Standard-transform bounds max(0, ⌈√m(h + k − S_{t−1}) + m⌉), alarms S_t ≥ h."""
    s, bounds, alarms = 0.0, [], []
    for x in y:
        bounds.append(float(max(0, math.ceil(math.sqrt(m) * (H + K - s) + m))))
        s = max(0.0, s + (x - m) / math.sqrt(m) - K)
        alarms.append(s >= H)
        if reset and s >= H:
            s = 0.0
    return bounds, alarms


@pytest.mark.parametrize("reset", [False, True])
def test_standard_cusum_by_hand(reset: bool) -> None:
    before = [4.0] * 10  # m = mean before the range = 4
    during = [10.0, 10.0, 10.0, 4.0, 4.0, 12.0]
    y = np.array(before + during)
    result = cusum(y, WeekRange(11, 16), CusumControl(reset=reset))
    bounds, alarms = _by_hand(during, 4.0, reset)
    assert result.upperbound.tolist() == bounds
    assert result.alarm.tolist() == alarms
    # S: 1.96, 3.92, 5.88, 4.84, 3.80, 6.76 running; 1.96, 3.92 | 1.96, 0.92, 0, 2.96 reset
    assert alarms == ([False, True, True, True, True, True] if not reset
                      else [False, True, False, False, False, True])


def test_product_resets_and_r_mode_does_not() -> None:
    y = np.array([4.0] * 10 + [10.0] * 4)
    product = cusum(y, WeekRange(11, 14), CusumControl())
    r_like = cusum(y, WeekRange(11, 14), CusumControl(r_compatible=True))
    assert product.alarm.tolist() == [False, True, False, True]  # S: 1.96, 3.92 | 1.96, 3.92
    assert r_like.alarm.tolist() == [False, True, True, True]
    forced = cusum(y, WeekRange(11, 14), CusumControl(r_compatible=True, reset=True))
    assert forced.alarm.tolist() == product.alarm.tolist()


def test_range_at_week_one_follows_r_only_in_r_mode() -> None:
    y = np.array([3.0, 5.0, 9.0])
    with pytest.raises(SurveillanceError, match="weeks before the range"):
        cusum(y, WeekRange(1, 3), CusumControl())
    r_like = cusum(y, WeekRange(1, 3), CusumControl(r_compatible=True))
    assert r_like.upperbound[0] == math.ceil(math.sqrt(3.0) * (H + K) + 3.0)  # m = y_1


def test_zero_expectation_gives_nan_statistics_like_r() -> None:
    y = np.array([0.0] * 5 + [0.0, 2.0])
    result = cusum(y, WeekRange(6, 7), CusumControl(r_compatible=True))
    assert not result.defined[0]  # (0 - 0)/0 is NaN; R's max(0, NaN) is NaN
    assert result.upperbound.tolist() == [0.0, 0.0]  # R reports NaN bounds as 0


def test_given_m_and_glm_m() -> None:
    y = np.array([5.0] * 104 + [5.0, 30.0])
    given_m = cusum(y, WeekRange(105, 106), CusumControl(m=5.0, reset=False))
    glm_m = cusum(y, WeekRange(105, 106), CusumControl(m="glm", reset=False))
    assert given_m.upperbound.tolist() == pytest.approx(glm_m.upperbound.tolist())
    assert given_m.alarm.tolist() == [False, True]


@given(st.lists(st.integers(0, 30), min_size=15, max_size=60), st.floats(0.1, 2.0),
       st.floats(0.5, 6.0))
def test_reset_alarms_are_a_subset_of_running_alarms(counts: list[int], k: float,
                                                     h: float) -> None:
    y = np.array([5.0] * 5 + counts)
    rng = WeekRange(6, y.size)
    running = cusum(y, rng, CusumControl(k=k, h=h, reset=False))
    resetting = cusum(y, rng, CusumControl(k=k, h=h, reset=True))
    assert not np.any(resetting.alarm & ~running.alarm)
    if running.alarm.any():
        assert resetting.alarm.any()
