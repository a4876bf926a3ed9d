"""Every detection method against R's ``surveillance`` package, run in the same test session.

The test generates seeded synthetic weekly series (Poisson and negative binomial, seasonal,
with trend, injected outbreaks, long runs of zeros, dated and undated, short ones), writes them
as the CLI's input CSV, then

* writes ONE R script that runs every case with ``earsC``, ``farrington``,
  ``farringtonFlexible`` or ``cusum`` (R start-up costs seconds, so cases are batched), and
* runs ``medledger surveillance detect --r-compatible`` on the same CSV for every case,

and compares: alarms identical (including undefined), upper bounds undefined in the same weeks
and otherwise within 1e-6 relative. Cases where R stops with an error must fail in ours too.
Nothing expected is hard-coded: every reference value comes from R in this run.

CUSUM with reset has no R switch; the R side restarts ``cusum`` (with the same m) after every
alarm, which is what resetting means.

The moving percentile method (``mpm``, CIDARS) has no counterpart in ``surveillance``; the R side
computes it from its definition in base R: the reference weeks of ``algo.farrington`` (k − 52i ±
w undated; dated: R's ``seq(by = "-1 year")`` then the nearest date with week k's weekday), and
``quantile(type = 7)`` of their counts — so the windows, the calendar and the percentile are
checked against R's own date and quantile code, not against ours.
"""

from __future__ import annotations

import csv
import math
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from medledger.cli import surveillance as surveillance_cli
from tests.support.services import missing

pytestmark = [pytest.mark.integration, pytest.mark.rref, pytest.mark.slow]

REL_TOL = 1e-6
R_TIMEOUT_S = 300


# ---------------------------------------------------------------- synthetic series


@dataclass(frozen=True)
class Series:
    observed: np.ndarray
    start: date | None = None  # Monday of week 1, or undated


def _mean(n: int, base: float, amp: float, slope: float) -> np.ndarray:
    t = np.arange(n)
    return base * np.exp(amp * np.sin(2 * np.pi * t / 52) + amp / 2 * np.cos(2 * np.pi * t / 52)
                         + slope * t)


def _nb(rng: np.random.Generator, mu: np.ndarray, size: float) -> np.ndarray:
    return rng.negative_binomial(size, size / (size + mu)).astype(np.float64)


def _outbreak(y: np.ndarray, at: int, weeks: int, extra: float) -> np.ndarray:
    y = y.copy()
    y[at - 1: at - 1 + weeks] += np.round(extra * np.array([0.5, 1.0, 0.8, 0.4, 0.2])[:weeks])
    return y


def build_series() -> dict[str, Series]:
    rng = np.random.default_rng(20240607)
    monday = date(2010, 1, 4)  # week 322 is then Monday 29 Feb 2016
    assert monday + timedelta(weeks=321) == date(2016, 2, 29)
    seasonal = rng.poisson(_mean(364, 8, 0.6, 0.0005)).astype(np.float64)
    nb_dated = _nb(rng, _mean(400, 20, 0.5, 0.0), 1.5)
    large = _nb(rng, _mean(380, 200, 0.4, 0.002), 30)
    trend = rng.poisson(_mean(370, 3, 0.3, 0.006)).astype(np.float64)
    sparse = rng.poisson(_mean(340, 0.3, 0.8, 0.0)).astype(np.float64)
    zeros_then = np.concatenate([np.zeros(40), rng.poisson(2, 30).astype(np.float64)])
    return {
        "seasonal": Series(_outbreak(seasonal, 318, 5, 30)),
        "nb_dated": Series(_outbreak(nb_dated, 322, 4, 60), monday),
        "large": Series(_outbreak(large, 360, 3, 150)),
        "trend": Series(_outbreak(trend, 350, 5, 25)),
        "sparse": Series(_outbreak(sparse, 320, 4, 8)),
        "sparse_dated": Series(_outbreak(sparse, 325, 3, 6), date(2009, 6, 1)),
        "zeros_then": Series(zeros_then),
        "all_zero": Series(np.zeros(300)),
        "short60": Series(rng.poisson(_mean(60, 6, 0.5, 0.0)).astype(np.float64)),
        "short14": Series(rng.poisson(4, 14).astype(np.float64)),
    }


