"""``medledger bench surveillance``: the detection figures issue 7 asks for, on this machine.

* **Improved Farrington, daily run**: 100 districts × 40 diseases = 4,000 weekly series of six
  years (313 weeks, seasonal negative-binomial counts, seeded), the last week of each tested
  with the monitor's detector (Noufaily configuration; the red level, α = 0.01, re-run where the
  yellow level alarms), spread over ``processes`` worker processes. Target ≤ 60 s.
* **EARS C1, C2, C3 over 10,000,000 series-days**: 4,000 daily series of 2,500 days. Each
  method runs once over all series laid end to end (``ears_c`` unchanged); results whose
  baseline window reaches into the previous series are dropped, so every kept result equals a
  per-series run (``check_ears_equivalence`` verifies that on a sample). Target ≤ 10 s.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt

from medledger.bench.machine import CpuWatch
from medledger.surveillance.ears import EarsControl, ears_c
from medledger.surveillance.monitor import DEFAULT_DETECTOR
from medledger.surveillance.series import WeekRange, WeekSeries

__all__ = ["BenchResult", "check_ears_equivalence", "ears_run", "farrington_run",
           "synthetic_series"]

EARS_FIRST = {"C1": 8, "C2": 10, "C3": 12}  # first testable day with baseline 7


@dataclass
class BenchResult:
    figures: dict[str, Any] = field(default_factory=dict)


def synthetic_series(n_series: int, length: int, period: float, seed: int) -> npt.NDArray[
        np.float64]:
    """Seeded seasonal negative-binomial counts, one row per series (mean 0.5..20)."""
    rng = np.random.default_rng(seed)
    t = np.arange(length)
    base = rng.uniform(0.5, 20.0, size=(n_series, 1))
    phase = rng.uniform(0, 2 * np.pi, size=(n_series, 1))
    mu = base * np.exp(0.5 * np.sin(2 * np.pi * t / period + phase))
    size = 5.0
    return rng.negative_binomial(size, size / (size + mu)).astype(np.float64)


def _flexible_chunk(args: tuple[npt.NDArray[np.float64], tuple[date, ...]]) -> tuple[int, int,
                                                                                    int]:
    from medledger.surveillance.detect import detect

    rows, dates = args
    n = rows.shape[1]
    rng = WeekRange(n, n)
    yellow = red = undefined = 0
    for y in rows:
        series = WeekSeries(y, dates)
        d = detect(DEFAULT_DETECTOR.method, series, rng, DEFAULT_DETECTOR.options)
        if not d.defined[0]:
            undefined += 1
        elif d.alarm[0]:
            yellow += 1
            r = detect(DEFAULT_DETECTOR.method, series, rng, DEFAULT_DETECTOR.red_options)
            red += int(bool(r.alarm[0] and r.defined[0]))
    return yellow, red, undefined


def farrington_run(districts: int = 100, diseases: int = 40, weeks: int = 313,
                   processes: int | None = None, seed: int = 2026) -> dict[str, Any]:
    """Test the last week of districts × diseases weekly series; wall time in seconds."""
    n = districts * diseases
    data = synthetic_series(n, weeks, 52.18, seed)
    data[: n // 50, -1] += 40  # an outbreak in 2 % of the series
    last = date(2026, 11, 23)
    dates = tuple(last - timedelta(weeks=weeks - 1 - i) for i in range(weeks))
    procs = processes or os.cpu_count() or 1
    chunks = [(data[i::procs * 8], dates) for i in range(procs * 8)]
    watch = CpuWatch()
    t0 = time.perf_counter()
    with ProcessPoolExecutor(procs) as pool:
        parts = list(pool.map(_flexible_chunk, chunks))
    seconds = time.perf_counter() - t0
    other = watch.other_pct()
    yellow, red, undefined = (sum(p[i] for p in parts) for i in range(3))
    return {"series": n, "weeks": weeks, "processes": procs, "seconds": round(seconds, 2),
            "series_per_s": round(n / seconds, 1), "alarms": yellow, "red": red,
            "undefined": undefined, "other_cpu_pct": other, "target_s": 60,
            "ok": seconds <= 60}


def _ears_concatenated(flat: npt.NDArray[np.float64], n_series: int, length: int,
                       method: str) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.float64]]:
    first = EARS_FIRST[method]
    d = ears_c(flat, WeekRange(first, flat.size), EarsControl(method=method))  # type: ignore[arg-type]
    day = (d.week_index - 1) % length + 1  # 1-based day within its own series
    keep = day >= first
    return (d.alarm & d.defined)[keep], d.upperbound[keep]


def _ears_part(args: tuple[npt.NDArray[np.float64], int, str]) -> tuple[int, int]:
    rows, length, method = args
    alarms, _bounds = _ears_concatenated(rows.reshape(-1), rows.shape[0], length, method)
    return int(alarms.size), int(alarms.sum())


def ears_run(n_series: int = 4000, days: int = 2512, processes: int = 1,
             seed: int = 2026) -> dict[str, Any]:
    """C1, C2 and C3 over ``n_series`` daily series of ``days`` days each (2,512 days: at
    least 10,000,000 tested series-days for every method), series split over processes."""
    data = synthetic_series(n_series, days, 7.0, seed)
    procs = max(1, processes)
    parts = np.array_split(data, procs)
    out: dict[str, Any] = {"series": n_series, "days": days, "series_days": n_series * days,
                           "processes": procs}
    total = 0.0
    watch = CpuWatch()
    pool = ProcessPoolExecutor(procs) if procs > 1 else None
    mapper = pool.map if pool is not None else map
    try:
        list(mapper(_ears_part, [(p[:1], days, "C1") for p in parts]))  # warm up
        for method in ("C1", "C2", "C3"):
            t0 = time.perf_counter()
            got = list(mapper(_ears_part, [(p, days, method) for p in parts]))
            seconds = time.perf_counter() - t0
            total += seconds
            out[method] = {"seconds": round(seconds, 2), "tested": sum(g[0] for g in got),
                           "alarms": sum(g[1] for g in got), "ok": seconds <= 10}
    finally:
        if pool is not None:
            pool.shutdown()
    out["other_cpu_pct"] = watch.other_pct()
    out["all_three_seconds"] = round(total, 2)
    out["target_s"] = 10
    out["ok"] = all(out[m]["ok"] for m in ("C1", "C2", "C3"))
    return out


def check_ears_equivalence(n_series: int = 5, days: int = 60, seed: int = 1) -> bool:
    """True when the concatenated run equals per-series ``ears_c`` runs (every method)."""
    data = synthetic_series(n_series, days, 7.0, seed)
    for method in ("C1", "C2", "C3"):
        first = EARS_FIRST[method]
        alarms, bounds = _ears_concatenated(data.reshape(-1), n_series, days, method)
        per = [ears_c(row, WeekRange(first, days), EarsControl(method=method))
               for row in data]
        want_b = np.concatenate([p.upperbound for p in per])
        want_a = np.concatenate([p.alarm & p.defined for p in per])
        if not (np.array_equal(alarms, want_a) and np.allclose(bounds, want_b, rtol=0,
                                                               atol=1e-9, equal_nan=True)):
            return False
    return True
