"""Confidence intervals for every fixed effect, SD, correlation and sigma of a REML/ML fit:
``fit.confint(method="wald" | "profile" | "boot", level=0.95)``, named as ``compare_reml()``
(``b[Days]``, ``sd_Subject[Intercept]``, ``cor_Subject[Intercept, Days]``, ``sigma``).

* ``wald``: estimate +- z se for the fixed effects; NaN for the variance parameters (lme4's
  ``confint(method = "Wald")``).
* ``profile``: lme4's ``confint.merMod``: the likelihood-ratio interval {v : D_prof(v) -
  D_min <= chi2_1(level)} of the ML deviance (for REML fits too, as lme4: the ML fit of the
  same spec is the reference).  A variance parameter (on the SD / correlation scale) is
  profiled by minimizing the deviance over every other variance parameter (beta profiled
  out); a fixed effect by the ML deviance of the model with that coefficient fixed (an
  offset), profiled over everything else.  Bounds (SD 0,
  correlation +-1) are returned where the profile stays below the cutoff.
* ``boot``: percentile intervals of the parametric bootstrap (``bootstrap.py``).
"""

from __future__ import annotations

import warnings
from dataclasses import replace

import numpy as np
import pandas as pd
from scipy import optimize, stats

from ..core.covariance import Diagonal, Unstructured, structure_for
from ..core.deviance import Deviance
from ..core.minimize import SINGULAR_TOLERANCE, minimize_deviance
from .varpar import VarianceParameters

__all__ = ["confint", "parameter_names", "SdCor"]


class SdCor:
    """The variance parameters of an unstructured-G fit on lme4's sd/cor scale: per block
    the lower triangle (column-major) of the matrix with SDs on the diagonal and
    correlations below it, then sigma."""

    def __init__(self, fit):
        if fit.method == "REML":
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                fit = fit.refit(reml=False)
        if fit.residual_model is not None or not fit.spec.blocks:
            raise NotImplementedError("profile intervals need random effects and no residual "
                                      "structure (use method='wald' or 'boot')")
        self.fit = fit
        self.blocks = fit.blocks
        for block in self.blocks:
            if not isinstance(structure_for(block), Unstructured | Diagonal):
                raise NotImplementedError(f"profile intervals for {block.structure}() blocks are "
                                          "not built yet (use method='wald' or 'boot')")
        self.vp = VarianceParameters(fit)
        self.layout = self.vp.dev.layout
        self.names, self.lower, self.upper, self.kinds = [], [], [], []
        for block in self.blocks:
            q = block.q
            diag_only = isinstance(structure_for(block), Diagonal)
            for c in range(q):
                for r in range(c, q):
                    if r == c:
                        self.names.append(f"sd_{block.factor}[{block.terms[r]}]")
                        self.lower.append(0.0)
                        self.upper.append(np.inf)
                        self.kinds.append("sd")
                    elif not diag_only:
                        self.names.append(f"cor_{block.factor}[{block.terms[c]}, "
                                          f"{block.terms[r]}]")
                        self.lower.append(-1.0)
                        self.upper.append(1.0)
                        self.kinds.append("cor")
        self.names.append("sigma")
        self.lower.append(0.0)
        self.upper.append(np.inf)
        self.kinds.append("sigma")
        self.lower, self.upper = np.array(self.lower), np.array(self.upper)
        self.value = self.of_fit()

    def of_fit(self) -> np.ndarray:
        out = []
        for block, cov in zip(self.blocks, self.fit.covariances(), strict=True):
            sd = np.sqrt(np.diag(cov))
            diag_only = isinstance(structure_for(block), Diagonal)
            for c in range(block.q):
                for r in range(c, block.q):
                    if r == c:
                        out.append(sd[r])
                    elif not diag_only:
                        out.append(cov[r, c] / (sd[r] * sd[c]) if sd[r] * sd[c] > 0 else 0.0)
        return np.array(out + [self.fit.sigma])

    def varpar(self, psi: np.ndarray) -> np.ndarray | None:
        """[theta, sigma] of psi (None where the correlations are not positive definite)."""
        sigma = float(psi[-1])
        thetas, at = [], 0
        for block, structure in zip(self.blocks, self.layout.structures, strict=True):
            q = block.q
            diag_only = isinstance(structure, Diagonal)
            corr, sd = np.eye(q), np.zeros(q)
            for c in range(q):
                for r in range(c, q):
                    if r == c:
                        sd[r] = psi[at]
                        at += 1
                    elif not diag_only:
                        corr[r, c] = corr[c, r] = psi[at]
                        at += 1
            try:
                chol = np.linalg.cholesky(corr + 1e-14 * np.eye(q))
            except np.linalg.LinAlgError:
                return None
            lam = (sd[:, None] * chol) / sigma
            thetas.append(structure.theta_of(lam))
        return np.concatenate(thetas + [[sigma]])

    def criterion(self, psi: np.ndarray) -> float:
        varpar = self.varpar(psi)
        if varpar is None or psi[-1] <= 0:
            return np.inf
        try:
            return self.vp.criterion(varpar)
        except (np.linalg.LinAlgError, ValueError, FloatingPointError):
            return np.inf


