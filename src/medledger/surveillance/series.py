"""Week series in and detection results out: the data shapes shared by every method, and CSV I/O.

Input CSV columns: ``week_index`` (1, 2, …, n in order), ``date`` (ISO date of the week's
Monday, or empty in every row), ``observed`` (non-negative integer count).
Output CSV columns: ``week_index``, ``observed``, ``upperbound`` (empty where undefined, R's NA),
``alarm`` (1 or 0, empty where undefined).

Weeks are 1-based everywhere, as in R.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np
import numpy.typing as npt

from medledger.surveillance.errors import SurveillanceError

Counts = npt.NDArray[np.float64]
Flags = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class WeekSeries:
    """Weekly counts, with one Monday per week (7 days apart) in ``dates`` or no dates."""

    observed: Counts
    dates: tuple[date, ...] | None = None

    def __post_init__(self) -> None:
        obs = self.observed
        if obs.ndim != 1 or obs.size == 0:
            raise SurveillanceError(f"observed must be a non-empty vector; got shape {obs.shape}")
        if not np.all(np.isfinite(obs)) or np.any(obs < 0) or np.any(obs != np.floor(obs)):
            raise SurveillanceError("observed counts must be non-negative integers")
        if self.dates is not None:
            if len(self.dates) != obs.size:
                raise SurveillanceError(
                    f"got {len(self.dates)} dates for {obs.size} weeks; want one per week")
            for i, (a, b) in enumerate(zip(self.dates, self.dates[1:], strict=False)):
                if (b - a).days != 7:
                    raise SurveillanceError(
                        f"dates of weeks {i + 1} and {i + 2} are {a} and {b}; want 7 days apart")

    def __len__(self) -> int:
        return int(self.observed.size)


@dataclass(frozen=True)
class WeekRange:
    """Weeks ``first..last`` (1-based, inclusive) to test."""

    first: int
    last: int

    @classmethod
    def parse(cls, text: str) -> WeekRange:
        parts = text.split(":")
        if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
            raise SurveillanceError(f"range must be FIRST:LAST (1-based weeks); got {text!r}")
        return cls(int(parts[0]), int(parts[1]))

    def check(self, n: int) -> None:
        """Requires 1 <= first <= last <= n."""
        if not 1 <= self.first <= self.last <= n:
            raise SurveillanceError(
                f"range {self.first}:{self.last} is outside the series; want 1 <= FIRST <= LAST"
                f" <= {n}")

    def weeks(self) -> npt.NDArray[np.int64]:
        return np.arange(self.first, self.last + 1, dtype=np.int64)


@dataclass(frozen=True)
class Detection:
    """Result for weeks ``week_index``: upper bound (NaN = undefined) and alarm.

    ``alarm[i]`` is meaningful only where ``defined[i]``; elsewhere R reports NA.
    """

    week_index: npt.NDArray[np.int64]
    observed: Counts
    upperbound: Counts
    alarm: Flags
    defined: Flags

    @classmethod
    def from_float_alarm(cls, weeks: npt.NDArray[np.int64], observed: Counts,
                         upperbound: Counts, alarm: Counts) -> Detection:
        """Build from an alarm vector holding 1.0, 0.0 or NaN (undefined)."""
        defined = ~np.isnan(alarm)
        return cls(weeks, observed, upperbound, np.where(defined, alarm, 0.0) > 0, defined)

    def alarm_weeks(self) -> list[int]:
        return [int(w) for w in self.week_index[self.alarm & self.defined]]


def read_csv(path: Path | str) -> WeekSeries:
    """Read a week series (see the module docstring for the columns)."""
    text = Path(path).read_text(encoding="utf-8")
    return parse_csv(text)


def parse_csv(text: str) -> WeekSeries:
    rows = list(csv.DictReader(io.StringIO(text)))
    want = {"week_index", "date", "observed"}
    if not rows or not want <= set(rows[0]):
        got = sorted(rows[0]) if rows else []
        raise SurveillanceError(f"series CSV columns are {got}; want {sorted(want)}")
    observed: list[float] = []
    dates: list[date | None] = []
    for i, row in enumerate(rows, start=1):
        try:
            index = int(row["week_index"])
            count = float(row["observed"])
            day = date.fromisoformat(row["date"]) if row["date"].strip() else None
        except ValueError as exc:
            raise SurveillanceError(f"row {i}: {exc}") from None
        if index != i:
            raise SurveillanceError(f"row {i}: week_index is {index}; want {i}")
        if day is not None and day.weekday() != 0:
            raise SurveillanceError(f"row {i}: date {day} is not a Monday")
        observed.append(count)
        dates.append(day)
    present = [d for d in dates if d is not None]
    if present and len(present) != len(dates):
        raise SurveillanceError("date must be given in every row or in none")
    return WeekSeries(np.asarray(observed, dtype=np.float64),
                      tuple(present) if present else None)


def _fmt(x: float) -> str:
    return "" if math.isnan(x) else repr(float(x))


def format_csv(result: Detection) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["week_index", "observed", "upperbound", "alarm"])
    for w, y, u, a, d in zip(result.week_index, result.observed, result.upperbound,
                             result.alarm, result.defined, strict=True):
        writer.writerow([int(w), int(y), _fmt(float(u)), (str(int(a)) if d else "")])
    return out.getvalue()


def write_csv(result: Detection, path: Path | str) -> None:
    Path(path).write_text(format_csv(result), encoding="utf-8")
