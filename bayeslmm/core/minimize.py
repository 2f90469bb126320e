"""Minimize a profiled criterion over theta >= lower: BOBYQA with axis probes, restarts and
a look down reflected branches (the optimizer of every REML/ML fit, the residual structures'
derivative-free path, the profiles and the parametric bootstrap).

BOBYQA is Powell's bounded quadratic-model method (through nlopt), the derivative-free
method lme4 uses by default ("nloptwrap"), with tighter tolerances than lme4's defaults.
A reliable stop: BOBYQA's quadratic model is built from its first steps, and a small first
trust radius on a criterion whose optimum lies on the boundary (theta_ii = 0) let it stop
early and report success about one fit in eleven on small ``y ~ x + (x | g)`` data (issue
10).  So every optimum is checked by probing each axis (2 d evaluations); where a probe finds
a lower criterion, BOBYQA restarts from it with a fresh model (first step ``RESTART_STEP``).
Without nlopt, scipy's L-BFGS-B with central-difference gradients is used.
"""

from __future__ import annotations

import warnings

import numpy as np

__all__ = ["minimize_deviance", "SINGULAR_TOLERANCE", "warn_if_singular", "warn_not_converged"]

SINGULAR_TOLERANCE = 1e-4  # lme4's isSingular(tol = 1e-4) on theta's diagonal (unit scale)
XTOL_REL = 1e-8
INITIAL_STEP = 0.3    # first trust radius (unit-scale theta)
RESTART_STEP = 0.2
RESTART_GAIN = 1e-7   # absolute criterion improvement by a probe that earns a restart
PROBE_STEP = 1e-3
REFLECTION_LOOK = 4   # evaluations per parameter of the look down a reflected branch
MAX_RESTARTS = 4
FTOL_REL = 1e-14  # 1e-13 stopped 1e-6 short of the optimum in a flat valley (insteval_catslope)


def _bobyqa(objective, start: np.ndarray, lower: np.ndarray, max_evals: int, step: float,
            xtol_rel: float = XTOL_REL):
    """One BOBYQA run: (theta, value, converged, message)."""
    import nlopt

    best = [np.inf, start.copy()]

    def wrapped(theta, grad):
        value = objective(theta)
        if value < best[0]:
            best[0], best[1] = value, theta.copy()
        return value

    opt = nlopt.opt(nlopt.LN_BOBYQA, start.size)
    opt.set_min_objective(wrapped)
    opt.set_lower_bounds(lower)
    opt.set_xtol_rel(xtol_rel)
    opt.set_xtol_abs(1e-10)
    opt.set_ftol_rel(FTOL_REL)
    opt.set_ftol_abs(1e-12)
    opt.set_maxeval(max(max_evals, 2 * start.size + 3))
    opt.set_initial_step(step)
    try:
        opt.optimize(start.copy())
        code = opt.last_optimize_result()
    except nlopt.RoundoffLimited:  # best point so far is still the answer
        code = 6
    messages = {
        1: "NLOPT_SUCCESS", 2: "NLOPT_STOPVAL_REACHED", 3: "NLOPT_FTOL_REACHED",
        4: "NLOPT_XTOL_REACHED", 5: "NLOPT_MAXEVAL_REACHED", 6: "NLOPT_ROUNDOFF_LIMITED",
    }
    return best[1], best[0], code in (1, 3, 4, 6), f"BOBYQA: {messages.get(code, code)}"


def _probe(objective, theta: np.ndarray, value: float, lower: np.ndarray):
    """Steps of ``PROBE_STEP`` along each axis (up, and down where the bound allows):
    the best point and value.  At a true optimum none improves; after an early stop one
    does (2 d evaluations)."""
    best, best_value = theta, value
    for i in range(theta.size):
        h = PROBE_STEP * max(1.0, abs(theta[i]))
        for step in (h, -h):
            trial = theta.copy()
            trial[i] = max(trial[i] + step, lower[i])
            if trial[i] == theta[i]:
                continue
            trial_value = objective(trial)
            if trial_value < best_value:
                best, best_value = trial, trial_value
    return best, best_value


