"""Poisson CUSUM (Rossi et al., Stat Med 1999;18:2111; R ``surveillance::cusum`` /
``algo.cusum`` 1.20.3), with an optional reset to 0 after each alarm.

With expected counts m (the mean of all weeks before the range, a given number, or a Poisson
GLM log m_t = α + β cos(2πt/52) + γ sin(2πt/52) fitted to those weeks) and the standardised
count z_t (``trans``; "standard" is (y_t − m)/√m):

    S_0 = 0,  S_t = max(0, S_{t−1} + z_t − k),  alarm S_t ≥ h.

The reported upper bound is R's, from S_{t−1}; for "standard" it is ⌈√m(h + k − S_{t−1}) + m⌉,
the smallest count that alarms (so here the alarm is y_t ≥ U_t, not y_t > U_t). R's bounds for
"none" are h − S_t (not a count). NaN bounds are reported as 0, as R does.

Product default versus R (``r_compatible=True``):

* R's CUSUM never resets, so after an outbreak S stays high and the bounds drift to 0
  (SignalDetectionTool issues #203, #215). The product resets S to 0 after every alarm
  (``reset``); R-compatible mode does not, unless ``reset=True`` is given explicitly.
* A range starting at week 1 has no weeks before it; R then takes m = y_1 (its ``1:0`` index).
  The product refuses; R-compatible mode does what R does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from medledger.surveillance.errors import SurveillanceError, check_choice
from medledger.surveillance.glm import Vector, fit_poisson, linkinv
from medledger.surveillance.series import Counts, Detection, WeekRange

CusumTrans = Literal["standard", "rossi", "anscombe", "anscombe2nd", "pearsonNegBin", "none"]


@dataclass(frozen=True)
class CusumControl:
    """R's ``algo.cusum`` control list (``range`` separate), plus ``reset``.

    ``m``: None (mean before the range), a number, or "glm". ``alpha`` (default 0.1) is the
    negative binomial overdispersion for "pearsonNegBin". ``reset=None`` means reset in the
    product and no reset in R-compatible mode.
    """

    k: float = 1.04
    h: float = 2.26
    m: float | Literal["glm"] | None = None
    trans: CusumTrans = "standard"
    alpha: float | None = None
    reset: bool | None = None
    r_compatible: bool = False

    def __post_init__(self) -> None:
        check_choice("trans", self.trans, ("standard", "rossi", "anscombe", "anscombe2nd",
                                           "pearsonNegBin", "none"))
        if isinstance(self.m, str):
            check_choice("m", self.m, ("glm",))
        if self.alpha is not None and not self.alpha > 0:
            raise SurveillanceError(f"alpha (overdispersion) is {self.alpha}; want > 0")

    def resets(self) -> bool:
        return (not self.r_compatible) if self.reset is None else self.reset


def expected_counts(y: Counts, rng: WeekRange, control: CusumControl) -> Vector:
    """m for every week of the range."""
    n_weeks = rng.last - rng.first + 1
    if isinstance(control.m, int | float):
        return np.full(n_weeks, float(control.m))
    if rng.first == 1:
        if control.m is None and control.r_compatible:
            return np.full(n_weeks, float(y[0]))
        raise SurveillanceError("CUSUM needs weeks before the range to estimate m; range "
                                "starts at week 1")
    training = y[: rng.first - 1]
    if control.m is None:
        return np.full(n_weeks, float(training.mean()))
    t = np.arange(1, rng.first, dtype=np.float64)
    fit = fit_poisson(_harmonic(t), training)
    return linkinv(_harmonic(rng.weeks().astype(np.float64)) @ fit.coef)


def _harmonic(t: Vector) -> Vector:
    angle = 2.0 * np.pi / 52.0 * t
    return np.column_stack([np.ones_like(t), np.cos(angle), np.sin(angle)])


def standardise(x: Vector, m: Vector, trans: CusumTrans, alpha: float) -> Vector:
    """R ``algo.cusum``'s standardised counts."""
    if trans == "rossi":
        return np.asarray((x - 3 * m + 2 * np.sqrt(x * m)) / (2 * np.sqrt(m)))
    if trans == "standard":
        return np.asarray((x - m) / np.sqrt(m))
    if trans == "anscombe":
        return np.asarray(1.5 * (x ** (2 / 3) - m ** (2 / 3)) / m ** (1 / 6))
    if trans == "anscombe2nd":
        return np.asarray((x ** (2 / 3) - (m ** (2 / 3) - m ** (-1 / 3) / 9))
                          / (2 / 3 * m ** (1 / 6)))
    if trans == "pearsonNegBin":
        return np.asarray((x - m) / np.sqrt(m + alpha * m**2))
    return x


def bounds(m: Vector, c_prev: Vector, c_now: Vector, control: CusumControl,
           alpha: float) -> Vector:
    """R ``algo.cusum``'s upper bounds from S_{t−1} (``c_prev``); NaN and negatives become 0."""
    h, k, trans = control.h, control.k, control.trans
    room = h + k - c_prev
    if trans == "rossi":
        u = (2 * h * m**0.5 + 2 * k * m**0.5 - 2 * c_prev * m**0.5 + 5 * m
             - 2 * (4 * m**2 + 2 * m**1.5 * h + 2 * m**1.5 * k - 2 * m**1.5 * c_prev) ** 0.5)
    elif trans == "standard":
        u = np.ceil(np.sqrt(m) * room + m)
    elif trans in ("anscombe", "anscombe2nd"):
        shift = m ** (2 / 3) if trans == "anscombe" else m ** (2 / 3) - m ** (1 / 3) / 9
        base = 2 / 3 * m ** (1 / 6) * room + shift
        u = np.where(base < 0, 0.0, np.abs(base) ** 1.5)
        u[np.isnan(base)] = np.nan
    elif trans == "pearsonNegBin":
        u = np.sqrt(m + alpha * m**2) * room + m
    else:
        u = h - c_now
    u = np.where(np.isnan(u), 0.0, u)
    return np.asarray(np.where(u < 0, 0.0, u), dtype=np.float64)


def cusum(observed: Counts, rng: WeekRange, control: CusumControl = CusumControl()) -> Detection:
    """Run the CUSUM on weeks ``rng`` of ``observed``."""
    y = np.asarray(observed, dtype=np.float64)
    rng.check(y.size)
    alpha = 0.1 if control.alpha is None else control.alpha
    m = expected_counts(y, rng, control)
    x = y[rng.first - 1: rng.last]
    with np.errstate(divide="ignore", invalid="ignore"):
        z = standardise(x, m, control.trans, alpha)
        c_prev, c_now, alarm = _run(z, control.k, control.h, control.resets())
        upper = bounds(m, c_prev, c_now, control, alpha)
    return Detection.from_float_alarm(rng.weeks(), x, upper, alarm)


def _run(z: Vector, k: float, h: float, reset: bool) -> tuple[Vector, Vector, Vector]:
    """S_{t−1} (after any reset), S_t and the alarm (NaN where S_t is NaN)."""
    prev = np.zeros(z.size)
    now = np.zeros(z.size)
    alarm = np.zeros(z.size)
    s = 0.0
    for t in range(z.size):
        prev[t] = s
        s = float(np.maximum(0.0, s + (z[t] - k)))  # NaN propagates, as R's max
        now[t] = s
        alarm[t] = np.nan if np.isnan(s) else float(s >= h)
        if reset and alarm[t] == 1.0:
            s = 0.0
    return prev, now, alarm