SERIES = build_series()


# ---------------------------------------------------------------- cases


@dataclass(frozen=True)
class Case:
    name: str
    method: str
    series: str
    first: int
    last: int
    options: dict[str, Any] = field(default_factory=dict)
    r_error: bool = False  # R stops: ours must fail too
    r_last: int | None = None  # R needs a longer range (C3 with one week); compare ours only


def _ears_cases() -> Iterator[Case]:
    for m, first in (("c1", 8), ("c2", 10), ("c3", 12)):
        yield Case(f"ears-{m}-seasonal", f"ears-{m}", "seasonal", first, 364)
        yield Case(f"ears-{m}-sparse", f"ears-{m}", "sparse", first + 2, 340)
        yield Case(f"ears-{m}-zeros", f"ears-{m}", "zeros_then", first, 70)
        yield Case(f"ears-{m}-minsigma", f"ears-{m}", "sparse", first, 340, {"minSigma": 0.5})
        yield Case(f"ears-{m}-alpha", f"ears-{m}", "nb_dated", first, 400, {"alpha": 0.01})
        yield Case(f"ears-{m}-baseline5", f"ears-{m}", "large", first, 380, {"baseline": 5})
        yield Case(f"ears-{m}-baseline10", f"ears-{m}", "trend", first + 3, 370,
                   {"baseline": 10})
        yield Case(f"ears-{m}-short", f"ears-{m}", "short14", first, 14)
        yield Case(f"ears-{m}-too-early", f"ears-{m}", "seasonal", first - 1, 40, r_error=True)
    yield Case("ears-c3-one-week", "ears-c3", "seasonal", 200, 200, r_last=201)


def _farrington_cases() -> Iterator[Case]:
    yield Case("farrington-default", "farrington", "seasonal", 312, 325)
    yield Case("farrington-dated-feb29", "farrington", "nb_dated", 316, 330)
    yield Case("farrington-large", "farrington", "large", 352, 366, {"b": 3, "w": 2,
                                                                      "alpha": 0.01})
    yield Case("farrington-trend", "farrington", "trend", 345, 358)
    yield Case("farrington-trend-b2", "farrington", "trend", 340, 355, {"b": 2})
    yield Case("farrington-plain", "farrington", "trend", 340, 355,
               {"reweight": False, "trend": False})
    yield Case("farrington-sqrt", "farrington", "seasonal", 310, 325, {"powertrans": "1/2"})
    yield Case("farrington-none", "farrington", "large", 350, 365, {"powertrans": "none"})
    yield Case("farrington-sparse", "farrington", "sparse", 312, 326)
    yield Case("farrington-sparse-limit", "farrington", "sparse_dated", 318, 332,
               {"limit54": (3, 2)})
    yield Case("farrington-short-b1", "farrington", "short60", 53, 60, {"b": 1})
    yield Case("farrington-all-zero", "farrington", "all_zero", 290, 295)


NOUFAILY = {"noPeriods": 10, "pastWeeksNotIncluded": 26, "pThresholdTrend": 1.0,
            "thresholdMethod": "nbPlugin"}


