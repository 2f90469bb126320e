"""Fit theta by minimizing the profiled criterion; assemble every estimate from L(theta).

The optimizer is BOBYQA (Powell's bounded quadratic-model method, through nlopt), the
derivative-free method lme4 uses by default ("nloptwrap"), started where lme4 starts
(lambda = I) with tighter tolerances than lme4's defaults, so the estimates agree with
lme4's strict-tolerance refits.  Without nlopt, scipy's L-BFGS-B with central-difference
gradients is used (more evaluations, same optimum).
"""

from __future__ import annotations

import time
import warnings

import numpy as np
import scipy.linalg as sla

from ..spec import ModelSpec
from .result import RemlFit
from .system import BlockedSystem

__all__ = ["fit_reml", "SINGULAR_TOLERANCE"]

SINGULAR_TOLERANCE = 1e-4  # lme4's isSingular(tol = 1e-4) on theta's diagonal
XTOL_REL = 1e-8
INITIAL_STEP = 0.1  # BOBYQA's first trust radius in theta units (nlopt's default took 1.9x
# the evaluations on Orthodont ML, same optimum)
FTOL_REL = 1e-14  # 1e-13 stopped 1e-6 short of the optimum in a flat valley (insteval_catslope)


def _minimize(objective, start: np.ndarray, lower: np.ndarray, max_evals: int):
    """Return (theta, value, n_evals, converged, message)."""
    try:
        import nlopt
    except ImportError:  # pragma: no cover - nlopt is a declared dependency
        nlopt = None
    if nlopt is not None:
        count = [0]
        best = [np.inf, start.copy()]

        def wrapped(theta, grad):
            count[0] += 1
            value = objective(theta)
            if value < best[0]:
                best[0], best[1] = value, theta.copy()
            return value

        opt = nlopt.opt(nlopt.LN_BOBYQA, start.size)
        opt.set_min_objective(wrapped)
        opt.set_lower_bounds(lower)
        opt.set_xtol_rel(XTOL_REL)
        opt.set_xtol_abs(1e-10)
        opt.set_ftol_rel(FTOL_REL)
        opt.set_ftol_abs(1e-12)
        opt.set_maxeval(max_evals)
        if INITIAL_STEP:
            opt.set_initial_step(INITIAL_STEP)
        try:
            theta = opt.optimize(start.copy())
            code = opt.last_optimize_result()
        except nlopt.RoundoffLimited:  # best point so far is still the answer
            theta, code = best[1], 6
        messages = {
            1: "NLOPT_SUCCESS", 2: "NLOPT_STOPVAL_REACHED", 3: "NLOPT_FTOL_REACHED",
            4: "NLOPT_XTOL_REACHED", 5: "NLOPT_MAXEVAL_REACHED", 6: "NLOPT_ROUNDOFF_LIMITED",
        }
        converged = code in (1, 3, 4, 6)
        return theta, objective(theta), count[0], converged, f"BOBYQA: {messages.get(code, code)}"
    from scipy.optimize import minimize

    bounds = [(lo if np.isfinite(lo) else None, None) for lo in lower]
    res = minimize(objective, start, method="L-BFGS-B", jac="3-point", bounds=bounds,
                   options={"ftol": 1e-15, "gtol": 1e-9, "maxfun": max_evals})
    return res.x, res.fun, res.nfev, bool(res.success), f"L-BFGS-B: {res.message}"


def fit_reml(
    spec: ModelSpec,
    reml: bool = True,
    start: np.ndarray | None = None,
    max_evals: int = 100_000,
) -> RemlFit:
    """Fit a linear mixed model by REML (default) or ML, as lme4's ``lmer``.

    Parameters
    ----------
    spec : ModelSpec
    reml : bool
        REML criterion (True) or maximum likelihood (False).
    start : array, optional
        Starting theta (lme4 order); default lambda = I.
    max_evals : int
        Limit on criterion evaluations.

    Returns
    -------
    RemlFit
    """
    started = time.perf_counter()
    system = BlockedSystem(spec)
    layout = system.layout
    theta0 = layout.initial.copy() if start is None else np.asarray(start, dtype=float)
    if theta0.shape != (layout.size,):
        raise ValueError(f"start must have {layout.size} values (theta), got {theta0.shape}")

    def objective(theta):
        return system.objective(theta, reml)

    theta, value, n_evals, converged, message = _minimize(
        objective, theta0, layout.lower, max_evals
    )
    theta = np.where(layout.diagonal, np.maximum(theta, 0.0), theta)
    fac = system.factorize(theta)
    criterion = system.criterion(fac, reml)
    beta, modes = system.solve(fac)
    dof = spec.n - spec.p if reml else spec.n
    sigma = float(np.sqrt(fac.pwrss / dof))
    rx = system.fixed_precision_factor(fac)
    rx_inv = sla.solve_triangular(rx, np.eye(spec.p), lower=True) if spec.p else rx
    vcov = sigma**2 * (rx_inv.T @ rx_inv)
    effects = [u @ lam.T for u, lam in zip(modes, fac.lambdas, strict=True)]
    singular = bool(np.any(theta[layout.diagonal] < SINGULAR_TOLERANCE))
    if singular:
        warnings.warn("boundary (singular) fit: see help('isSingular')", UserWarning,
                      stacklevel=3)
    if not converged:
        warnings.warn(f"the optimizer did not converge ({message}); estimates may be off",
                      UserWarning, stacklevel=3)
    deviance_ml = criterion if not reml else system.criterion(fac, reml=False)
    return RemlFit(
        spec=spec,
        method="REML" if reml else "ML",
        block_order=system.order,
        theta=theta,
        lambdas=fac.lambdas,
        beta=beta,
        vcov_beta=vcov,
        sigma=sigma,
        effects=effects,
        criterion=float(criterion),
        deviance_ml=float(deviance_ml),
        converged=converged,
        optimizer_message=message,
        n_evals=n_evals,
        is_singular=singular,
        elapsed=time.perf_counter() - started,
    )
