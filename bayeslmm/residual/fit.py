"""``fit_structured``: REML/ML fit of a model with an R-side structure (or none, and no
random effects: nlme's ``gls``), reported as a ``RemlFit``."""

from __future__ import annotations

import time
import warnings

import numpy as np

from ..core.minimize import (
    SINGULAR_TOLERANCE,
    minimize_deviance,
    warn_if_singular,
    warn_not_converged,
)
from ..reml.result import RemlFit
from ..spec import ModelSpec
from .deviance import StructuredDeviance
from .gls_gradient import GlsGradient, has_gradient
from .model import ResidualModel

__all__ = ["fit_structured"]


GRADIENT_TOL = 1e-6   # largest |d criterion / d rho| accepted as converged (unit-scale data)


def _quasi_newton(dev: StructuredDeviance, objective: GlsGradient, x0: np.ndarray,
                  max_evals: int) -> tuple[np.ndarray, bool, str]:
    """L-BFGS-B on the closed-form gradient (unconstrained parameters), then BFGS from its
    optimum if the gradient is not yet small (L-BFGS-B's relative-reduction stop can come
    early in a flat valley)."""
    from scipy.optimize import minimize

    def counted(x):
        dev.n_evals += 1
        try:
            value, grad = objective(x)
        except (np.linalg.LinAlgError, ValueError, FloatingPointError):
            return np.inf, np.zeros_like(x)
        return value, grad

    res = minimize(counted, x0, jac=True, method="L-BFGS-B",
                   options={"maxfun": max_evals, "maxiter": max_evals, "ftol": 1e-15,
                            "gtol": 1e-9, "maxcor": 30})
    x = res.x
    grad_max = float(np.abs(counted(x)[1]).max()) if x.size else 0.0
    if grad_max > GRADIENT_TOL:
        again = minimize(counted, x, jac=True, method="BFGS",
                         options={"gtol": 1e-8, "maxiter": max_evals})
        if again.fun <= res.fun:
            x = again.x
        grad_max = float(np.abs(counted(x)[1]).max())
    converged = grad_max <= GRADIENT_TOL * 100
    return x, converged, f"L-BFGS-B (closed-form gradient): max |gradient| {grad_max:.1e}"


def _degenerate(residual: ResidualModel, rho: np.ndarray) -> str:
    """A message when the residual structure ran to its boundary (an SD ratio to 0 or
    infinity, a correlation to +-1): there the likelihood is unbounded or the structure is
    not identified with this mean structure, and no estimate means anything."""
    if residual.structure is None and not residual.n_variance:
        return ""
    struct, _ = residual.split(rho)
    ratios = residual.row_sds(rho)
    problems = []
    if ratios.min() / ratios.max() < 1e-6:
        problems.append("a residual SD went to 0")
    if residual.structure is not None:
        corr = residual.structure.full_correlation(struct)
        off = np.abs(corr[~np.eye(len(corr), dtype=bool)])
        if off.size and off.max() > 1 - 1e-8:
            problems.append("a residual correlation went to +-1")
        eig = np.linalg.eigvalsh(residual.structure.relative_cov(struct))
        if not problems and eig.min() < 1e-10 * eig.max():
            problems.append("the residual covariance became singular")
    if not problems:
        return ""
    return (f"degenerate residual structure ({'; '.join(problems)}): the likelihood is unbounded "
            f"or {residual.term.text()} is not identified with this mean structure; the "
            "estimates mean nothing")


def fit_structured(spec: ModelSpec, residual: ResidualModel, reml: bool = True,
                   start: np.ndarray | None = None, max_evals: int = 100_000) -> RemlFit:
    """Fit ``spec`` with residual model ``residual`` by REML (default) or ML.

    Parameters
    ----------
    spec : ModelSpec
        Random-effects blocks optional.
    residual : ResidualModel
        Built on the rows of ``spec``.
    reml : bool
    start : array, optional
        Starting ``[theta, rho]``: lme4's theta (data units, engine order) then the residual
        model's unconstrained parameters.
    max_evals : int
    """
    started = time.perf_counter()
    dev = StructuredDeviance(spec, residual, reml=reml)
    if start is None:
        x0 = dev.initial.copy()
    else:
        start = np.asarray(start, dtype=float)
        if start.shape != (dev.size,):
            raise ValueError(f"start must have {dev.size} values (theta, then the residual "
                             f"parameters), got {start.shape}")
        x0 = np.concatenate([dev.scaled_theta(start[: dev.n_theta]), start[dev.n_theta:]])
    layout, n_theta = dev.layout, dev.n_theta

    def reflections(params):
        theta, rho = params[:n_theta], params[n_theta:]
        return [np.concatenate([t, rho]) for t in layout.reflections(theta, SINGULAR_TOLERANCE)]

    if dev.size and has_gradient(spec, residual):
        params, converged, message = _quasi_newton(dev, GlsGradient(dev.scaled_spec, residual,
                                                                    dev.reml), x0, max_evals)
    elif dev.size:
        params, _value, converged, message = minimize_deviance(
            dev.scaled_objective, x0, dev.lower, max_evals,
            reflections=reflections if n_theta else None)
    else:  # ordinary least squares: nothing to optimize
        params, converged, message = x0, True, "closed form"
    theta_s = np.where(layout.diagonal, np.maximum(params[:n_theta], 0.0), params[:n_theta])
    params = np.concatenate([theta_s, params[n_theta:]])
    est = dev.estimates(params)
    singular = warn_if_singular(layout, theta_s, stacklevel=3)
    degenerate = _degenerate(residual, params[n_theta:])
    if degenerate:
        converged = False
        message = degenerate
        warnings.warn(degenerate, UserWarning, stacklevel=3)
    elif not converged:
        warn_not_converged(message, stacklevel=3)
    return RemlFit(
        spec=spec, method="REML" if reml else "ML", block_order=dev.order, theta=est.theta,
        lambdas=est.lambdas, beta=est.beta, vcov_beta=est.vcov_beta, sigma=est.sigma,
        effects=est.effects, criterion=est.criterion, deviance_ml=est.deviance_ml,
        converged=converged, optimizer_message=message, n_evals=dev.n_evals,
        is_singular=singular, elapsed=time.perf_counter() - started,
        residual_model=residual, residual_params=params[n_theta:].copy(), deviance_object=dev,
        refitter=lambda as_reml: fit_structured(spec, residual, reml=as_reml,
                                                max_evals=max_evals))