def _flexible_cases() -> Iterator[Case]:
    f = "farrington-flexible"
    yield Case("flexible-default", f, "seasonal", 312, 324)
    yield Case("flexible-noufaily", f, "seasonal", 314, 326, NOUFAILY)
    yield Case("flexible-dated-feb29", f, "nb_dated", 318, 330, NOUFAILY)
    yield Case("flexible-large-muan", f, "large", 355, 368, {**NOUFAILY,
                                                            "thresholdMethod": "muan"})
    yield Case("flexible-large-delta", f, "large", 350, 365, {**NOUFAILY,
                                                             "thresholdMethod": "delta"})
    yield Case("flexible-trend", f, "trend", 346, 358, {"noPeriods": 10,
                                                       "pastWeeksNotIncluded": 26})
    yield Case("flexible-no-reweight", f, "large", 360, 372, {**NOUFAILY, "reweight": False})
    yield Case("flexible-weights1", f, "seasonal", 315, 325, {"weightsThreshold": 1.0})
    yield Case("flexible-no-trend", f, "trend", 350, 360, {"trend": False, "noPeriods": 4})
    yield Case("flexible-b2", f, "trend", 348, 356, {**NOUFAILY, "b": 2})
    yield Case("flexible-alpha", f, "nb_dated", 330, 342, {**NOUFAILY, "alpha": 0.01,
                                                          "thresholdMethod": "muan"})
    yield Case("flexible-sqrt", f, "seasonal", 300, 310, {"powertrans": "1/2"})
    yield Case("flexible-none", f, "seasonal", 300, 310, {"powertrans": "none"})
    yield Case("flexible-sparse", f, "sparse_dated", 318, 330, NOUFAILY)
    yield Case("flexible-sparse-limit", f, "sparse", 318, 328, {**NOUFAILY, "limit54": (2, 3)})
    yield Case("flexible-pwni0", f, "seasonal", 320, 330, {"noPeriods": 10,
                                                          "pastWeeksNotIncluded": 0})
    yield Case("flexible-wide-window", f, "seasonal", 330, 336, {"w": 22, "noPeriods": 10,
                                                                "b": 3})
    yield Case("flexible-short-b1", f, "short60", 56, 60, {"b": 1})
    yield Case("flexible-all-zero", f, "all_zero", 290, 293, NOUFAILY)  # no convergence: NA
    yield Case("flexible-all-zero-plain", f, "all_zero", 290, 293)
    yield Case("flexible-missing-reference", f, "seasonal", 250, 260, r_error=True)


def _cusum_cases() -> Iterator[Case]:
    for trans in ("standard", "rossi", "anscombe", "anscombe2nd", "pearsonNegBin", "none"):
        for m in (None, "glm", 7.5):
            opts: dict[str, Any] = {"trans": trans} | ({} if m is None else {"m": m})
            yield Case(f"cusum-{trans}-{m}", "cusum", "seasonal", 200, 364, opts)
            last = 240 if trans == "none" else 364  # "none" alarms every week: R restarts
            yield Case(f"cusum-{trans}-{m}-reset", "cusum", "seasonal", 200, last,
                       opts | {"reset": True})
    yield Case("cusum-kh", "cusum", "nb_dated", 250, 400, {"k": 0.5, "h": 4.0, "reset": True})
    yield Case("cusum-negbin-alpha", "cusum", "large", 300, 380,
               {"trans": "pearsonNegBin", "alpha": 0.05})
    yield Case("cusum-sparse", "cusum", "sparse", 100, 340, {"reset": True})
    yield Case("cusum-zero-mean", "cusum", "zeros_then", 30, 70)
    yield Case("cusum-from-week-1", "cusum", "seasonal", 1, 60)


def _mpm_cases() -> Iterator[Case]:
    yield Case("mpm-default", "mpm", "seasonal", 160, 364)
    yield Case("mpm-p90-dated-feb29", "mpm", "nb_dated", 270, 400,
               {"b": 5, "w": 2, "percentile": 90.0})
    yield Case("mpm-early-partial-windows", "mpm", "seasonal", 40, 120, {"b": 3, "w": 2})
    yield Case("mpm-sparse-median", "mpm", "sparse", 150, 340, {"percentile": 50.0})
    yield Case("mpm-sparse-dated-p75", "mpm", "sparse_dated", 200, 340,
               {"b": 4, "w": 1, "percentile": 75.0})
    yield Case("mpm-extremes", "mpm", "large", 300, 380, {"b": 2, "w": 0, "percentile": 100.0})


CASES: list[Case] = [*_ears_cases(), *_farrington_cases(), *_flexible_cases(),
                     *_cusum_cases(), *_mpm_cases()]


# ---------------------------------------------------------------- R side


def _r_value(value: Any) -> str:
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, tuple):
        return "c(" + ", ".join(str(v) for v in value) + ")"
    if isinstance(value, str):
        return f'"{value}"'
    return repr(value)