def _minimize_others(func, start: np.ndarray, lower, upper, fixed: int, value: float) -> float:
    """min over every entry but ``fixed`` (held at ``value``) of func, by BOBYQA."""
    import nlopt

    free = np.flatnonzero(np.arange(start.size) != fixed)
    if free.size == 0:
        x = start.copy()
        x[fixed] = value
        return float(func(x))

    def wrapped(z, grad):
        x = start.copy()
        x[free] = z
        x[fixed] = value
        return float(func(x))

    lo, hi = lower[free], upper[free]
    z0 = np.clip(start[free], lo + 1e-10 * (np.isfinite(lo)), np.where(np.isfinite(hi),
                                                                        hi - 1e-10, np.inf))
    opt = nlopt.opt(nlopt.LN_BOBYQA, free.size)
    opt.set_min_objective(wrapped)
    opt.set_lower_bounds(np.where(np.isfinite(lo), lo, -1e300))
    opt.set_upper_bounds(np.where(np.isfinite(hi), hi, 1e300))
    opt.set_xtol_rel(1e-8)
    opt.set_ftol_abs(1e-9)
    opt.set_maxeval(1000)
    step = np.maximum(0.05 * np.abs(z0), 1e-3)
    opt.set_initial_step(step)
    try:
        z = opt.optimize(z0)
    except nlopt.RoundoffLimited:
        z = z0
    x = start.copy()
    x[free] = z
    x[fixed] = value
    return float(func(x))


def _endpoint(profile, estimate: float, bound: float, cutoff: float, scale: float) -> float:
    """The v between estimate and bound where profile(v) crosses cutoff (bound if never)."""
    direction = 1.0 if bound > estimate else -1.0
    step = max(abs(scale), 1e-8)
    inner = estimate
    for _ in range(60):
        outer = estimate + direction * step
        if (direction > 0 and outer >= bound) or (direction < 0 and outer <= bound):
            outer = bound
        if profile(outer) > cutoff:
            return optimize.brentq(lambda v: profile(v) - cutoff, min(inner, outer),
                                   max(inner, outer), xtol=1e-10 * max(1.0, abs(estimate)),
                                   rtol=1e-10)
        if outer == bound:
            return bound
        inner, step = outer, step * 2.0
    return bound


def parameter_names(fit) -> list[str]:
    names = [f"b[{n}]" for n in fit.spec.x_names]
    if fit.residual_model is None and fit.spec.blocks:
        try:
            names += SdCor(fit).names
        except NotImplementedError:
            names += ["sigma"]
    else:
        names += ["sigma"]
    return names


def _wald(fit, level: float) -> pd.DataFrame:
    z = stats.norm.ppf(0.5 + level / 2.0)
    se = np.sqrt(np.diag(fit.vcov_beta))
    rows = {f"b[{n}]": (b - z * s, b + z * s) for n, b, s in
            zip(fit.spec.x_names, fit.beta, se, strict=True)}
    for name in parameter_names(fit)[fit.spec.p:]:
        rows[name] = (np.nan, np.nan)
    return pd.DataFrame(rows, index=["lower", "upper"]).T


def _ml_criterion(spec) -> float:
    """The ML deviance of ``spec`` at its optimum (a fixed effect's profile point)."""
    dev = Deviance(spec, reml=False)
    layout = dev.layout
    _theta, value, _ok, _msg = minimize_deviance(
        dev.scaled_objective, layout.initial.copy(), layout.lower, 100_000,
        reflections=lambda t: layout.reflections(t, SINGULAR_TOLERANCE))
    return float(dev.scaling.criterion_back(value, False))


def _profile(fit, level: float) -> pd.DataFrame:
    cutoff = stats.chi2.ppf(level, 1)
    sdcor = SdCor(fit)
    psi0 = sdcor.value
    d_min = sdcor.criterion(psi0)
    rows = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # fixed effects: ML deviance with the coefficient fixed (lme4, REML fits included)
        spec = fit.spec
        ml = fit.refit(reml=False)
        se = np.sqrt(np.diag(ml.vcov_beta))
        for j, name in enumerate(spec.x_names):
            reduced_names = [n for k, n in enumerate(spec.x_names) if k != j]

            def profile(b, j=j, reduced_names=reduced_names):
                reduced = replace(spec, y=spec.y - spec.X[:, j] * b,
                                  X=np.delete(spec.X, j, axis=1), x_names=reduced_names,
                                  fixed_design=None)
                return _ml_criterion(reduced) - ml.criterion

            b0 = ml.beta[j]
            rows[f"b[{name}]"] = (_endpoint(profile, b0, -np.inf, cutoff, se[j]),
                                  _endpoint(profile, b0, np.inf, cutoff, se[j]))
        for k, name in enumerate(sdcor.names):
            def profile(v, k=k):
                return _minimize_others(sdcor.criterion, psi0, sdcor.lower, sdcor.upper, k,
                                        v) - d_min

            scale = 0.2 * abs(psi0[k]) if sdcor.kinds[k] != "cor" else 0.1
            rows[name] = (_endpoint(profile, psi0[k], sdcor.lower[k], cutoff, scale),
                          _endpoint(profile, psi0[k], sdcor.upper[k], cutoff, scale))
    order = parameter_names(fit)
    return pd.DataFrame(rows, index=["lower", "upper"]).T.loc[order]


def confint(fit, method: str = "profile", level: float = 0.95, n_boot: int = 1000,
            random_seed: int | None = None) -> pd.DataFrame:
    """Intervals (columns ``lower, upper``) for every parameter (see the module docstring)."""
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    key = str(method).lower()
    if key == "wald":
        return _wald(fit, level)
    if key == "profile":
        return _profile(fit, level)
    if key in ("boot", "bootstrap"):
        from .bootstrap import bootstrap

        reps = bootstrap(fit, n=n_boot, random_seed=random_seed, progressbar=False)
        alpha = (1.0 - level) / 2.0
        table = reps.quantile([alpha, 1.0 - alpha]).T
        table.columns = ["lower", "upper"]
        return table
    raise ValueError(f"method must be 'wald', 'profile' or 'boot', got {method!r}")
