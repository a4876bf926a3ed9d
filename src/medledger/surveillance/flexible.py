"""Improved Farrington (Noufaily et al., Stat Med 2013;32(7):1206-22), as R's
``surveillance::farringtonFlexible`` 1.20.3 computes it (populationOffset off).

For each week k (../shared/notes/surveillance.md §3.3):

1. reference weeks r_0 = k, r_1..r_b (``reference.reference_points``); weeks r_i − w .. r_i + w
   and k − w .. k get season level p = ``noPeriods``; each gap between two windows is cut into
   p − 1 consecutive blocks labelled 1..p − 1 (the first ``gap mod (p−1)`` one week longer);
2. weeks k − ``pastWeeksNotIncluded`` .. k are left out;
3. quasi-Poisson GLM log μ = α + β·t (+ season factor if p ≠ 1), reweighted once with
   threshold ``weightsThreshold`` (as in ``farrington``);
4. trend kept iff b ≥ 3, p-value < ``pThresholdTrend`` and μ̂_k ≤ max of the fitted counts;
5. thresholds at one-sided α: ``delta`` (the 2/3-power bound with z_{1−α}), ``nbPlugin``
   (qnbinom(1 − α, size μ0/(φ − 1), prob 1/φ), Poisson if φ = 1) or ``muan`` (the same with
   μ0 = exp(η0 + z_{1−α}·se(η0)));
6. limit54 as in ``farrington`` but the bound is undefined (NA) when there are too few cases;
   alarm iff enough cases and y_k > U and y_k ≠ 0.

Product default versus R (``r_compatible=True`` reproduces R):

* R overwrites the reweighted fit's working weights with the prior weights, so its trend test
  and se(η0) use D* = Σω((y − μ)/μ)²/(n − p) instead of the Pearson dispersion. The product
  uses the Pearson dispersion for the trend test and the clamped φ for se(η0), as
  ``farrington`` does. Without reweighting R uses the unclamped Pearson dispersion for se(η0);
  the product still uses φ.
* R's alarm is (y − η0)/(U − η0) > 1 for nbPlugin and muan (link and count scales mixed); the
  product's alarm is y > U.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from medledger.surveillance._scipy import stats
from medledger.surveillance.errors import SurveillanceError, check_alpha, check_choice
from medledger.surveillance.farrington import (
    PowerTrans,
    anscombe_residuals,
    assign_weights,
    clamp_dispersion,
    enough_cases,
    power_bound,
)
from medledger.surveillance.glm import GlmFit, Matrix, Vector, fit_poisson, linkinv
from medledger.surveillance.reference import reference_points
from medledger.surveillance.series import Counts, Detection, WeekRange, WeekSeries

ThresholdMethod = Literal["delta", "nbPlugin", "muan"]


@dataclass(frozen=True)
class FlexibleControl:
    """R's ``farringtonFlexible`` control list (``range`` separate; populationOffset off).

    ``pastWeeksNotIncluded=None`` means ``w``, as in R. Noufaily's configuration is
    ``noPeriods=10, pastWeeksNotIncluded=26, weightsThreshold=2.58, pThresholdTrend=1,
    thresholdMethod="nbPlugin"``.
    """

    b: int = 5
    w: int = 3
    reweight: bool = True
    weightsThreshold: float = 2.58
    alpha: float = 0.05
    trend: bool = True
    pThresholdTrend: float = 0.05
    limit54: tuple[int, int] = (5, 4)
    powertrans: PowerTrans = "2/3"
    noPeriods: int = 1
    pastWeeksNotIncluded: int | None = None
    thresholdMethod: ThresholdMethod = "delta"
    r_compatible: bool = False

    def __post_init__(self) -> None:
        check_choice("powertrans", self.powertrans, ("2/3", "1/2", "none"))
        check_choice("thresholdMethod", self.thresholdMethod, ("delta", "nbPlugin", "muan"))
        check_alpha(self.alpha)


def r_colon(a: int, b: int) -> range:
    """R's ``a:b`` (descending when b < a)."""
    return range(a, b + 1) if b >= a else range(a, b - 1, -1)


