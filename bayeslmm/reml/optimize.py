"""Fit theta by minimizing the profiled criterion (``Deviance``) and report a ``RemlFit``.

The optimizer is BOBYQA (Powell's bounded quadratic-model method, through nlopt), the
derivative-free method lme4 uses by default ("nloptwrap"), on the unit-scale data
(``core/scaling.py``) from lambda = I, with tighter tolerances than lme4's defaults.
Where every block is scalar and the system is big enough for the sparse path
(``BlockedSystem.use_dense`` False), it starts instead from an approximate-EM estimate near the
optimum (``core/moment_start.py``) with a first trust radius of ``MOMENT_START_STEP``:
MovieLens-1M shape 54 -> 26 evaluations, InstEval 108 -> ~40.

A reliable stop: BOBYQA's quadratic model is built from its first steps, and a small first
trust radius on a criterion whose optimum lies on the boundary (theta_ii = 0) let it stop
early and report success about one fit in eleven on small ``y ~ x + (x | g)`` data (issue
10).  So every optimum is checked by probing each axis (2 d evaluations); where a probe finds
a lower criterion, BOBYQA restarts from it with a fresh model (first step
``RESTART_STEP``).
Without nlopt, scipy's L-BFGS-B with central-difference gradients is used.

Dense linear algebra runs with one BLAS thread for systems up to
``core.threads.SINGLE_THREAD_MAX`` rows (``core/threads.py`` says why).
"""

from __future__ import annotations

import time

import numpy as np

from ..core.minimize import (
    INITIAL_STEP,
    SINGULAR_TOLERANCE,
    XTOL_REL,
    minimize_deviance,
    warn_if_singular,
    warn_not_converged,
)
from ..core.moment_start import moment_start
from ..core.threads import blas_threads_for
from ..spec import ModelSpec
from .deviance import Deviance
from .result import RemlFit

__all__ = ["fit_reml", "minimize_deviance", "SINGULAR_TOLERANCE"]

MOMENT_START_STEP = 0.05  # BOBYQA's first trust radius from the approximate-EM start,
#                           relative to the largest theta there
# ... and BOBYQA's relative step tolerance there: on a million rows the criterion's rounding
# noise (~1e-8 of 2.6e6) made the last 8 of 39 evaluations (~0.9 s each) wander within
# 1e-7 of theta; the criterion moved by < 3e-9
MOMENT_START_XTOL = 1e-7


def fit_reml(
    spec: ModelSpec,
    reml: bool = True,
    start: np.ndarray | None = None,
    max_evals: int = 100_000,
    deviance: Deviance | None = None,
) -> RemlFit:
    """Fit a linear mixed model by REML (default) or ML, as lme4's ``lmer``.

    Parameters
    ----------
    spec : ModelSpec
    reml : bool
        REML criterion (True) or maximum likelihood (False).
    start : array, optional
        Starting theta (lme4's theta, engine order); default lambda = I on the unit-scale
        data.
    max_evals : int
        Limit on criterion evaluations.
    deviance : Deviance, optional
        A deviance object already built for ``spec`` and ``reml`` (reused, not rebuilt).

    Returns
    -------
    RemlFit
    """
    started = time.perf_counter()
    if deviance is None or deviance.reml != bool(reml) or deviance.spec is not spec:
        deviance = Deviance(spec, reml=reml)
    layout = deviance.layout
    step, xtol = INITIAL_STEP, XTOL_REL
    if start is None:  # the moment start only pays where evaluations are expensive
        theta0 = (None if deviance.system.use_dense else
                  moment_start(deviance.scaling.scaled, deviance.order))
        if theta0 is None or theta0.shape != (layout.size,):  # one theta per block only
            theta0 = layout.initial.copy()
        else:
            step = MOMENT_START_STEP * max(1e-2, float(np.max(theta0)))
            xtol = MOMENT_START_XTOL
    else:
        start = np.asarray(start, dtype=float)
        if start.shape != (layout.size,):
            raise ValueError(f"start must have {layout.size} values (theta), got "
                             f"{start.shape}")
        theta0 = deviance.scaled_theta(start)
    evals_before = deviance.n_evals
    with blas_threads_for(deviance.system.r):
        theta_s, _value, converged, message = minimize_deviance(
            deviance.scaled_objective, theta0, layout.lower, max_evals,
            reflections=lambda theta: layout.reflections(theta, SINGULAR_TOLERANCE),
            initial_step=step, xtol_rel=xtol)
        theta_s = np.where(layout.diagonal, np.maximum(theta_s, 0.0), theta_s)
        est = deviance.estimates(theta_scaled=theta_s)
    singular = warn_if_singular(layout, theta_s, stacklevel=3)
    if not converged:
        warn_not_converged(message, stacklevel=3)
    return RemlFit(
        spec=spec,
        method="REML" if reml else "ML",
        block_order=deviance.order,
        theta=est.theta,
        lambdas=est.lambdas,
        beta=est.beta,
        vcov_beta=est.vcov_beta,
        sigma=est.sigma,
        effects=est.effects,
        criterion=est.criterion,
        deviance_ml=est.deviance_ml,
        converged=converged,
        optimizer_message=message,
        n_evals=deviance.n_evals - evals_before,
        is_singular=singular,
        elapsed=time.perf_counter() - started,
        deviance_object=deviance,
        refitter=lambda as_reml: fit_reml(spec, reml=as_reml, max_evals=max_evals),
    )
