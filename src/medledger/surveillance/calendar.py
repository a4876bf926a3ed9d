"""Calendar dates and ISO 8601 weeks as the case-report contract and its views spell them.

Dates are ``YYYY-MM-DD`` (local calendar dates as the reporting hospital records them, no time
zone). Weeks are ISO 8601 weeks ``YYYY-Www`` (Monday to Sunday; week 1 holds the year's first
Thursday), as ``datetime.date.isocalendar`` computes them.
"""

from __future__ import annotations

import re
from datetime import date, timedelta

__all__ = ["days", "iso_week", "parse_date", "parse_week", "utc_date", "week_monday", "weeks"]

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}\Z")
_WEEK = re.compile(r"^(\d{4})-W(\d{2})\Z")


def parse_date(text: str) -> date:
    """A strict ``YYYY-MM-DD`` date; raises ValueError (with the text) otherwise."""
    if not _DATE.match(text):
        raise ValueError(f"{text!r} is not a YYYY-MM-DD date")
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a calendar date") from None


def iso_week(day: date) -> str:
    year, week, _ = day.isocalendar()
    return f"{year:04d}-W{week:02d}"


def parse_week(text: str) -> tuple[int, int]:
    """(ISO year, week) of ``YYYY-Www``; raises ValueError for a week the year does not have."""
    m = _WEEK.match(text)
    if not m:
        raise ValueError(f"{text!r} is not an ISO week YYYY-Www")
    year, week = int(m.group(1)), int(m.group(2))
    try:
        date.fromisocalendar(year, week, 1)
    except ValueError:
        raise ValueError(f"{text!r}: year {year} has no week {week}") from None
    return year, week


def week_monday(text: str) -> date:
    year, week = parse_week(text)
    return date.fromisocalendar(year, week, 1)


def weeks(first: str, last: str) -> list[str]:
    """Every ISO week from ``first`` to ``last`` inclusive (empty if last < first)."""
    start, stop = week_monday(first), week_monday(last)
    return [iso_week(start + timedelta(weeks=i)) for i in range((stop - start).days // 7 + 1)]


def days(first: date, last: date) -> list[date]:
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


def utc_date(ms: int) -> date:
    """The UTC calendar date of a Unix time in milliseconds (a block's time)."""
    return date(1970, 1, 1) + timedelta(days=ms // 86_400_000)
