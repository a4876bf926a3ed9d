"""The CIDARS-style moving percentile method, against hand-computed cases of its definition."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from medledger.surveillance import (
    MpmControl,
    MpmThresholds,
    SurveillanceError,
    WeekRange,
    WeekSeries,
    mpm,
)


def _series(values: dict[int, float], n: int = 160, dated: bool = False) -> WeekSeries:
    y = np.zeros(n)
    for week, v in values.items():
        y[week - 1] = v
    dates = tuple(date(2012, 1, 2) + timedelta(weeks=i) for i in range(n)) if dated else None
    return WeekSeries(y, dates)


# week 157, b = 2, w = 1: reference weeks 52, 53, 54 and 104, 105, 106
REFERENCE = {52: 1, 53: 5, 54: 3, 104: 2, 105: 8, 106: 4, 157: 6}


@pytest.mark.parametrize(("percentile", "bound", "alarm"), [
    (80, 5.0, True),    # sorted 1 2 3 4 5 8; h = 5·0.8 = 4 → x(5) = 5; 6 > 5
    (90, 6.5, False),   # h = 4.5 → 5 + 0.5·(8 − 5)
    (50, 3.5, True),    # h = 2.5 → 3 + 0.5·(4 − 3)
    (100, 8.0, False),
    (0, 1.0, True),
])
def test_percentile_by_hand(percentile: float, bound: float, alarm: bool) -> None:
    result = mpm(_series(REFERENCE), WeekRange(157, 157), MpmControl(2, 1, percentile))
    assert result.upperbound[0] == bound and result.alarm[0] == alarm


def test_equal_count_is_not_an_alarm() -> None:
    values = {**REFERENCE, 157: 5}
    assert not mpm(_series(values), WeekRange(157, 157), MpmControl(2, 1, 80)).alarm[0]


def test_dated_reference_weeks_follow_the_calendar() -> None:
    """Dated: 2 years back is 104 weeks here too; weeks before the series are dropped."""
    dated = mpm(_series(REFERENCE, dated=True), WeekRange(157, 157), MpmControl(2, 1, 80))
    assert dated.upperbound[0] == 5.0
    early = mpm(_series({1: 3, 2: 9, 54: 1}), WeekRange(54, 54), MpmControl(2, 1, 50))
    assert early.upperbound[0] == 3.0  # only weeks 1..3 exist: median of 0, 3, 9


def test_no_reference_week_gives_undefined() -> None:
    result = mpm(_series({}), WeekRange(10, 11), MpmControl())
    assert np.isnan(result.upperbound).all() and not result.defined.any()


def test_thresholds_most_specific_wins() -> None:
    table = MpmThresholds.parse_csv(
        "disease,region,percentile\nA09,,80\nA09,310115,75\nB01,,90\n", default=85)
    assert table.percentile("A09", "310115") == 75
    assert table.percentile("A09", "110101") == 80
    assert table.percentile("B01", None) == 90
    assert table.percentile("J10", "310115") == 85
    assert table.control(MpmControl(b=5, w=2), "A09", "310115") == MpmControl(5, 2, 75)


@pytest.mark.parametrize("text", ["disease,region,percentile\n,,80\n",
                                  "disease,region,percentile\nA09,,120\n",
                                  "disease,region\nA09,\n"])
def test_bad_threshold_tables_are_refused(text: str) -> None:
    with pytest.raises(SurveillanceError, match="thresholds row 1"):
        MpmThresholds.parse_csv(text)


@given(st.lists(st.integers(0, 40), min_size=120, max_size=120), st.floats(0, 100),
       st.floats(0, 100))
def test_bound_lies_within_the_reference_counts_and_grows_with_the_percentile(
        counts: list[int], p1: float, p2: float) -> None:
    series = WeekSeries(np.array(counts, dtype=float))
    lo, hi = sorted((p1, p2))
    a = mpm(series, WeekRange(110, 120), MpmControl(2, 2, lo))
    b = mpm(series, WeekRange(110, 120), MpmControl(2, 2, hi))
    assert np.all(a.upperbound <= b.upperbound + 1e-9)
    for i, k in enumerate(range(110, 120 + 1)):
        ref = [counts[j - 1] for i_ in (2, 1) for j in range(k - 52 * i_ - 2, k - 52 * i_ + 3)]
        assert min(ref) - 1e-9 <= a.upperbound[i] <= max(ref) + 1e-9
