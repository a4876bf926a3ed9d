"""Original Farrington algorithm (Farrington et al., JRSS A 1996;159:547-63), as R's
``surveillance::farrington`` / ``algo.farrington`` 1.20.3 computes it.

For each week k (../shared/notes/surveillance.md §3.2):

1. reference weeks r_i − w .. r_i + w, i = 1..b (``reference.farrington_window``);
2. quasi-Poisson GLM log μ = α + β·t, φ = max(1, Pearson X²/(n − p));
3. Anscombe residuals s_i = 1.5(y^{2/3}μ^{−1/6} − μ^{1/2}) / √(φ(1 − h_ii)); weights
   ω = γ·s^{−2} where s > 1, γ elsewhere, with Σω = n; one weighted refit, φ again;
4. the trend is kept iff b ≥ 3, its two-sided t-test p < 0.05 (unclamped dispersion) and
   μ̂_k ≤ max of the reference counts; otherwise refit without it;
5. μ0, Var(μ̂0) = μ0²·x'(X'WX)⁻¹x·φ, τ = φ + Var(μ̂0)/μ0 and, for power 2/3,
   U = (μ0^{2/3} + z_{1−α/2}·√(4/9·μ0^{1/3}·τ))^{3/2};
6. if fewer than limit54[0] cases in the last limit54[1] weeks (current week included),
   U = 0 and no alarm; else alarm iff (y_k − μ0)/(U − μ0) > 1.

The product and R agree here; there is no separate R-compatible mode.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

from medledger.surveillance._scipy import stats
from medledger.surveillance.errors import SurveillanceError, check_alpha, check_choice
from medledger.surveillance.glm import GlmFit, Matrix, Vector, fit_poisson, linkinv
from medledger.surveillance.reference import farrington_window
from medledger.surveillance.series import Counts, Detection, WeekRange, WeekSeries

PowerTrans = Literal["2/3", "1/2", "none"]
_EXPONENT = {"2/3": 2.0 / 3.0, "1/2": 0.5, "none": 1.0}


@dataclass(frozen=True)
class FarringtonControl:
    """R's ``algo.farrington`` control list (``range`` is passed separately)."""

    b: int = 5
    w: int = 3
    reweight: bool = True
    alpha: float = 0.05
    trend: bool = True
    limit54: tuple[int, int] = (5, 4)
    powertrans: PowerTrans = "2/3"

    def __post_init__(self) -> None:
        check_choice("powertrans", self.powertrans, tuple(_EXPONENT))
        check_alpha(self.alpha)


def anscombe_residuals(fit: GlmFit, phi: float) -> Vector:
    """R ``anscombe.residuals``: 1.5(y^{2/3}μ^{−1/6} − μ^{1/2}) / √(φ(1 − h))."""
    mu = fit.mu
    a = 1.5 * (fit.y ** (2.0 / 3.0) * mu ** (-1.0 / 6.0) - np.sqrt(mu))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.asarray(a / np.sqrt(phi * (1.0 - fit.hat)), dtype=np.float64)


def assign_weights(s: Vector, threshold: float) -> Vector:
    """R ``algo.farrington.assign.weights``: γ·s^{−2} above ``threshold``, γ below; Σω = n."""
    high = s > threshold
    with np.errstate(divide="ignore"):
        inv_sq = s ** (-2.0)
    gamma = s.size / float(np.sum(np.where(high, inv_sq, 1.0)))
    return np.where(high, gamma * inv_sq, gamma)


def clamp_dispersion(value: float) -> float:
    """R's ``max(dispersion, 1)``: NaN stays NaN."""
    return value if math.isnan(value) else max(value, 1.0)


def r_sorted_pair(a: float, b: float) -> tuple[float, float]:
    """R's ``sort(c(a, b), na.last = FALSE)`` for two numbers (NaN first)."""
    if math.isnan(a) or math.isnan(b):
        return (a, b) if math.isnan(a) else (b, a)
    return (min(a, b), max(a, b))


