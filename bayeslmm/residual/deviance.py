"""``StructuredDeviance``: the profiled REML/ML criterion of a model with an R-side structure.

Parameters are ``[theta, rho]``: lme4's theta of the random-effects blocks (empty for a model
without random effects, i.e. generalized least squares) and the residual model's
unconstrained parameters (``residual/model.py``).  One evaluation whitens the unit-scale data
(``core/scaling.py``) group by group and evaluates the ordinary criterion of the whitened
model, sigma^2 I residuals:

    criterion(theta, rho) = criterion_iid(theta; L^-1 [Z X y]) + sum_i log|V_i(rho)|.

With random effects the whitened model goes through the same blocked Cholesky as every other
fit (``core/cholesky.py``).  Whitening keeps each row in its random-effects levels only if
the residual groups are nested in every grouping factor (a subject's rows share its levels);
anything else is refused with a clear message.  Without random effects the criterion is
lme4's with an empty L_ZZ (nlme's ``gls``):

    ML:   n (1 + log(2 pi r^2 / n)),   REML:  log|R_X|^2 + (n - p)(1 + log(2 pi r^2 / (n - p))).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import scipy.linalg as sla

from ..core.cholesky import LOG_2PI, BlockedSystem
from ..core.covariance import ThetaLayout, structure_for
from ..core.deviance import Deviance, Estimates
from ..core.scaling import DataScaling
from ..spec import ModelSpec
from .model import ResidualModel

__all__ = ["StructuredDeviance"]


def check_nested(spec: ModelSpec, residual: ResidualModel) -> None:
    """Every residual group must lie within one level of each random-effects factor."""
    if residual.structure is None:
        return
    for block in spec.blocks:
        first = np.full(residual.group_codes.max() + 1, -1)
        first[residual.group_codes] = block.codes
        if np.any(first[residual.group_codes] != block.codes):
            raise ValueError(
                f"the residual groups ({':'.join(residual.term.group) or 'all rows'}) must be "
                f"nested in every random-effects grouping factor, but a group has rows in "
                f"several levels of {block.factor!r}; write the residual structure by "
                f"{block.factor!r} (or a factor nested in it)")


class StructuredDeviance:
    """Profiled criterion of ``spec`` with the residual model ``residual``.

    Parameters
    ----------
    spec : ModelSpec
        Any number of random-effects blocks, zero included.
    residual : ResidualModel
        Built on the same rows as ``spec``.
    reml : bool
    """

    def __init__(self, spec: ModelSpec, residual: ResidualModel, reml: bool = True):
        check_nested(spec, residual)
        self.spec, self.residual, self.reml = spec, residual, bool(reml)
        self.scaling = DataScaling.of(spec)
        self.scaled_spec = self._base = self.scaling.scaled
        self.order = spec.block_order()
        self.layout = ThetaLayout([structure_for(spec.blocks[k]) for k in self.order])
        self._scales = [self.scaling.block_scale(k) for k in self.order]
        self.n_theta = self.layout.size
        self.size = self.n_theta + residual.size
        self.lower = np.concatenate([self.layout.lower, np.full(residual.size, -np.inf)])
        self.initial = np.concatenate([self.layout.initial, residual.initial()])
        self.n_evals = 0

    # -- parameters -------------------------------------------------------------------------
    def split(self, params: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        params = np.asarray(params, dtype=float)
        return params[: self.n_theta], params[self.n_theta:]

    def unscaled_theta(self, theta_scaled: np.ndarray) -> np.ndarray:
        if not self.n_theta:
            return np.zeros(0)
        return self.layout.rescaled(theta_scaled, [1.0 / s for s in self._scales])

    def scaled_theta(self, theta: np.ndarray) -> np.ndarray:
        if not self.n_theta:
            return np.zeros(0)
        return self.layout.rescaled(np.asarray(theta, dtype=float), self._scales)

    # -- the criterion --------------------------------------------------------------------
    def whitened(self, rho: np.ndarray) -> tuple[ModelSpec, float]:
        """The unit-scale data with every group's rows whitened, and sum_i log|V_i|."""
        spec = self._base
        whitener = self.residual.whitener(rho)
        arrays = [spec.y, spec.X] + [b.columns for b in spec.blocks]
        white = self.residual.whiten(arrays, whitener)
        blocks = [replace(b, columns=c) for b, c in zip(spec.blocks, white[2:], strict=True)]
        return replace(spec, y=white[0], X=white[1], blocks=blocks), whitener[2]

    def _fixed_only(self, spec: ModelSpec) -> tuple[float, np.ndarray, float]:
        """(criterion, R_X' (p x p lower), r^2) of a model without random effects."""
        xy = np.column_stack([spec.X, spec.y])
        try:
            chol = np.linalg.cholesky(xy.T @ xy)
        except np.linalg.LinAlgError:
            # the cross products lost definiteness in rounding (a residual SD run towards 0
            # whitens some rows by a huge factor): R of the QR of [X y] itself, whose
            # condition is the square root of theirs, with its diagonal made positive
            r = np.linalg.qr(xy, mode="r")
            chol = (r * np.where(np.diagonal(r) < 0, -1.0, 1.0)[:, None]).T
        p = spec.p
        rx = chol[:p, :p]
        pwrss = float(chol[p, p] ** 2)
        n = spec.n
        if self.reml:
            dof = n - p
            value = 2.0 * np.log(np.diagonal(rx)).sum() + dof * (1 + LOG_2PI
                                                                   + np.log(pwrss / dof))
        else:
            value = n * (1 + LOG_2PI + np.log(pwrss / n))
        return float(value), rx, pwrss

    def scaled_objective(self, params: np.ndarray) -> float:
        """The criterion on the unit-scale data (differs from ``__call__`` by a constant)."""
        self.n_evals += 1
        theta, rho = self.split(params)
        try:
            spec, logdet = self.whitened(rho)
            if not self.spec.blocks:
                return self._fixed_only(spec)[0] + logdet
            return BlockedSystem(spec).objective(theta, self.reml) + logdet
        except (np.linalg.LinAlgError, ValueError, FloatingPointError):
            return np.inf

    def __call__(self, theta: np.ndarray, rho: np.ndarray) -> float:
        """The criterion at lme4's theta (data units) and the residual parameters."""
        value = self.scaled_objective(np.concatenate([self.scaled_theta(theta), rho]))
        return self.scaling.criterion_back(value, self.reml)

    # -- estimates --------------------------------------------------------------------------
    def estimates(self, params_scaled: np.ndarray) -> Estimates:
        """Every estimate at the (internal-unit) parameters, in the data's units."""
        theta_s, rho = self.split(params_scaled)
        white, logdet = self.whitened(rho)
        # the maps back are the original data's: whitening commutes with the column scaling
        scaling = replace(self.scaling, scaled=white)
        if self.spec.blocks:
            est = Deviance(self.spec, reml=self.reml, scaling=scaling).estimates(
                theta_scaled=theta_s)
            est.criterion += logdet
            est.deviance_ml += logdet
            return est
        value, rx, pwrss = self._fixed_only(white)
        p, n = self.spec.p, self.spec.n
        dof = n - p if self.reml else n
        beta_s = sla.cho_solve((rx, True), white.X.T @ white.y)
        sigma_s = np.sqrt(pwrss / dof)
        rx_inv = sla.solve_triangular(rx, np.eye(p), lower=True)
        criterion = scaling.criterion_back(value, self.reml) + logdet
        if self.reml:
            ml_value = n * (1 + LOG_2PI + np.log(pwrss / n))
            deviance_ml = scaling.criterion_back(ml_value, False) + logdet
        else:
            deviance_ml = criterion
        return Estimates(theta=np.zeros(0), lambdas=[], beta=scaling.beta(beta_s),
                         vcov_beta=scaling.vcov_beta(sigma_s**2 * rx_inv.T @ rx_inv),
                         sigma=scaling.y_scale * float(sigma_s), effects=[],
                         criterion=float(criterion), deviance_ml=float(deviance_ml))