def season_labels(n: int, refs: npt.NDArray[np.int64], w: int, p: int) -> Vector:
    """R ``blocks``: season level per week (1-based weeks at position week − 1), NaN unlabelled."""
    labels = np.full(n, np.nan)
    now = int(refs[0])
    labels[now - w - 1:now] = p
    for i in range(1, refs.size):
        ref = int(refs[i])
        if ref - w < 0:
            raise SurveillanceError(
                f"the window of reference week {ref} (w = {w}) reaches before week 0")
        labels[max(ref - w, 1) - 1:ref + w] = p
        if p == 1:
            continue
        period = int(refs[i - 1]) - 2 * w - 1 - ref
        if period < p - (2 * w + 1):
            raise SurveillanceError(f"noPeriods = {p} is too big for w = {w}")
        lengths = [period // (p - 1) + (1 if j < period % (p - 1) else 0) for j in range(p - 1)]
        cum = np.concatenate([[0], np.cumsum(lengths)])
        for j in range(1, p):
            start = ref + w + 1 + int(cum[j - 1])
            stop = ref + w + 1 + int(cum[j]) - 1
            for week in r_colon(start, stop):
                labels[week - 1] = j
    return labels


@dataclass(frozen=True)
class _Data:
    response: Vector
    t: Vector
    season: Vector  # levels per fitted week
    t_now: float


def _data(series: WeekSeries, k: int, control: FlexibleControl) -> _Data:
    refs = reference_points(k, control.b, series.dates)
    labels = season_labels(len(series), refs, control.w, control.noPeriods)
    past = control.w if control.pastWeeksNotIncluded is None else control.pastWeeksNotIncluded
    excluded = list(r_colon(k - past, k))
    if min(excluded) < 0:
        raise SurveillanceError(f"week {k}: pastWeeksNotIncluded = {past} reaches before week 0")
    labels[[e - 1 for e in excluded if e >= 1]] = np.nan
    idx = np.flatnonzero(~np.isnan(labels)) + 1
    if series.dates is None:
        t = idx.astype(np.float64)
        t_now = float(k)
    else:
        step = (series.dates[1] - series.dates[0]).days if len(series) > 1 else 7
        base = series.dates[idx[0] - 1]
        t = np.array([(series.dates[i - 1] - base).days / step for i in idx])
        t_now = (series.dates[k - 1] - base).days / step
    return _Data(series.observed[idx - 1], t, labels[idx - 1], t_now)


def _design(data: _Data, trend: bool, seasonal: bool) -> tuple[Matrix, list[float]]:
    cols = [np.ones(data.t.size)]
    if trend:
        cols.append(data.t)
    levels = sorted(set(data.season.tolist())) if seasonal else []
    cols.extend((data.season == lev).astype(np.float64) for lev in levels[1:])
    return np.column_stack(cols), levels


@dataclass(frozen=True)
class _Model:
    fit: GlmFit
    phi: float
    levels: list[float]
    trend: bool
    omega: Vector | None

    def row(self, t_now: float, level: float) -> Vector:
        row = [1.0] + ([t_now] if self.trend else [])
        row.extend(1.0 if level == lev else 0.0 for lev in self.levels[1:])
        return np.asarray(row)

    def summary_dispersion(self, r_compatible: bool) -> float:
        """What ``summary.glm`` reports for R's model object (D* after the overwrite)."""
        if r_compatible and self.omega is not None:
            return self.fit.dispersion_prior_weights()
        return self.fit.dispersion()


def _fit(data: _Data, trend: bool, control: FlexibleControl) -> _Model | None:
    """R ``algo.farrington.fitGLM.flexible``; None where R gives up (no convergence)."""
    seasonal = control.noPeriods != 1
    x, levels = _design(data, trend, seasonal)
    fit = fit_poisson(x, data.response)
    if not fit.converged:
        if trend:
            trend = False
            x, levels = _design(data, trend, seasonal)
            fit = fit_poisson(x, data.response)
        if not fit.converged:
            return None
    phi = clamp_dispersion(fit.dispersion())
    omega = None
    if control.reweight:
        omega = assign_weights(anscombe_residuals(fit, phi), control.weightsThreshold)
        fit = fit_poisson(x, data.response, omega)
        phi = clamp_dispersion(fit.dispersion())
    return _Model(fit, phi, levels, trend, omega)


def _se_dispersion(model: _Model, control: FlexibleControl) -> float:
    return model.summary_dispersion(True) if control.r_compatible else model.phi


def _final_model(data: _Data, control: FlexibleControl) -> _Model | None:
    """R ``algo.farrington.glm``: fit with trend, drop it unless the three rules hold."""
    model = _fit(data, control.trend, control)
    if model is None or not model.trend:
        return model
    p_level = float(control.noPeriods)
    eta, _ = model.fit.predict_link(model.row(data.t_now, p_level), 0.0)
    mu = float(linkinv(np.array([eta]))[0])
    pvalue = model.fit.t_pvalue(1, model.summary_dispersion(control.r_compatible))
    keep = control.b >= 3 and pvalue < control.pThresholdTrend and mu <= data.response.max()
    return model if keep else _fit(data, False, control)


def _threshold(model: _Model, data: _Data, control: FlexibleControl) -> tuple[float, float]:
    """Upper bound U and the reference value R's score divides by (μ0, or η0 for NB)."""
    eta0, se = model.fit.predict_link(model.row(data.t_now, float(control.noPeriods)),
                                      _se_dispersion(model, control))
    z = float(stats.norm.ppf(1.0 - control.alpha))
    if control.thresholdMethod == "delta":
        mu0 = float(linkinv(np.array([eta0]))[0])
        tau = model.phi + (se * mu0) ** 2 / mu0
        return power_bound(mu0, tau, z, control.powertrans), mu0
    log_mean = eta0 if control.thresholdMethod == "nbPlugin" else eta0 + z * se
    with np.errstate(over="ignore"):
        mu_q = float(np.exp(log_mean))
    return nb_quantile(1.0 - control.alpha, mu_q, model.phi), eta0


def nb_quantile(q: float, mean: float, phi: float) -> float:
    """Noufaily's negative binomial quantile: mean μ, variance φμ; Poisson if φ <= 1; NaN for ∞."""
    if math.isinf(mean) or math.isnan(mean) or math.isnan(phi):
        return math.nan
    if mean == 0.0:
        return 0.0
    if phi > 1:
        return float(stats.nbinom.ppf(q, mean / (phi - 1.0), 1.0 / phi))
    return float(stats.poisson.ppf(q, mean))


def _check(series: WeekSeries, rng: WeekRange, control: FlexibleControl) -> None:
    rng.check(len(series))
    if control.b < 1 or control.w < 0 or control.noPeriods < 1:
        raise SurveillanceError(
            f"b = {control.b}, w = {control.w}, noPeriods = {control.noPeriods}; "
            "want b >= 1, w >= 0, noPeriods >= 1")
    if not (control.limit54[0] >= 0 and control.limit54[1] > 0):
        raise SurveillanceError(f"limit54 is {control.limit54}; want cases >= 0, period > 0")


def farrington_flexible(series: WeekSeries, rng: WeekRange,
                        control: FlexibleControl = FlexibleControl()) -> Detection:
    """Run the improved Farrington algorithm on weeks ``rng``."""
    _check(series, rng, control)
    y = series.observed
    weeks = rng.weeks()
    upper = np.full(weeks.size, np.nan)
    alarm = np.zeros(weeks.size)
    for i, k in enumerate(weeks):
        upper[i], alarm[i] = _one_week(y, int(k), series, control)
    return Detection.from_float_alarm(weeks, y[weeks - 1], upper, alarm)


def _one_week(y: Counts, k: int, series: WeekSeries,
              control: FlexibleControl) -> tuple[float, float]:
    data = _data(series, k, control)
    model = _final_model(data, control)
    if model is None:
        return math.nan, math.nan
    bound, centre = _threshold(model, data, control)
    if not enough_cases(y, k, control.limit54) or math.isnan(bound):
        return math.nan, 0.0
    yk = float(y[k - 1])
    if control.r_compatible:
        with np.errstate(divide="ignore", invalid="ignore"):
            score = np.float64(yk - centre) / np.float64(bound - centre)
        return bound, float(bool(score > 1) and yk != 0)
    return bound, float(yk > bound and yk != 0)
