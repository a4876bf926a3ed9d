"""The CDC's weekly detection run over the counts on the ledger, producing graded signals.

For every disease with reports, the monitor reads the zero-filled weekly series (``history``
weeks up to the week under test) of each stratum — every district, every region (districts
grouped by ``region_of``), every age band and every sex over the whole area — and tests the
last week with the configured method from ``medledger.surveillance`` (the detection functions
themselves, unchanged):

* diseases the catalog marks ``severe``: any case in a district is a **red** signal
  (``single-case``);
* otherwise the improved Farrington method in Noufaily's configuration by default, falling back
  to EARS C2 when the series is too short for it. A week whose count exceeds the bound at the
  method's own α is **yellow**; exceeding the bound at the stricter ``red`` α (0.01 instead of
  0.05 for Farrington, 0.0001 instead of 0.001 for EARS C1/C2) makes it **red**, the two-level
  grading ESSENCE uses (p < 0.01 red, p < 0.05 yellow).

With the CIDARS moving percentile method as the detector (``Detector("mpm", …)``), the
percentile can be set per disease and per region (``MonitorConfig.mpm_thresholds``, and
``mpm_red_thresholds`` for the red level): a district's series takes the entry of (disease,
district), else (disease, its region), else the disease's, else the detector's own percentile;
a region's series the (disease, region) entry; the age-band and sex series (every district) the
disease's. The percentile used is written into the signal's parameters, so ``recheck``
reproduces it.

A week with no case raises nothing. ``raise_args`` are the ``signals.raise_signal`` arguments;
``recheck`` recomputes a recorded signal from the ledger as it was at ``as_of_height``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import numpy as np

from medledger.ledger.state import HistoricalState, HistoryReader
from medledger.surveillance import views
from medledger.surveillance.calendar import week_monday
from medledger.surveillance.detect import detect
from medledger.surveillance.diseases import AGE_BANDS, SEXES
from medledger.surveillance.errors import SurveillanceError
from medledger.surveillance.mpm import MpmThresholds
from medledger.surveillance.series import WeekRange, WeekSeries
from medledger.surveillance.signals import signal_id

__all__ = ["DEFAULT_DETECTOR", "NOUFAILY", "Detector", "MonitorConfig", "MonitorRun",
           "recheck", "run"]

NOUFAILY: dict[str, Any] = {"noPeriods": 10, "pastWeeksNotIncluded": 26,
                            "pThresholdTrend": 1.0, "thresholdMethod": "nbPlugin"}
FLOAT_OPTIONS = frozenset({"alpha", "pThresholdTrend", "weightsThreshold", "minSigma", "k",
                           "h", "percentile"})


@dataclass(frozen=True)
class Detector:
    """A method with the options of its yellow and its red level (R's option names)."""

    method: str
    options: Mapping[str, Any]
    red_options: Mapping[str, Any]


DEFAULT_DETECTOR = Detector("farrington-flexible", NOUFAILY, {**NOUFAILY, "alpha": 0.01})
FALLBACK_DETECTOR = Detector("ears-c2", {}, {"alpha": 0.0001})


def prefix_regions(digits: int) -> Callable[[str], str | None]:
    """Regions from hierarchical district codes (e.g. 110105 → 1101 with ``digits=4``)."""
    return lambda district: district[:digits] if len(district) > digits else None


FOUR_DIGIT_REGIONS = prefix_regions(4)


@dataclass(frozen=True)
class MonitorConfig:
    history: int = 313  # weeks, six years
    detector: Detector = DEFAULT_DETECTOR
    fallback: Detector | None = FALLBACK_DETECTOR
    region_of: Callable[[str], str | None] = FOUR_DIGIT_REGIONS
    by_age_and_sex: bool = True
    mpm_thresholds: MpmThresholds | None = None  # yellow percentile per disease / region
    mpm_red_thresholds: MpmThresholds | None = None  # red percentile (at least the yellow one)


@dataclass
class MonitorRun:
    week: str
    as_of_height: int
    signals: list[dict[str, Any]] = field(default_factory=list)
    series_tested: int = 0
    skipped: list[str] = field(default_factory=list)
    seconds: float = 0.0


@dataclass(frozen=True)
class _Series:
    stratum: dict[str, str]
    districts: list[str]  # [] = every district of the disease
    counts: list[int]


def _params(options: Mapping[str, Any]) -> dict[str, Any]:
    """Options as canonical JSON allows them: floats as their shortest repr, tuples as lists."""
    out: dict[str, Any] = {}
    for k, v in options.items():
        out[k] = repr(float(v)) if isinstance(v, float) else list(v) if isinstance(v, tuple) \
            else v
    return out


def _options(params: Mapping[str, Any]) -> dict[str, Any]:
    """The inverse of ``_params``."""
    out: dict[str, Any] = {}
    for k, v in params.items():
        if k in FLOAT_OPTIONS or (k == "m" and v != "glm"):
            out[k] = float(v)
        elif isinstance(v, list):
            out[k] = tuple(v)
        else:
            out[k] = v
    return out


def _strata(state: views.Scanner, disease: str, first: str, week: str,
            config: MonitorConfig) -> tuple[list[str], list[_Series]]:
    dists = views.districts(state, disease)
    ws, cells = views.weekly_cells(state, disease, dists, first, week)
    n = len(ws)

    def total(ds: Sequence[str], strata: views.Strata = views.Strata()) -> list[int]:
        return [sum(strata.count(cells[d][i]) for d in ds) for i in range(n)]

    out = [_Series({"district": d}, [d], total([d])) for d in dists]
    regions: dict[str, list[str]] = {}
    for d in dists:
        region = config.region_of(d)
        if region is not None:
            regions.setdefault(region, []).append(d)
    out += [_Series({"region": r}, ds, total(ds)) for r, ds in sorted(regions.items())
            if len(ds) > 1]
    if config.by_age_and_sex:
        out += [_Series({"age_band": a}, [], total(dists, views.Strata(age_band=a)))
                for a in AGE_BANDS]
        out += [_Series({"sex": s}, [], total(dists, views.Strata(sex=s))) for s in SEXES]
    return ws, out


def _test(detector: Detector, counts: list[int], dates: tuple[date, ...],
          options: Mapping[str, Any]) -> tuple[float, bool]:
    """(bound, alarm) for the last week; raises SurveillanceError when the alarm is undefined
    (R's NA: e.g. the GLM did not converge). Too few cases (limit54) is a defined no-alarm."""
    series = WeekSeries(np.asarray(counts, dtype=np.float64), dates)
    d = detect(detector.method, series, WeekRange(len(counts), len(counts)), options)
    if not d.defined[0]:
        raise SurveillanceError("the method gives no alarm for the week (R's NA)")
    return float(d.upperbound[0]), bool(d.alarm[0])


def _evaluate(detector: Detector, s: _Series, dates: tuple[date, ...]) -> dict[str, Any] | None:
    """The signal's method fields if the last week alarms; raises SurveillanceError when the
    method cannot judge it (series too short, GLM not converged: R's NA)."""
    bound, fired = _test(detector, s.counts, dates, detector.options)
    if not fired or math.isnan(bound):
        return None
    red_bound, red = _test(detector, s.counts, dates, detector.red_options)
    red_text = None if math.isnan(red_bound) else repr(red_bound)
    return {"method": detector.method, "parameters": _params(detector.options),
            "red_parameters": _params(detector.red_options), "threshold": repr(bound),
            "red_threshold": red_text, "grade": "red" if red and red_text else "yellow"}


def _single_case(s: _Series) -> dict[str, Any] | None:
    if s.counts[-1] <= 0 or "district" not in s.stratum:
        return None
    return {"method": "single-case", "parameters": {}, "red_parameters": {}, "threshold": "0",
            "red_threshold": "0", "grade": "red"}


def run(state: views.Scanner, week: str, as_of_height: int,
        config: MonitorConfig = MonitorConfig()) -> MonitorRun:
    """Test ``week`` for every disease and stratum; return the signals to record."""
    t0 = time.perf_counter()
    out = MonitorRun(week, as_of_height)
    severe = views.catalog(state).severe()
    first = views.weeks_back(week, config.history)
    for disease in views.diseases_with_data(state):
        ws, strata = _strata(state, disease, first, week, config)
        dates = tuple(week_monday(w) for w in ws)
        for s in strata:
            if s.counts[-1] == 0:
                continue
            out.series_tested += 1
            found = _single_case(s) if disease in severe else _detect(config, s, dates, out,
                                                                      disease)
            if found is not None:
                out.signals.append({"disease": disease, "stratum": s.stratum,
                                    "districts": s.districts, "week": week,
                                    "first_week": ws[0], "counts": s.counts,
                                    "as_of_height": as_of_height, **found})
    out.seconds = time.perf_counter() - t0
    return out


def _percentile(table: MpmThresholds | None, default: float, disease: str,
                places: Sequence[str]) -> float:
    """The most specific entry of ``table`` for ``disease`` in the first of ``places`` that has
    one, else the disease's entry, else ``default``."""
    if table is None:
        return default
    for place in places:
        hit = table.by_disease_region.get((disease, place))
        if hit is not None:
            return hit
    return table.by_disease.get(disease, default)


def _mpm_detector(config: MonitorConfig, detector: Detector, s: _Series,
                  disease: str) -> Detector:
    """``detector`` with the percentiles of this disease and stratum (MPM only)."""
    if detector.method != "mpm" or (config.mpm_thresholds is None
                                    and config.mpm_red_thresholds is None):
        return detector
    district = s.stratum.get("district")
    region = s.stratum.get("region") or (config.region_of(district) if district else None)
    places = [p for p in (district, region) if p]
    yellow = _percentile(config.mpm_thresholds,
                         float(detector.options.get("percentile", 80.0)), disease, places)
    red = _percentile(config.mpm_red_thresholds,
                      float(detector.red_options.get("percentile", 95.0)), disease, places)
    return Detector(detector.method, {**detector.options, "percentile": yellow},
                    {**detector.red_options, "percentile": max(red, yellow)})


def _detect(config: MonitorConfig, s: _Series, dates: tuple[date, ...], out: MonitorRun,
            disease: str) -> dict[str, Any] | None:
    for detector in (config.detector, config.fallback):
        if detector is None:
            continue
        used = _mpm_detector(config, detector, s, disease)
        try:
            return _evaluate(used, s, dates)
        except SurveillanceError as exc:
            out.skipped.append(f"{disease} {s.stratum} {detector.method}: {exc.message}")
    return None


def signal_ids(signals: Sequence[dict[str, Any]]) -> list[str]:
    return [signal_id(s["disease"], s["stratum"], s["method"], s["week"]) for s in signals]


def recheck(store: HistoryReader, current: views.Scanner, sig: dict[str, Any]) -> list[str]:
    """Recompute a recorded signal from the ledger at its ``as_of_height``; the problems found
    (empty: the series, thresholds and grade are exactly reproduced)."""
    past = HistoricalState(store, sig["as_of_height"])
    ds = views.signal_districts(current, sig)
    stratum = sig["stratum"]
    strata = views.Strata(stratum.get("age_band"), stratum.get("sex"))
    ws, counts = views.weekly(past, sig["disease"], ds, sig["series"]["first_week"],
                              sig["week"], strata)
    problems = []
    if counts != sig["series"]["counts"]:
        problems.append(f"series differs from the ledger at height {sig['as_of_height']}")
    if sig["method"] == "single-case":
        return problems
    dates = tuple(week_monday(w) for w in ws)
    detector = Detector(sig["method"], _options(sig["parameters"]),
                        _options(sig["red_parameters"]))
    try:
        found = _evaluate(detector, _Series(stratum, ds, counts), dates)
    except SurveillanceError as exc:
        return [*problems, f"the method cannot judge the ledger's series: {exc.message}"]
    if found is None:
        return [*problems, "the method does not alarm on the ledger's series"]
    for key in ("threshold", "red_threshold", "grade"):
        if found[key] != sig[key]:
            problems.append(f"{key}: recorded {sig[key]}, recomputed {found[key]}")
    return problems
