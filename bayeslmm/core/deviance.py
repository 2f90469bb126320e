"""``Deviance``: lme4's profiled REML criterion / ML deviance of one model, built once.

The public deviance object every REML/ML tool calls: ``fit_reml`` optimizes it, the
Bayesian start reads its estimates, and profiles, bootstraps and likelihood-ratio tests
(the issue "Inference") evaluate it at other theta without rebuilding anything from the
formula.  Internally it works on the unit-scale copy of the data (``core/scaling.py``) and
reports in the data's units:

    dev = Deviance(spec, reml=True)
    dev(theta)               # criterion at theta (lme4's theta, the data's units)
    dev.estimates(theta)     # beta, vcov, sigma, lambdas, effects, criterion there

``theta`` here is always lme4's (lower triangles of the relative factors, engine order);
``scaled_theta``/``unscaled_theta`` convert to and from the optimizer's internal units.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg as sla

from ..spec import ModelSpec
from .cholesky import BlockedSystem
from .scaling import DataScaling

__all__ = ["Deviance", "Estimates"]


@dataclass
class Estimates:
    """Everything a REML/ML fit reports at one theta (the data's units, engine order)."""

    theta: np.ndarray
    lambdas: list[np.ndarray]
    beta: np.ndarray
    vcov_beta: np.ndarray
    sigma: float
    effects: list[np.ndarray]
    criterion: float
    deviance_ml: float


class Deviance:
    """Profiled criterion of ``spec`` as a function of theta.

    Parameters
    ----------
    spec : ModelSpec
        At least one random-effects block.
    reml : bool
        REML criterion (True) or ML deviance.
    scaling : DataScaling, optional
        The unit-scale copy to work on and its maps back (default ``DataScaling.of(spec)``);
        the residual structures pass a whitened copy with the original maps.
    """

    def __init__(self, spec: ModelSpec, reml: bool = True, scaling: DataScaling | None = None):
        self.spec = spec
        self.reml = bool(reml)
        self.scaling = DataScaling.of(spec) if scaling is None else scaling
        self.system = BlockedSystem(self.scaling.scaled)
        self.order = self.system.order
        self.layout = self.system.layout
        self._scales = [self.scaling.block_scale(k) for k in self.order]
        self.n_evals = 0

    # -- theta in the data's units and in the optimizer's -------------------------------
    def scaled_theta(self, theta: np.ndarray) -> np.ndarray:
        return self.layout.rescaled(np.asarray(theta, dtype=float), self._scales)

    def unscaled_theta(self, theta_scaled: np.ndarray) -> np.ndarray:
        return self.layout.rescaled(np.asarray(theta_scaled, dtype=float),
                                    [1.0 / s for s in self._scales])

    # -- the criterion ----------------------------------------------------------------------
    def scaled_objective(self, theta_scaled: np.ndarray) -> float:
        """The criterion on the unit-scale data (what the optimizer minimizes): it differs
        from ``__call__`` by a constant."""
        self.n_evals += 1
        return self.system.objective(theta_scaled, self.reml)

    def __call__(self, theta: np.ndarray) -> float:
        value = self.system.objective(self.scaled_theta(theta), self.reml)
        return self.scaling.criterion_back(value, self.reml)

    # -- estimates --------------------------------------------------------------------------
    def estimates(self, theta: np.ndarray | None = None, *,
                  theta_scaled: np.ndarray | None = None) -> Estimates:
        """Fixed effects, their covariance, sigma, relative factors, conditional modes and
        both criteria at ``theta`` (data units) or ``theta_scaled`` (internal units)."""
        if theta_scaled is None:
            theta_scaled = self.scaled_theta(theta)
        system, scaling, spec = self.system, self.scaling, self.spec
        fac = system.factorize(theta_scaled)
        beta_s, modes = system.solve(fac)
        dof = spec.n - spec.p if self.reml else spec.n
        sigma_s = float(np.sqrt(fac.pwrss / dof))
        rx = system.fixed_precision_factor(fac)
        rx_inv = sla.solve_triangular(rx, np.eye(spec.p), lower=True) if spec.p else rx
        vcov_s = sigma_s**2 * (rx_inv.T @ rx_inv)
        theta = self.unscaled_theta(theta_scaled)
        effects = [scaling.effects_back(u @ lam.T, k) for u, lam, k in
                   zip(modes, fac.lambdas, self.order, strict=True)]
        criterion = scaling.criterion_back(system.criterion(fac, self.reml), self.reml)
        deviance_ml = (criterion if not self.reml else
                       scaling.criterion_back(system.criterion(fac, reml=False), False))
        return Estimates(
            theta=theta, lambdas=self.layout.lambdas(theta), beta=scaling.beta(beta_s),
            vcov_beta=scaling.vcov_beta(vcov_s), sigma=scaling.y_scale * sigma_s,
            effects=effects, criterion=float(criterion), deviance_ml=float(deviance_ml))