def _r_control(case: Case, last: int) -> str:
    opts = dict(case.options)
    opts.pop("reset", None)
    if case.method.startswith("ears-"):
        opts["method"] = case.method[-2:].upper()
    parts = [f"{k} = {_r_value(v)}" for k, v in opts.items()]
    parts.append(f"range = {case.first}:{last}")
    return "list(" + ", ".join(parts) + ")"


R_PRELUDE = r"""
if (!requireNamespace("surveillance", quietly = TRUE)) quit(status = 3)
suppressMessages(library(surveillance))
args <- commandArgs(TRUE); dir <- args[1]
writeLines(c(R.version.string, as.character(packageVersion("surveillance"))),
           file.path(dir, "versions.txt"))
load_sts <- function(name) {
  d <- read.csv(file.path(dir, paste0(name, ".csv")), colClasses = "character")
  y <- as.numeric(d$observed)
  if (all(d$date == "")) return(sts(observed = y, start = c(2000, 1), frequency = 52))
  sts(observed = y, start = c(2000, 1), frequency = 52, epoch = as.Date(d$date))
}
fmt <- function(x) ifelse(is.na(x), "", sprintf("%.17g", x))
save_result <- function(name, weeks, y, ub, al) {
  out <- data.frame(week_index = weeks, observed = y, upperbound = fmt(ub),
                    alarm = ifelse(is.na(al), "", as.character(as.integer(al))))
  write.csv(out, file.path(dir, paste0(name, ".r.csv")), row.names = FALSE, quote = FALSE)
}
save_sts <- function(name, r, ctl)
  save_result(name, ctl$range, as.vector(observed(r)), as.vector(upperbound(r)),
              as.vector(alarms(r)))
# cusum restarted (same m) after every alarm: R's cusum has no reset switch
cusum_reset <- function(name, s, ctl) {
  rng <- ctl$range
  m <- surveillance:::algo.cusum(surveillance:::sts2disProg(s), control = ctl)$control$m
  m <- rep_len(m, length(rng))
  ub <- c(); al <- c(); start <- 1
  while (start <= length(rng)) {
    sub <- ctl; sub$range <- rng[start:length(rng)]; sub$m <- m[start:length(rng)]
    r <- cusum(s, control = sub)
    a <- as.vector(alarms(r)); u <- as.vector(upperbound(r))
    hit <- which(a == 1)[1]
    stop_at <- if (is.na(hit)) length(a) else hit
    ub <- c(ub, u[1:stop_at]); al <- c(al, a[1:stop_at]); start <- start + stop_at
  }
  save_result(name, rng, observed(s)[rng], ub, al)
}
# CIDARS moving percentile, from its definition (R has no such method)
mpm_ref <- function(name, sname, first, last, b, w, p) {
  d <- read.csv(file.path(dir, paste0(sname, ".csv")), colClasses = "character")
  y <- as.numeric(d$observed); dated <- !all(d$date == "")
  dates <- if (dated) as.Date(d$date) else NULL
  ub <- c(); al <- c()
  for (k in first:last) {
    idx <- c()
    for (i in 1:b) {
      if (dated) {
        centre <- seq(dates[k], by = "-1 year", length.out = i + 1)[i + 1]
        for (j in -w:w) {
          day <- centre + 7 * j
          fwd <- (as.numeric(dates[k]) - as.numeric(day)) %% 7
          day <- if (fwd < 7 - fwd) day + fwd else day - (7 - fwd)
          pos <- match(day, dates)
          if (!is.na(pos)) idx <- c(idx, pos)
        }
      } else {
        r <- k - 52 * i
        idx <- c(idx, Filter(function(j) j > 0, (r - w):(r + w)))
      }
    }
    if (length(idx) == 0) { ub <- c(ub, NA); al <- c(al, NA) } else {
      u <- unname(quantile(y[idx], p / 100, type = 7))
      ub <- c(ub, u); al <- c(al, y[k] > u)
    }
  }
  save_result(name, first:last, y[first:last], ub, al)
}
run_case <- function(name, expr) {
  res <- tryCatch(suppressWarnings(expr), error = function(e) e)
  if (inherits(res, "error"))
    writeLines(conditionMessage(res), file.path(dir, paste0(name, ".r.err")))
}
"""

