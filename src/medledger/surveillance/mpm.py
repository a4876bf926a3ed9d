"""CIDARS-style moving percentile method (MPM).

China CDC's CIDARS compares the count of the current period with a percentile P_x of the counts
in comparable periods of previous years, with P_x set per disease (and tuned per province)
[Yang et al., WPSAR 2011;2(1):10-15; Zhang et al., Chin J Prev Med 2014;48(4):265-9]. R's
``surveillance`` has no counterpart, so this module defines the method exactly:

* reference weeks: the ``farrington`` window, r_i − w .. r_i + w for i = 1..b, where r_i is k
  moved back i years (k − 52i undated; by calendar date, snapped to the same weekday, dated);
  weeks before the series are dropped;
* U_k = the ``percentile``-th percentile of the reference counts, by linear interpolation
  between order statistics (R ``quantile`` type 7, numpy "linear"): with the n sorted counts
  x_(1..n) and h = (n − 1)·percentile/100, U = x_(⌊h⌋+1) + (h − ⌊h⌋)(x_(⌊h⌋+2) − x_(⌊h⌋+1));
* alarm iff y_k > U_k; undefined (U NA) when no reference week is in the series.

Thresholds per disease and region come from ``MpmThresholds``.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from medledger.surveillance.errors import SurveillanceError
from medledger.surveillance.reference import farrington_window
from medledger.surveillance.series import Detection, WeekRange, WeekSeries


@dataclass(frozen=True)
class MpmControl:
    """b years back, half-window w weeks, threshold percentile (0–100)."""

    b: int = 3
    w: int = 1
    percentile: float = 80.0

    def __post_init__(self) -> None:
        if self.b < 1 or self.w < 0 or not 0.0 <= self.percentile <= 100.0:
            raise SurveillanceError(
                f"b = {self.b}, w = {self.w}, percentile = {self.percentile}; want b >= 1, "
                "w >= 0, 0 <= percentile <= 100")


@dataclass(frozen=True)
class MpmThresholds:
    """Percentiles per (disease, region), per disease, else the default.

    The most specific entry wins: (disease, region), then (disease, any region), then
    ``default``.
    """

    default: float = 80.0
    by_disease: dict[str, float] = field(default_factory=dict)
    by_disease_region: dict[tuple[str, str], float] = field(default_factory=dict)

    def percentile(self, disease: str | None, region: str | None) -> float:
        if disease is not None and region is not None:
            hit = self.by_disease_region.get((disease, region))
            if hit is not None:
                return hit
        if disease is not None and disease in self.by_disease:
            return self.by_disease[disease]
        return self.default

    def control(self, base: MpmControl, disease: str | None, region: str | None) -> MpmControl:
        return replace(base, percentile=self.percentile(disease, region))

    @classmethod
    def parse_csv(cls, text: str, default: float = 80.0) -> MpmThresholds:
        """Columns ``disease``, ``region`` (empty = every region), ``percentile``."""
        by_disease: dict[str, float] = {}
        by_pair: dict[tuple[str, str], float] = {}
        for i, row in enumerate(csv.DictReader(io.StringIO(text)), start=1):
            try:
                disease, region = row["disease"].strip(), (row["region"] or "").strip()
                value = float(row["percentile"])
            except (KeyError, ValueError, AttributeError) as exc:
                raise SurveillanceError(
                    f"thresholds row {i}: {exc!r}; want disease,region,percentile") from None
            if not disease or not 0.0 <= value <= 100.0:
                raise SurveillanceError(
                    f"thresholds row {i}: disease {disease!r}, percentile {value}; want a "
                    "disease and 0 <= percentile <= 100")
            if region:
                by_pair[(disease, region)] = value
            else:
                by_disease[disease] = value
        return cls(default, by_disease, by_pair)

    @classmethod
    def read_csv(cls, path: Path | str, default: float = 80.0) -> MpmThresholds:
        return cls.parse_csv(Path(path).read_text(encoding="utf-8"), default)


def mpm(series: WeekSeries, rng: WeekRange, control: MpmControl = MpmControl()) -> Detection:
    """Run the moving percentile method on weeks ``rng``."""
    rng.check(len(series))
    y = series.observed
    weeks = rng.weeks()
    upper = np.full(weeks.size, np.nan)
    for i, k in enumerate(weeks):
        ref = farrington_window(int(k), control.b, control.w, series.dates)
        if ref.size:
            upper[i] = float(np.percentile(y[ref - 1], control.percentile, method="linear"))
    yk = y[weeks - 1]
    alarm = np.where(np.isnan(upper), np.nan, (yk > upper).astype(np.float64))
    return Detection.from_float_alarm(weeks, yk, upper, alarm)
