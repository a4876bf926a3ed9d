"""``medledger surveillance detect``: run one aberration-detection method on a week series CSV.

Options carry R ``surveillance``'s control names (``--b``, ``--noPeriods``, ...), so a run can be
compared with R one to one; see docs/surveillance.md.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Any

import typer

from medledger.cli.common import fail
from medledger.surveillance import MpmThresholds, SurveillanceError, WeekRange, detect
from medledger.surveillance import read_csv as read_series
from medledger.surveillance import write_csv as write_result

app = typer.Typer(help="Aberration detection on weekly case counts.", no_args_is_help=True)

class Method(StrEnum):
    EARS_C1 = "ears-c1"
    EARS_C2 = "ears-c2"
    EARS_C3 = "ears-c3"
    FARRINGTON = "farrington"
    FARRINGTON_FLEXIBLE = "farrington-flexible"
    CUSUM = "cusum"
    MPM = "mpm"


def _limit54(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    parts = text.split(",")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
        raise SurveillanceError(f"limit54 must be CASES,WEEKS; got {text!r}")
    return int(parts[0]), int(parts[1])


def _m(text: str | None) -> float | str | None:
    if text is None or text == "glm":
        return text
    try:
        return float(text)
    except ValueError:
        raise SurveillanceError(f"m must be a number or 'glm'; got {text!r}") from None


@app.command("detect")
def detect_cmd(
    method: Method = typer.Option(..., "--method", help="Detection method."),
    input_path: Path = typer.Option(..., "--input", help="Series CSV: week_index,date,observed."),
    week_range: str = typer.Option(..., "--range", help="Weeks to test, FIRST:LAST (1-based)."),
    output: Path = typer.Option(..., "--output", help="Result CSV: week_index,observed,"
                                "upperbound,alarm."),
    r_compatible: bool = typer.Option(False, "--r-compatible", help="Reproduce R surveillance "
                                      "1.20.3 where the product differs (C3, flexible, cusum)."),
    alpha: float | None = typer.Option(None, "--alpha", help="Significance level (R alpha)."),
    baseline: int | None = typer.Option(None, "--baseline", help="EARS baseline weeks."),
    min_sigma: float | None = typer.Option(None, "--minSigma", help="EARS minimum sigma."),
    b: int | None = typer.Option(None, "--b", help="Years back (Farrington, MPM)."),
    w: int | None = typer.Option(None, "--w", help="Half-window in weeks (Farrington, MPM)."),
    reweight: bool | None = typer.Option(None, "--reweight/--no-reweight",
                                         help="Down-weight past outbreaks (Farrington)."),
    trend: bool | None = typer.Option(None, "--trend/--no-trend",
                                      help="Allow a time trend (Farrington)."),
    limit54: str | None = typer.Option(None, "--limit54", help="CASES,WEEKS low-count rule."),
    powertrans: str | None = typer.Option(None, "--powertrans", help="2/3, 1/2 or none."),
    weights_threshold: float | None = typer.Option(None, "--weightsThreshold",
                                                   help="Reweighting threshold (flexible)."),
    p_threshold_trend: float | None = typer.Option(None, "--pThresholdTrend",
                                                   help="Trend p-value threshold (flexible)."),
    no_periods: int | None = typer.Option(None, "--noPeriods",
                                          help="Seasonal factor levels (flexible)."),
    past_weeks: int | None = typer.Option(None, "--pastWeeksNotIncluded",
                                          help="Recent weeks left out (flexible)."),
    threshold_method: str | None = typer.Option(None, "--thresholdMethod",
                                                help="delta, nbPlugin or muan (flexible)."),
    k: float | None = typer.Option(None, "--k", help="CUSUM reference value."),
    h: float | None = typer.Option(None, "--h", help="CUSUM decision threshold."),
    m: str | None = typer.Option(None, "--m", help="CUSUM expected count: number or glm."),
    trans: str | None = typer.Option(None, "--trans", help="CUSUM standardisation."),
    reset: bool | None = typer.Option(None, "--reset/--no-reset",
                                      help="CUSUM restarts at 0 after an alarm."),
    percentile: float | None = typer.Option(None, "--percentile", help="MPM percentile."),
    thresholds: Path | None = typer.Option(None, "--thresholds",
                                           help="MPM CSV: disease,region,percentile."),
    disease: str | None = typer.Option(None, "--disease", help="Disease, for --thresholds."),
    region: str | None = typer.Option(None, "--region", help="Region, for --thresholds."),
) -> None:
    """Run one detection method on weeks FIRST:LAST of a series and write the result CSV."""
    try:
        given: dict[str, Any] = {
            "alpha": alpha, "baseline": baseline, "minSigma": min_sigma, "b": b, "w": w,
            "reweight": reweight, "trend": trend, "limit54": _limit54(limit54),
            "powertrans": powertrans, "weightsThreshold": weights_threshold,
            "pThresholdTrend": p_threshold_trend, "noPeriods": no_periods,
            "pastWeeksNotIncluded": past_weeks, "thresholdMethod": threshold_method,
            "k": k, "h": h, "m": _m(m), "trans": trans, "reset": reset,
            "percentile": percentile, "disease": disease, "region": region,
            "thresholds": (MpmThresholds.read_csv(thresholds, percentile or 80.0)
                           if thresholds else None),
        }
        options = {key: value for key, value in given.items() if value is not None}
        if r_compatible:
            options["r_compatible"] = True
        result = detect(method.value, read_series(input_path), WeekRange.parse(week_range),
                        options)
    except SurveillanceError as exc:
        fail(exc)
    except OSError as exc:
        fail(SurveillanceError(f"cannot read {exc.filename}: {exc.strerror}"))
    write_result(result, output)
