"""EARS C1-C3 from their definitions (Hutwagner 2005; R earsC; note §3.1)."""

from __future__ import annotations

import statistics

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy.stats import norm

from medledger.surveillance import EarsControl, SurveillanceError, WeekRange, ears_c

Z999 = float(norm.ppf(0.999))
Z975 = float(norm.ppf(0.975))


def test_c1_is_mean_plus_z_sd_of_the_previous_seven_weeks() -> None:
    y = np.array([1, 2, 3, 4, 5, 6, 7, 20, 5], dtype=float)
    result = ears_c(y, WeekRange(8, 9), EarsControl("C1"))
    want8 = statistics.mean(y[0:7]) + Z999 * statistics.stdev(y[0:7])
    want9 = statistics.mean(y[1:8]) + Z999 * statistics.stdev(y[1:8])
    assert result.upperbound == pytest.approx([want8, want9], rel=1e-12)
    assert result.alarm.tolist() == [True, False] and result.defined.all()


def test_c2_skips_two_guard_weeks() -> None:
    y = np.array([2, 4, 2, 4, 2, 4, 2, 50, 50, 9], dtype=float)
    result = ears_c(y, WeekRange(10, 10), EarsControl("C2"))
    base = y[0:7]
    assert result.upperbound[0] == pytest.approx(
        statistics.mean(base) + Z999 * statistics.stdev(base), rel=1e-12)
    assert result.alarm[0]


def test_min_sigma_floors_the_sd() -> None:
    y = np.array([3.0] * 7 + [4.0])
    plain = ears_c(y, WeekRange(8, 8), EarsControl("C1"))
    floored = ears_c(y, WeekRange(8, 8), EarsControl("C1", minSigma=1.0))
    assert plain.upperbound[0] == 3.0 and plain.alarm[0]  # sd 0: any count above the mean
    assert floored.upperbound[0] == pytest.approx(3.0 + Z999) and not floored.alarm[0]


def _c3_parts(y: np.ndarray, k: int) -> tuple[float, float, float, float]:
    """S_k, C2_k, and the C2 baseline mean and sd of week k (1-based), by hand."""
    def c2(i: int) -> tuple[float, float, float]:
        base = y[i - 10: i - 3]
        m, s = statistics.mean(base), statistics.stdev(base)
        return (y[i - 1] - m) / s, m, s
    s_k = sum(max(0.0, c2(i)[0] - 1) for i in (k - 2, k - 1))
    c2_k, mean_k, sd_k = c2(k)
    return s_k, c2_k, mean_k, sd_k


def test_c3_textbook_and_r_variants_differ_as_documented() -> None:
    rng = np.random.default_rng(5)
    y = rng.poisson(5, 30).astype(float)
    y[24], y[25], y[26] = 14.0, 15.0, 0.0  # two high weeks, then a zero week
    k = 27
    s_k, _, mean_k, sd_k = _c3_parts(y, k)
    assert s_k > Z975  # the two previous weeks alone exceed the threshold
    textbook = ears_c(y, WeekRange(k, k), EarsControl("C3"))
    r_like = ears_c(y, WeekRange(k, k), EarsControl("C3", r_compatible=True))
    assert textbook.alarm[0]  # C3 = S + max(0, C2_k - 1) > z
    assert textbook.upperbound[0] == pytest.approx(max(0.0, mean_k + sd_k * (1 + Z975 - s_k)))
    assert not r_like.alarm[0]  # R: y_k = 0 never exceeds max(0, y + sd (z - S))
    assert r_like.upperbound[0] == pytest.approx(max(0.0, 0.0 + sd_k * (Z975 - s_k)))


def test_c3_r_variant_ignores_a_jump_in_the_current_week() -> None:
    y = np.array([4, 5, 4, 6, 5, 4, 5, 4, 5, 4, 5, 40], dtype=float)
    k = 12
    s_k, c2_k, _, sd_k = _c3_parts(y, k)
    assert s_k == 0 and c2_k > 10
    assert ears_c(y, WeekRange(k, k), EarsControl("C3")).alarm[0]
    r_like = ears_c(y, WeekRange(k, k), EarsControl("C3", r_compatible=True))
    assert r_like.upperbound[0] == pytest.approx(40 + sd_k * Z975)
    assert not r_like.alarm[0]


def test_zero_variance_baselines_follow_r_nan_rules() -> None:
    y = np.array([0.0] * 12 + [1.0])
    c1 = ears_c(y, WeekRange(13, 13), EarsControl("C1"))
    assert c1.upperbound[0] == 0.0 and c1.alarm[0]
    c3 = ears_c(y, WeekRange(13, 13), EarsControl("C3", r_compatible=True))
    assert np.isnan(c3.upperbound[0]) and not c3.defined[0]  # 0/0 and 0*Inf are NaN in R


def test_too_early_range_and_bad_options_are_refused() -> None:
    y = np.ones(20)
    with pytest.raises(SurveillanceError, match="from 10"):
        ears_c(y, WeekRange(9, 20), EarsControl("C2"))
    with pytest.raises(SurveillanceError, match="baseline"):
        ears_c(y, WeekRange(10, 20), EarsControl("C1", baseline=2))
    with pytest.raises(SurveillanceError, match="minSigma"):
        ears_c(y, WeekRange(10, 20), EarsControl("C1", minSigma=-1))


@given(st.lists(st.integers(0, 50), min_size=12, max_size=40), st.integers(0, 100),
       st.sampled_from(["C1", "C2"]))
def test_shifting_every_count_shifts_the_bound(counts: list[int], shift: int,
                                               method: str) -> None:
    y = np.array(counts, dtype=float)
    rng = WeekRange(10, y.size)
    control = EarsControl(method)  # type: ignore[arg-type]
    a, b = ears_c(y, rng, control), ears_c(y + shift, rng, control)
    assert np.allclose(b.upperbound, a.upperbound + shift, rtol=0, atol=1e-9 * (1 + shift))