R_FUNCTION = {"farrington": "farrington", "farrington-flexible": "farringtonFlexible",
              "cusum": "cusum"}


def _r_case(case: Case) -> str:
    last = case.r_last or case.last
    ctl = _r_control(case, last)
    head = f'run_case("{case.name}", {{ s <- load_sts("{case.series}"); ctl <- {ctl}; '
    if case.options.get("reset"):
        return head + f'cusum_reset("{case.name}", s, ctl) }})\n'
    if case.method == "mpm":
        o = {"b": 3, "w": 1, "percentile": 80.0} | case.options
        return (f'run_case("{case.name}", mpm_ref("{case.name}", "{case.series}", {case.first}, '
                f'{last}, {o["b"]}, {o["w"]}, {o["percentile"]!r}))\n')
    fn = "earsC" if case.method.startswith("ears-") else R_FUNCTION[case.method]
    body = head + f'r <- {fn}(s, control = ctl); save_sts("{case.name}", r, ctl) }})\n'
    if case.r_last is not None:  # also record that R stops on the shorter range
        ctl_short = _r_control(case, case.last)
        body += (f'run_case("{case.name}-own-range", {{ s <- load_sts("{case.series}"); '
                 f'r <- {fn}(s, control = {ctl_short}); '
                 f'save_sts("{case.name}-own-range", r, {ctl_short}) }})\n')
    return body


# ---------------------------------------------------------------- our side


def _cli_args(case: Case, directory: Path) -> list[str]:
    args = ["surveillance", "detect", "--method", case.method,
            "--input", str(directory / f"{case.series}.csv"),
            "--range", f"{case.first}:{case.last}",
            "--output", str(directory / f"{case.name}.py.csv"), "--r-compatible"]
    for key, value in case.options.items():
        if isinstance(value, bool):
            args.append(f"--{key}" if value else f"--no-{key}")
        elif isinstance(value, tuple):
            args += [f"--{key}", ",".join(str(v) for v in value)]
        else:
            args += [f"--{key}", str(value)]
    return args


def _write_series(directory: Path) -> None:
    for name, s in SERIES.items():
        lines = ["week_index,date,observed"]
        for i, y in enumerate(s.observed):
            day = "" if s.start is None else (s.start + timedelta(weeks=i)).isoformat()
            lines.append(f"{i + 1},{day},{int(y)}")
        (directory / f"{name}.csv").write_text("\n".join(lines) + "\n")


