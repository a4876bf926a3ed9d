"""Week series CSV in, detection CSV out: the CLI's file contract."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from medledger.surveillance import Detection, SurveillanceError, WeekRange, WeekSeries
from medledger.surveillance.series import format_csv, parse_csv


def _csv(counts: list[int], start: date | None = None) -> str:
    rows = ["week_index,date,observed"]
    for i, y in enumerate(counts):
        day = "" if start is None else (start + timedelta(weeks=i)).isoformat()
        rows.append(f"{i + 1},{day},{y}")
    return "\n".join(rows) + "\n"


@given(st.lists(st.integers(0, 10_000), min_size=1, max_size=60), st.booleans())
def test_series_round_trip(counts: list[int], dated: bool) -> None:
    start = date(2015, 1, 5) if dated else None
    series = parse_csv(_csv(counts, start))
    assert series.observed.tolist() == counts
    if dated:
        assert series.dates is not None and series.dates[0] == start
        assert series.dates[-1] == start + timedelta(weeks=len(counts) - 1)
    else:
        assert series.dates is None


@pytest.mark.parametrize(("text", "message"), [
    ("week_index,observed\n1,3\n", "columns"),
    ("week_index,date,observed\n2,,3\n", "week_index is 2; want 1"),
    ("week_index,date,observed\n1,,-1\n", "non-negative integers"),
    ("week_index,date,observed\n1,,1.5\n", "non-negative integers"),
    ("week_index,date,observed\n1,2015-01-06,1\n", "not a Monday"),
    ("week_index,date,observed\n1,2015-01-05,1\n2,,1\n", "every row or in none"),
    ("week_index,date,observed\n1,2015-01-05,1\n2,2015-01-19,1\n", "7 days apart"),
    ("week_index,date,observed\n1,2015-13-05,1\n", "row 1"),
])
def test_bad_series_is_refused_with_the_reason(text: str, message: str) -> None:
    with pytest.raises(SurveillanceError, match=message):
        parse_csv(text)


def test_range_parse_and_bounds() -> None:
    assert WeekRange.parse("3:9") == WeekRange(3, 9)
    assert WeekRange(3, 9).weeks().tolist() == list(range(3, 10))
    for bad in ("3", "3-9", "a:9", ":9"):
        with pytest.raises(SurveillanceError, match="FIRST:LAST"):
            WeekRange.parse(bad)
    with pytest.raises(SurveillanceError, match="outside the series"):
        WeekRange(5, 11).check(10)
    with pytest.raises(SurveillanceError, match="outside the series"):
        WeekRange(0, 3).check(10)


def test_result_csv_leaves_undefined_values_empty() -> None:
    result = Detection.from_float_alarm(
        np.array([4, 5, 6]), np.array([1.0, 0.0, 7.0]),
        np.array([2.5, np.nan, 0.0]), np.array([0.0, np.nan, 1.0]))
    lines = format_csv(result).splitlines()
    assert lines == ["week_index,observed,upperbound,alarm", "4,1,2.5,0", "5,0,,", "6,7,0.0,1"]
    assert result.alarm_weeks() == [6]


def test_series_needs_counts() -> None:
    with pytest.raises(SurveillanceError, match="non-empty"):
        WeekSeries(np.array([]))
