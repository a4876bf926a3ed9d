"""EARS C1, C2 and C3 (Hutwagner et al., Emerg Infect Dis 2005;11(2); R ``surveillance::earsC``).

With B = ``baseline`` weeks, z = Φ⁻¹(1 − α), σ = max(sd, ``minSigma``) (sd with n − 1):

* C1: mean and sd of y[k−B .. k−1]; U_k = mean + z·σ; alarm y_k > U_k.
* C2: the same over y[k−B−2 .. k−3] (a two-week guard band).
* C3, textbook (the product's default; Fricker et al., Stat Med 2008;27:3407):
  C3_k = Σ_{i=k−2..k} max(0, C2_i − 1), alarm C3_k > z. The reported upper bound is the count
  at which C3_k would reach z given the two previous weeks, max(0, μ_k + σ_k(1 + z − S_k)) with
  S_k = max(0, C2_{k−2} − 1) + max(0, C2_{k−1} − 1); when S_k > z the previous weeks alone
  raise the alarm, whatever y_k.
* C3, as R 1.20.3 codes it (``r_compatible=True``): U_k = max(0, y_k + σ_k(z − S_k)), alarm
  y_k > U_k, i.e. (for σ_k > 0) S_k > z and y_k > 0; the current week's C2 is not used.

Zero-variance baselines follow R's IEEE arithmetic: x/0 = ±Inf, 0/0 = NaN, 0·Inf = NaN; NaN
propagates through max (R's ``pmax``), and a NaN bound gives an undefined alarm.
Default α: 0.001 for C1 and C2, 0.025 for C3 ("the choices made at the CDC", ?earsC).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from medledger.surveillance._scipy import stats
from medledger.surveillance.errors import SurveillanceError, check_alpha, check_choice
from medledger.surveillance.series import Counts, Detection, WeekRange

EarsMethod = Literal["C1", "C2", "C3"]
_LAG = {"C1": 0, "C2": 2, "C3": 4}  # extra weeks needed before the range, beyond the baseline
_CHUNK = 1 << 18


@dataclass(frozen=True)
class EarsControl:
    """R's ``earsC`` control list (``range`` is passed separately)."""

    method: EarsMethod = "C1"
    baseline: int = 7
    minSigma: float = 0.0
    alpha: float | None = None
    r_compatible: bool = False

    def __post_init__(self) -> None:
        check_choice("method", self.method, ("C1", "C2", "C3"))
        check_alpha(self.alpha)

    def z(self) -> float:
        alpha = self.alpha if self.alpha is not None else (0.025 if self.method == "C3"
                                                           else 0.001)
        return float(stats.norm.ppf(1.0 - alpha))


def _check(n: int, rng: WeekRange, control: EarsControl) -> None:
    rng.check(n)
    if control.baseline < 3:
        raise SurveillanceError(f"baseline is {control.baseline}; want >= 3 (as R)")
    if control.minSigma < 0:
        raise SurveillanceError(f"minSigma is {control.minSigma}; want >= 0")
    need = control.baseline + _LAG[control.method] + 1
    if rng.first < need:
        raise SurveillanceError(
            f"EARS {control.method} with baseline {control.baseline} can test weeks from "
            f"{need}; range starts at {rng.first}")


def baseline_stats(y: Counts, weeks: np.ndarray, baseline: int, guard: int,
                   min_sigma: float) -> tuple[Counts, Counts]:
    """Mean and max(sd, min_sigma) of y[k−guard−baseline .. k−guard−1] for each 1-based week k.

    Requires ``weeks`` to be consecutive. Works through long series in chunks (memory).
    """
    windows = sliding_window_view(y, baseline)  # windows[s] = y[s .. s+baseline-1] (0-based)
    first = int(weeks[0]) - guard - baseline - 1  # 0-based start of the first week's window
    mean = np.empty(weeks.size)
    sd = np.empty(weeks.size)
    for lo in range(0, weeks.size, _CHUNK):
        hi = min(lo + _CHUNK, weeks.size)
        win = windows[first + lo: first + hi]  # a view: the weeks are consecutive
        mean[lo:hi] = win.mean(axis=1)
        sd[lo:hi] = win.std(axis=1, ddof=1)
    return mean, np.maximum(sd, min_sigma)


def ears_c(observed: Counts, rng: WeekRange, control: EarsControl = EarsControl()) -> Detection:
    """Run EARS ``control.method`` on weeks ``rng`` of ``observed``."""
    y = np.asarray(observed, dtype=np.float64)
    _check(y.size, rng, control)
    weeks = rng.weeks()
    z = control.z()
    yk = y[weeks - 1]
    with np.errstate(divide="ignore", invalid="ignore"):
        if control.method == "C3":
            upper, alarm = _c3(y, weeks, control, z)
        else:
            mean, sigma = baseline_stats(y, weeks, control.baseline,
                                         _LAG[control.method], control.minSigma)
            upper = mean + z * sigma
            alarm = np.where(np.isnan(upper), np.nan, (yk > upper).astype(np.float64))
    return Detection.from_float_alarm(weeks, yk, upper, alarm)


def _c3(y: Counts, weeks: np.ndarray, control: EarsControl, z: float) -> tuple[Counts, Counts]:
    c2_weeks = np.arange(weeks[0] - 2, weeks[-1] + 1)
    mean, sigma = baseline_stats(y, c2_weeks, control.baseline, 2, control.minSigma)
    c2 = (y[c2_weeks - 1] - mean) / sigma
    excess = np.maximum(0.0, c2 - 1.0)  # NaN stays NaN, as R's pmax
    s = excess[:-2] + excess[1:-1]
    yk = y[weeks - 1]
    sigma_k = sigma[2:]
    if control.r_compatible:
        upper = np.maximum(0.0, yk + sigma_k * (z - s))
        alarm = np.where(np.isnan(upper), np.nan, (yk > upper).astype(np.float64))
        return upper, alarm
    c3 = s + excess[2:]
    upper = np.maximum(0.0, mean[2:] + sigma_k * (1.0 + z - s))
    alarm = np.where(np.isnan(c3), np.nan, (c3 > z).astype(np.float64))
    return upper, alarm
