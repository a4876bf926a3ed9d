"""Poisson / quasi-Poisson GLM with log link, fitted exactly as R's ``glm.fit`` does.

The detection methods compare with R's ``surveillance`` package to 1e-6 relative, which needs
R's iteration, not just the same optimum (../shared/notes/surveillance.md §3.4):

* start at μ = y + 0.1, η = log μ; the inverse link floors μ at machine epsilon;
* each step solves the weighted least-squares problem with working weights ω·μ'(η)²/μ and
  working response η + (y − μ)/μ'(η);
* stop when |D − D_old| / (|D| + 0.1) < 1e-8, at most 25 steps;
* the covariance, hat values and Pearson dispersion use the working weights of the *last* step
  (computed from the μ before it), with residuals at the final μ.

Source: R 4.2 ``stats::glm.fit``, ``summary.glm``, ``lm.influence``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from medledger.surveillance._scipy import stats

Vector = npt.NDArray[np.float64]
Matrix = npt.NDArray[np.float64]

EPS = float(np.finfo(np.float64).eps)
EPSILON = 1e-8
MAX_ITER = 25


def linkinv(eta: Vector) -> Vector:
    """R's ``poisson()$linkinv``: ``pmax(exp(eta), .Machine$double.eps)`` (also ``mu.eta``)."""
    with np.errstate(over="ignore"):
        return np.maximum(np.exp(eta), EPS)


def _deviance(y: Vector, mu: Vector, weights: Vector) -> float:
    r = mu * weights
    pos = y > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        r[pos] = (weights * (y * np.log(y / mu) - (y - mu)))[pos]
    return float(2.0 * r.sum())


@dataclass(frozen=True)
class GlmFit:
    """A fitted log-link Poisson GLM (rows of ``x`` are observations)."""

    x: Matrix
    y: Vector
    prior_weights: Vector
    coef: Vector
    eta: Vector
    mu: Vector
    working_weights: Vector
    cov_unscaled: Matrix
    hat: Vector
    converged: bool

    @property
    def df_residual(self) -> int:
        return int(self.x.shape[0] - self.x.shape[1])

    @property
    def working_residuals(self) -> Vector:
        return (self.y - self.mu) / linkinv(self.eta)

    def dispersion(self) -> float:
        """Pearson dispersion as ``summary.glm`` gives it (NaN without residual df)."""
        return self._dispersion(self.working_weights)

    def dispersion_prior_weights(self) -> float:
        """The dispersion ``summary.glm`` gives after ``model$weights <- prior weights``.

        ``farringtonFlexible`` overwrites the working weights this way (its D*); see
        ../shared/notes/surveillance.md §3.3 item 7.
        """
        return self._dispersion(self.prior_weights)

    def _dispersion(self, weights: Vector) -> float:
        df = self.df_residual
        if df <= 0:
            return float("nan")
        return float(np.sum(weights * self.working_residuals**2) / df)

    def t_pvalue(self, column: int, dispersion: float) -> float:
        """Two-sided t-test p-value of one coefficient (df = n − p), as ``summary.glm``."""
        se = np.sqrt(self.cov_unscaled[column, column] * dispersion)
        t = self.coef[column] / se
        return float(2.0 * stats.t.sf(abs(t), self.df_residual))

    def predict_link(self, row: Vector, dispersion: float) -> tuple[float, float]:
        """η0 = row·θ and its standard error √(row'(X'WX)⁻¹row · dispersion)."""
        eta0 = float(row @ self.coef)
        var = float(row @ self.cov_unscaled @ row) * dispersion
        return eta0, float(np.sqrt(var))


def fit_poisson(x: Matrix, y: Vector, weights: Vector | None = None) -> GlmFit:
    """Fit log μ = xθ by R's IRLS. Requires y ≥ 0, full column rank, positive weights."""
    n = y.shape[0]
    w_prior = np.ones(n) if weights is None else np.asarray(weights, dtype=np.float64)
    eta = np.log(y + 0.1)
    mu = linkinv(eta)
    dev_old = _deviance(y, mu, w_prior)
    converged = False
    coef = np.zeros(x.shape[1])
    wsq = w_prior
    q = r = np.zeros((0, 0))
    for _ in range(MAX_ITER):
        mu_eta = linkinv(eta)
        z = eta + (y - mu) / mu_eta
        wsq = w_prior * mu_eta**2 / mu
        sw = np.sqrt(wsq)
        q, r = np.linalg.qr(x * sw[:, None])
        coef = np.asarray(np.linalg.solve(r, q.T @ (z * sw)), dtype=np.float64)
        eta = x @ coef
        mu = linkinv(eta)
        dev = _deviance(y, mu, w_prior)
        if not np.isfinite(dev):
            break
        if abs(dev - dev_old) / (abs(dev) + 0.1) < EPSILON:
            converged = True
            break
        dev_old = dev
    r_inv = np.linalg.inv(r)
    hat = np.sum(q**2, axis=1)
    hat[hat >= 1.0 - 10 * EPS] = 1.0
    return GlmFit(x=x, y=y, prior_weights=w_prior, coef=coef, eta=eta, mu=mu,
                  working_weights=wsq, cov_unscaled=r_inv @ r_inv.T, hat=hat,
                  converged=converged)