def minimize_deviance(objective, start: np.ndarray, lower: np.ndarray, max_evals: int,
                      reflections=None, initial_step: float = INITIAL_STEP,
                      xtol_rel: float = XTOL_REL):
    """Minimize ``objective`` over theta >= lower: (theta, value, converged, message).

    BOBYQA; then axis probes around its optimum (``_probe``), and while a probe improves
    the criterion by more than ``RESTART_GAIN``, BOBYQA again from there.  Where a
    diagonal entry ends on its bound, ``reflections(theta)`` gives the points with the same
    G on the other branch (``ThetaLayout.reflections``); BOBYQA runs from each of them too
    and the best optimum wins.  ``initial_step`` is BOBYQA's first trust radius (smaller
    from a start near the optimum, ``core/moment_start.py``) and ``xtol_rel`` its relative
    step tolerance (restarts keep it)."""
    try:
        import nlopt  # noqa: F401
    except ImportError:  # pragma: no cover - nlopt is a declared dependency
        from scipy.optimize import minimize

        bounds = [(lo if np.isfinite(lo) else None, None) for lo in lower]
        res = minimize(objective, start, method="L-BFGS-B", jac="3-point", bounds=bounds,
                       options={"ftol": 1e-15, "gtol": 1e-9, "maxfun": max_evals})
        return res.x, res.fun, bool(res.success), f"L-BFGS-B: {res.message}"
    used = [0]

    def counted(theta):
        used[0] += 1
        return objective(theta)

    theta, value, converged, message = _bobyqa(counted, start, lower, max_evals, initial_step,
                                               xtol_rel)
    for _ in range(MAX_RESTARTS):
        if not converged or used[0] >= max_evals or not np.isfinite(value):
            break
        probe, probe_value = _probe(counted, theta, value, lower)
        if probe_value >= value - RESTART_GAIN:
            break
        again, again_value, ok, again_message = _bobyqa(counted, probe, lower,
                                                        max_evals - used[0], RESTART_STEP,
                                                        xtol_rel)
        if again_value < probe_value:
            theta, value, converged, message = again, again_value, ok, again_message
        else:
            theta, value = probe, probe_value
    for other in (reflections(theta) if reflections is not None and converged else []):
        if used[0] >= max_evals:
            break
        # a short look down the other branch first; the full run only where it pays
        budget = min(max_evals - used[0], REFLECTION_LOOK * (theta.size + 1))
        look, look_value, _ok, _msg = _bobyqa(counted, other, lower, budget, RESTART_STEP)
        if not look_value < value - RESTART_GAIN or used[0] >= max_evals:
            continue
        again, again_value, ok, again_message = minimize_deviance(
            counted, look, lower, max_evals - used[0])
        if ok and again_value < value - RESTART_GAIN:
            theta, value, converged, message = again, again_value, ok, again_message
    return theta, value, converged, message


def warn_if_singular(layout, theta_scaled: np.ndarray, stacklevel: int) -> bool:
    """Whether a diagonal theta ended below ``SINGULAR_TOLERANCE`` (lme4's isSingular), with
    lme4's warning; ``stacklevel`` is the caller's (the fitting function's)."""
    theta_scaled = np.asarray(theta_scaled, dtype=float)
    singular = bool(theta_scaled.size and np.any(theta_scaled[layout.diagonal]
                                                 < SINGULAR_TOLERANCE))
    if singular:
        warnings.warn("boundary (singular) fit: see help('isSingular')", UserWarning,
                      stacklevel=stacklevel + 1)
    return singular


def warn_not_converged(message: str, stacklevel: int) -> None:
    warnings.warn(f"the optimizer did not converge ({message}); estimates may be off",
                  UserWarning, stacklevel=stacklevel + 1)
