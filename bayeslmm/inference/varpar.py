"""The variance parameters of a fitted LMM as one vector, and what depends on them.

lmerTest's Satterthwaite method (Kuznetsova et al. 2017) and the Wald/profile tools need,
around the optimum, the unprofiled criterion and the fixed effects' covariance as functions
of ``varpar = [theta, rho, sigma]`` (theta: lme4's, in the data's units; rho: a residual
structure's unconstrained parameters; sigma: the residual SD).  Both come from the fit's own
deviance object (``reml/deviance.py`` or ``residual/deviance.py``): nothing is refitted.

With the profiled criterion D(theta) and its sigma_hat(theta) (dof = n - p for REML, n for
ML), the criterion at any sigma is exactly

    D(theta, sigma) = D(theta) + dof (log(sigma^2 / sigma_hat^2) + sigma_hat^2 / sigma^2 - 1),

and vcov(beta)(theta, sigma) = (sigma / sigma_hat)^2 vcov_hat(theta).
"""

from __future__ import annotations

import numpy as np

__all__ = ["VarianceParameters", "deviance_of"]


def deviance_of(fit):
    """The deviance object the fit came from (``reml/deviance.py`` or, with a residual
    structure, ``residual/deviance.py``)."""
    dev = getattr(fit, "deviance_object", None)
    if dev is None:
        raise ValueError("this fit carries no deviance object: fit it with bayeslmm.fit(..., "
                         "method='reml' or 'ml')")
    return dev


class VarianceParameters:
    """``varpar`` of ``fit`` and the functions of it (see the module docstring)."""

    def __init__(self, fit):
        self.fit = fit
        self.dev = deviance_of(fit)
        self.reml = fit.method == "REML"
        self.structured = hasattr(self.dev, "residual")  # StructuredDeviance
        rho = fit.residual_params if fit.residual_params is not None else np.zeros(0)
        self.n_theta, self.n_rho = fit.theta.size, rho.size
        self.value = np.concatenate([fit.theta, rho, [fit.sigma]])
        n, p = fit.spec.n, fit.spec.p
        self.dof = n - p if self.reml else n

    def split(self, varpar: np.ndarray):
        varpar = np.asarray(varpar, dtype=float)
        k = self.n_theta
        return varpar[:k], varpar[k: k + self.n_rho], float(varpar[-1])

    def _estimates(self, theta: np.ndarray, rho: np.ndarray):
        if self.structured:
            return self.dev.estimates(np.concatenate([self.dev.scaled_theta(theta), rho]))
        return self.dev.estimates(theta)

    def _profiled(self, theta: np.ndarray, rho: np.ndarray) -> tuple[float, float]:
        """(profiled criterion, sigma_hat) at theta (and rho)."""
        if self.structured:
            est = self._estimates(theta, rho)
            return est.criterion, est.sigma
        dev = self.dev
        fac = dev.system.factorize(dev.scaled_theta(theta))
        value = dev.scaling.criterion_back(dev.system.criterion(fac, self.reml), self.reml)
        sigma_hat = dev.scaling.y_scale * float(np.sqrt(fac.pwrss / self.dof))
        return float(value), sigma_hat

    def criterion(self, varpar: np.ndarray) -> float:
        """-2 log (restricted) likelihood at varpar (sigma not profiled)."""
        theta, rho, sigma = self.split(varpar)
        value, sigma_hat = self._profiled(theta, rho)
        ratio = sigma_hat**2 / sigma**2
        return float(value + self.dof * (-np.log(ratio) + ratio - 1.0))

    def vcov_beta(self, varpar: np.ndarray) -> np.ndarray:
        theta, rho, sigma = self.split(varpar)
        est = self._estimates(theta, rho)
        return est.vcov_beta * (sigma / est.sigma) ** 2
