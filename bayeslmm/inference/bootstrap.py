"""Parametric bootstrap of a REML/ML fit (MixedModels.jl's ``parametricbootstrap``, lme4's
``bootMer``): ``fit.bootstrap(n=1000, random_seed=None)`` simulates n responses from the
fitted model (b ~ N(0, G_hat) per level, e ~ N(0, sigma_hat^2)), refits each and returns the
replicates' parameters, named as ``compare_reml()``.

Each refit reuses the fit's deviance object: only the response's cross products change
(``BlockedSystem.with_response``), the optimizer starts at the fitted theta, and the maps
back to the data's units are the original ones - no formula, design or statistics rebuilt.
"""

from __future__ import annotations

import copy
import sys
import time
import warnings

import numpy as np
import pandas as pd

from ..core.minimize import SINGULAR_TOLERANCE, minimize_deviance
from .varpar import deviance_of

__all__ = ["bootstrap", "replicate_names"]


def replicate_names(fit) -> list[str]:
    names = [f"b[{n}]" for n in fit.spec.x_names]
    for block in fit.blocks:
        names += [f"sd_{block.factor}[{t}]" for t in block.terms]
        names += [f"cor_{block.factor}[{block.terms[a]}, {block.terms[b]}]"
                  for a in range(block.q) for b in range(a + 1, block.q) if block.correlated]
    return names + ["sigma"]


def _values(fit_like, blocks) -> list[float]:
    out = list(fit_like.beta)
    sigma = fit_like.sigma
    for block, lam in zip(blocks, fit_like.lambdas, strict=True):
        cov = sigma**2 * lam @ lam.T
        sd = np.sqrt(np.diag(cov))
        out += list(sd)
        if block.correlated:
            for a in range(block.q):
                for b in range(a + 1, block.q):
                    out.append(cov[a, b] / (sd[a] * sd[b]) if sd[a] * sd[b] > 0 else np.nan)
    return out + [sigma]


def bootstrap(fit, n: int = 1000, random_seed: int | None = None,
              progressbar: bool = True) -> pd.DataFrame:
    """``n`` parametric-bootstrap replicates of every parameter (rows: replicates)."""
    if not isinstance(n, int | np.integer) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    if fit.residual_model is not None or not fit.spec.blocks:
        raise NotImplementedError("the bootstrap of fits with a residual structure (or without "
                                  "random effects) is not built yet")
    dev = deviance_of(fit)
    rng = np.random.default_rng(random_seed)
    spec, scaling = fit.spec, dev.scaling
    blocks = fit.blocks                        # engine order, as fit.lambdas
    covs = fit.covariances()
    mean = spec.X @ fit.beta
    theta0 = dev.scaled_theta(fit.theta)
    layout = dev.layout
    rows = np.empty((n, len(replicate_names(fit))))
    started = time.perf_counter()
    report_every = max(n // 20, 1)
    show = progressbar and n >= 200
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for r in range(n):
            y = mean + fit.sigma * rng.standard_normal(spec.n)
            for block, cov in zip(blocks, covs, strict=True):
                chol = np.linalg.cholesky(cov + 1e-14 * np.eye(block.q) * max(cov.max(), 1e-300))
                effects = rng.standard_normal((block.n_levels, block.q)) @ chol.T
                y = y + block.z_times(effects)
            y_scaled = (y - scaling.y_shift) / scaling.y_scale
            system = dev.system.with_response(y_scaled)
            theta, _v, _ok, _msg = minimize_deviance(
                lambda t, s=system: s.objective(t, dev.reml), theta0.copy(), layout.lower,
                10_000, reflections=lambda t: layout.reflections(t, SINGULAR_TOLERANCE))
            theta = np.where(layout.diagonal, np.maximum(theta, 0.0), theta)
            replica = copy.copy(dev)
            replica.system = system
            rows[r] = _values(replica.estimates(theta_scaled=theta), blocks)
            if show and (r + 1) % report_every == 0:
                elapsed = time.perf_counter() - started
                print(f"\rbootstrap {r + 1}/{n} ({elapsed:.0f} s)", end="", file=sys.stderr,
                      flush=True)
    if show:
        print(file=sys.stderr)
    return pd.DataFrame(rows, columns=replicate_names(fit))
