"""Reference ("baseline") weeks in previous years, by index or by date.

Undated series use index arithmetic, k − 52·i. Dated series follow R's date logic
(../shared/notes/surveillance.md §3.2 step 1, §4 item 4): the date of week k moved back i
calendar years as R's ``seq(by = "-1 year")`` does (29 February becomes 1 March), then snapped to
the nearest date with week k's weekday, so the lag is 52 or 53 weeks.
"""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import numpy.typing as npt

from medledger.surveillance.errors import SurveillanceError

FREQ = 52
Indices = npt.NDArray[np.int64]


def years_back(day: date, years: int) -> date:
    """``day`` moved back ``years`` calendar years; an impossible 29 Feb rolls over to 1 Mar."""
    try:
        return day.replace(year=day.year - years)
    except ValueError:
        return date(day.year - years, 3, 1)


def snap_to_weekday(day: date, like: date) -> date:
    """The date nearest to ``day`` with the weekday of ``like`` (no ties: offsets sum to 7)."""
    forward = (like.weekday() - day.weekday()) % 7
    backward = (day.weekday() - like.weekday()) % 7
    return day + timedelta(days=forward) if forward < backward else day - timedelta(days=backward)


def _position(dates: tuple[date, ...], day: date) -> int | None:
    """1-based week whose date is ``day`` (dates are 7 days apart), or None."""
    offset = (day - dates[0]).days
    if offset % 7 or not 0 <= offset // 7 < len(dates):
        return None
    return offset // 7 + 1


def farrington_window(k: int, b: int, w: int, dates: tuple[date, ...] | None) -> Indices:
    """Weeks r_i − w .. r_i + w for i = b..1, as ``algo.farrington`` collects them.

    Weeks before the series (index < 1, or a date not in the series) are dropped, as in R.
    """
    found: list[int] = []
    if dates is None:
        for i in range(b, 0, -1):
            found.extend(j for j in range(k - FREQ * i - w, k - FREQ * i + w + 1) if j > 0)
        return np.asarray(found, dtype=np.int64)
    t0 = dates[k - 1]
    for i in range(1, b + 1):
        centre = years_back(t0, i)
        for j in range(-w, w + 1):
            pos = _position(dates, snap_to_weekday(centre + timedelta(weeks=j), t0))
            if pos is not None:
                found.append(pos)
    return np.asarray(found, dtype=np.int64)


def reference_points(k: int, b: int, dates: tuple[date, ...] | None) -> Indices:
    """Weeks r_0 = k, r_1, …, r_b one to b years back, as ``farringtonFlexible`` takes them.

    Requires every r_i to be in the series (R stops otherwise).
    """
    points: list[int | None]
    if dates is None:
        points = [k - FREQ * i for i in range(b + 1)]
        points = [p if p is not None and p >= 1 else None for p in points]
    else:
        t0 = dates[k - 1]
        points = [_position(dates, snap_to_weekday(years_back(t0, i), t0)) for i in range(b + 1)]
    if any(p is None for p in points):
        raise SurveillanceError(
            f"week {k}: some of the b = {b} reference weeks are before the series; "
            "decrease b or start the range later")
    return np.asarray(points, dtype=np.int64)