@dataclass
class Run:
    directory: Path
    ours: dict[str, tuple[int, str]]  # exit code, output
    versions: list[str]
    entry_point: subprocess.CompletedProcess[str]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    rscript = shutil.which("Rscript")
    if rscript is None:
        missing("Rscript not on PATH (Debian: apt-get install r-cran-surveillance)")
        raise AssertionError  # unreachable
    directory = tmp_path_factory.mktemp("surveillance-vs-r")
    _write_series(directory)
    script = directory / "cases.R"
    script.write_text(R_PRELUDE + "".join(_r_case(c) for c in CASES))
    r_proc = subprocess.Popen([rscript, "--vanilla", str(script), str(directory)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    entry_case = next(c for c in CASES if c.name == "ears-c3-seasonal")
    entry_args = _cli_args(entry_case, directory)
    entry_args[entry_args.index("--output") + 1] = str(directory / "entry-point.csv")
    entry = subprocess.Popen([sys.executable, "-m", "medledger.cli.main", *entry_args],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    root = typer.Typer()
    root.add_typer(surveillance_cli.app, name="surveillance")
    runner = CliRunner()
    ours = {}
    for case in CASES:
        result = runner.invoke(root, _cli_args(case, directory))
        ours[case.name] = (result.exit_code, result.output)
    try:
        _r_out, r_err = r_proc.communicate(timeout=R_TIMEOUT_S)
        e_out, e_err = entry.communicate(timeout=R_TIMEOUT_S)
    finally:
        r_proc.kill()
        entry.kill()
    if r_proc.returncode == 3:
        missing("R package surveillance is not installed (apt-get install r-cran-surveillance)")
    assert r_proc.returncode == 0, f"R failed:\n{r_err[-3000:]}"
    versions = (directory / "versions.txt").read_text().splitlines()
    entry_result = subprocess.CompletedProcess(entry.args, entry.returncode, e_out, e_err)
    return Run(directory, ours, versions, entry_result)


def _read(path: Path) -> list[dict[str, str]]:
    with path.open() as f:
        return list(csv.DictReader(f))


def _agree(ours: list[dict[str, str]], theirs: list[dict[str, str]]) -> list[str]:
    """Disagreements, one line each (empty when the results agree)."""
    problems = []
    if [r["week_index"] for r in ours] != [r["week_index"] for r in theirs]:
        return ["weeks differ"]
    for a, b in zip(ours, theirs, strict=True):
        week = a["week_index"]
        if int(a["observed"]) != int(float(b["observed"])):
            problems.append(f"week {week}: observed {a['observed']} vs R {b['observed']}")
        if a["alarm"] != b["alarm"]:
            problems.append(f"week {week}: alarm {a['alarm']!r} vs R {b['alarm']!r}")
        ua, ub = a["upperbound"], b["upperbound"]
        if (ua == "") != (ub == ""):
            problems.append(f"week {week}: upperbound {ua!r} vs R {ub!r}")
        elif ua:
            x, y = float(ua), float(ub)
            if not (x == y or (math.isfinite(y) and abs(x - y) <= REL_TOL * abs(y))):
                problems.append(f"week {week}: upperbound {x!r} vs R {y!r}")
    return problems


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_agrees_with_r(run: Run, case: Case) -> None:
    code, output = run.ours[case.name]
    r_err = run.directory / f"{case.name}.r.err"
    if case.r_error:
        assert r_err.exists(), "R was expected to stop on this case but did not"
        assert code == 2 and "bad_args" in output, f"R stops ({r_err.read_text()!r}); ours: "\
            f"exit {code}, {output!r}"
        return
    assert not r_err.exists(), f"R failed: {r_err.read_text() if r_err.exists() else ''}"
    assert code == 0, output
    ours = _read(run.directory / f"{case.name}.py.csv")
    theirs = _read(run.directory / f"{case.name}.r.csv")
    if case.r_last is not None:
        theirs = theirs[: len(ours)]
    problems = _agree(ours, theirs)
    assert not problems, f"{len(problems)} disagreements with R:\n" + "\n".join(problems[:20])


def test_cases_raise_alarms_and_cover_undefined_results(run: Run) -> None:
    """The comparison is not vacuous: R raises alarms and reports NA bounds in these cases."""
    alarms = undefined_bounds = undefined_alarms = 0
    for case in CASES:
        path = run.directory / f"{case.name}.r.csv"
        if path.exists():
            rows = _read(path)
            alarms += sum(r["alarm"] == "1" for r in rows)
            undefined_bounds += sum(r["upperbound"] == "" for r in rows)
            undefined_alarms += sum(r["alarm"] == "" for r in rows)
    assert alarms >= 100 and undefined_bounds >= 10 and undefined_alarms >= 10, (
        alarms, undefined_bounds, undefined_alarms)


def test_r_stops_on_a_one_week_c3_range(run: Run) -> None:
    """R's earsC C3 fails on a one-week range (a documented difference; ours computes it)."""
    assert (run.directory / "ears-c3-one-week-own-range.r.err").exists()
    assert run.ours["ears-c3-one-week"][0] == 0


def test_entry_point_writes_the_same_result(run: Run) -> None:
    """The installed ``medledger`` command (not only the sub-app) honours the contract."""
    proc = run.entry_point
    assert proc.returncode == 0, proc.stderr
    ours = _read(run.directory / "entry-point.csv")
    theirs = _read(run.directory / "ears-c3-seasonal.r.csv")
    assert not _agree(ours, theirs)


def test_reports_r_versions(run: Run) -> None:
    r_version, package_version = run.versions
    assert r_version.startswith("R version") and package_version.count(".") == 2
    if os.environ.get("MEDLEDGER_SHOW_R_VERSION"):
        print(r_version, "surveillance", package_version)