def power_bound(mu0: float, tau: float, z: float, powertrans: PowerTrans) -> float:
    """Upper end of ``algo.farrington.threshold``: (μ0^e + z·se)^{1/e}, se per transform."""
    e = _EXPONENT[powertrans]
    if powertrans == "none":
        se = math.sqrt(mu0 * tau)
    elif powertrans == "1/2":
        se = math.sqrt(0.25 * tau)
    else:
        se = math.sqrt(4.0 / 9.0 * mu0 ** (1.0 / 3.0) * tau)

    def back(v: float) -> float:
        if v < 0 and powertrans != "none":
            return float("nan") if powertrans == "2/3" else v**2
        return float(v ** (1.0 / e))

    return r_sorted_pair(back(mu0**e - z * se), back(mu0**e + z * se))[1]


def enough_cases(y: Counts, k: int, limit54: tuple[int, int]) -> bool:
    """Σ y[k − limit54[1] + 1 .. k] >= limit54[0] (the "5 cases in 4 weeks" rule)."""
    start = k - limit54[1] + 1
    if start < 0:
        raise SurveillanceError(
            f"week {k}: the limit54 window of {limit54[1]} weeks starts before week 0")
    return float(y[max(start, 1) - 1:k].sum()) >= limit54[0]


def _design(t: Vector, trend: bool) -> Matrix:
    return np.column_stack([np.ones_like(t), t]) if trend else np.ones((t.size, 1))


def fit_farrington_glm(response: Vector, t: Vector, trend: bool,
                       reweight: bool) -> tuple[GlmFit, float]:
    """R ``algo.farrington.fitGLM.fast``: fit, reweight once, return the fit and clamped φ."""
    x = _design(t, trend)
    fit = fit_poisson(x, response)
    if not fit.converged and trend:
        x = _design(t, False)
        fit = fit_poisson(x, response)
    phi = clamp_dispersion(fit.dispersion())
    if reweight:
        omega = assign_weights(anscombe_residuals(fit, phi), 1.0)
        fit = fit_poisson(x, response, omega)
        phi = clamp_dispersion(fit.dispersion())
    return fit, phi


def _check(series: WeekSeries, rng: WeekRange, control: FarringtonControl) -> None:
    rng.check(len(series))
    if control.b < 1 or control.w < 0:
        raise SurveillanceError(f"b = {control.b}, w = {control.w}; want b >= 1 and w >= 0")
    if not (control.limit54[0] >= 0 and control.limit54[1] > 0):
        raise SurveillanceError(f"limit54 is {control.limit54}; want cases >= 0, period > 0")


def farrington(series: WeekSeries, rng: WeekRange,
               control: FarringtonControl = FarringtonControl()) -> Detection:
    """Run the original Farrington algorithm on weeks ``rng``."""
    _check(series, rng, control)
    y = series.observed
    weeks = rng.weeks()
    upper = np.zeros(weeks.size)
    alarm = np.zeros(weeks.size)
    for i, k in enumerate(weeks):
        upper[i], alarm[i] = _one_week(y, int(k), series, control)
    return Detection.from_float_alarm(weeks, y[weeks - 1], upper, alarm)


def _one_week(y: Counts, k: int, series: WeekSeries,
              control: FarringtonControl) -> tuple[float, float]:
    wtime = farrington_window(k, control.b, control.w, series.dates)
    if wtime.size == 0:
        raise SurveillanceError(f"week {k}: no reference weeks with b = {control.b}")
    response = y[wtime - 1]
    t = wtime.astype(np.float64)
    fit, phi = fit_farrington_glm(response, t, control.trend, control.reweight)
    if fit.x.shape[1] == 2:
        p = fit.t_pvalue(1, fit.dispersion())
        mu_k = float(linkinv(np.array([fit.coef @ np.array([1.0, k])]))[0])
        if not (control.b >= 3 and p < 0.05 and mu_k <= response.max()):
            fit, phi = fit_farrington_glm(response, t, False, control.reweight)
    row = np.array([1.0, float(k)])[: fit.x.shape[1]]
    eta0, se_eta = fit.predict_link(row, phi)
    mu0 = float(linkinv(np.array([eta0]))[0])
    se_mu = se_eta * mu0
    tau = phi + se_mu**2 / mu0
    z = float(stats.norm.ppf(1.0 - control.alpha / 2.0))
    bound = power_bound(mu0, tau, z, control.powertrans)
    if not enough_cases(y, k, control.limit54):
        return 0.0, 0.0
    with np.errstate(divide="ignore", invalid="ignore"):
        score = np.float64(y[k - 1] - mu0) / np.float64(bound - mu0)
    return bound, (np.nan if np.isnan(score) else float(score > 1))
