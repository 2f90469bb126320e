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
import os
import sys
import time
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd

from ..core.minimize import SINGULAR_TOLERANCE, minimize_deviance
from ..core.statistics import StatisticsAccumulator
from .varpar import deviance_of

__all__ = ["bootstrap", "replicate_names"]


def replicate_names(fit) -> list[str]:
    names = [f"b[{n}]" for n in fit.spec.x_names]
    for block in fit.blocks:
        names += [f"sd_{block.factor}[{t}]" for t in block.terms]
        names += [f"cor_{block.factor}[{block.terms[a]}, {block.terms[b]}]"
                  for a in range(block.q) for b in range(a + 1, block.q) if block.correlated]
    return names + ["sigma"]


def _parameter_rows(blocks, beta: np.ndarray, sigma: np.ndarray,
                    lambdas: list[np.ndarray]) -> np.ndarray:
    """Rows named by ``replicate_names`` from (r, p) fixed effects, (r,) sigmas and per block
    (r, q, q) relative factors, all in the data's units: b, then per block its SDs and
    correlations (of G = sigma^2 lambda lambda'), then sigma."""
    out = [beta]
    for block, lam in zip(blocks, lambdas, strict=True):
        cov = sigma[:, None, None] ** 2 * np.einsum("rab,rcb->rac", lam, lam)
        sd = np.sqrt(np.einsum("raa->ra", cov))
        out.append(sd)
        if block.correlated:
            for a in range(block.q):
                for b in range(a + 1, block.q):
                    denom = sd[:, a] * sd[:, b]
                    with np.errstate(invalid="ignore", divide="ignore"):
                        out.append(np.where(denom > 0, cov[:, a, b] / denom, np.nan)[:, None])
    out.append(sigma[:, None])
    return np.hstack(out)


def _simulate(fit, rng, covs_chol, mean) -> np.ndarray:
    """One simulated response in the data's units: e ~ N(0, sigma^2), then per block
    b ~ N(0, G) per level (the draws in this order, so a seed gives the same responses to
    either engine)."""
    y = mean + fit.sigma * rng.standard_normal(fit.spec.n)
    for block, chol in zip(fit.blocks, covs_chol, strict=True):
        effects = rng.standard_normal((block.n_levels, block.q)) @ chol.T
        y = y + block.z_times(effects)
    return y


COMPILED_MAX_ITER = 200  # quasi-Newton iterations
COMPILED_GTOL = 1e-5     # |gradient| of the unit-scale criterion at the stop (x max(1, |f|/1000))


def _compiled_eligible(fit, dev) -> bool:
    """Blocks that ``bootstrap_kernel`` refits: every block on the same grouping factor
    (one block, or ``(x || g)``'s blocks: together one block with a block-diagonal lambda),
    each unstructured or diagonal."""
    blocks = [dev.scaling.scaled.blocks[k] for k in dev.order]
    first = blocks[0]
    return (fit.spec.p > 0
            and all(s.kind in ("us", "diag") for s in dev.layout.structures)
            and all(b.n_levels == first.n_levels and np.array_equal(b.codes, first.codes)
                    for b in blocks[1:]))


class _CompiledRefits:
    """The fixed statistics of the merged block on the unit scale, for ``refit_replicates``:
    the blocks' columns side by side in engine order, so the kernel's theta is the layout's
    (each block's lambda entries shifted to its columns)."""

    def __init__(self, dev):
        scaled = dev.scaling.scaled
        blocks = [scaled.blocks[k] for k in dev.order]
        m, p = blocks[0].n_levels, scaled.p
        self.codes = np.ascontiguousarray(blocks[0].codes, dtype=np.int64)
        self.zcols = np.ascontiguousarray(np.column_stack([b.columns for b in blocks]),
                                          dtype=float)
        q = self.zcols.shape[1]
        self.X = np.ascontiguousarray(scaled.X, dtype=float)
        # the core's statistics of the merged block (the response's parts are per replicate)
        acc = StatisticsAccumulator([(m, q)], p)
        acc.add([self.codes], [self.zcols], self.X, np.zeros(scaled.n))
        stats = acc.result()
        self.A = np.ascontiguousarray(stats.first)
        self.B = np.ascontiguousarray(
            stats.cross[:p].toarray().reshape(p, m, q).transpose(1, 2, 0))   # Z_j'X
        self.XtX = np.ascontiguousarray(stats.rest[:p, :p])
        rows, cols, offset = [], [], 0
        for structure in dev.layout.structures:
            if structure.kind == "us":
                r, c = np.asarray(structure.rows), np.asarray(structure.cols)
            else:
                r = c = np.arange(structure.q)
            rows.append(r + offset)
            cols.append(c + offset)
            offset += structure.q
        self.rows = np.ascontiguousarray(np.concatenate(rows), dtype=np.int64)
        self.cols = np.ascontiguousarray(np.concatenate(cols), dtype=np.int64)
        self.reml = dev.reml

    def run(self, Y_scaled: np.ndarray, theta0: np.ndarray, pool=None, workers: int = 1):
        """Refit the rows of ``Y_scaled``, split over ``workers`` threads of ``pool`` (the
        kernel releases the GIL)."""
        from .bootstrap_kernel import refit_replicates

        theta0 = np.ascontiguousarray(theta0, dtype=float)

        def part(Y):
            return refit_replicates(np.ascontiguousarray(Y), self.codes, self.zcols, self.X,
                                    self.A, self.B, self.XtX, theta0, self.rows, self.cols,
                                    self.reml, COMPILED_MAX_ITER, COMPILED_GTOL)

        if pool is None or workers < 2 or len(Y_scaled) < 2 * workers:
            return part(Y_scaled)
        pieces = list(pool.map(part, np.array_split(Y_scaled, workers)))
        return tuple(np.concatenate([piece[i] for piece in pieces]) for i in range(5))


def _general_refit(dev, blocks, y_scaled, theta0) -> np.ndarray:
    system = dev.system.with_response(y_scaled)
    layout = dev.layout
    theta, _v, _ok, _msg = minimize_deviance(
        lambda t, s=system: s.objective(t, dev.reml), theta0.copy(), layout.lower,
        10_000, reflections=lambda t: layout.reflections(t, SINGULAR_TOLERANCE))
    theta = np.where(layout.diagonal, np.maximum(theta, 0.0), theta)
    replica = copy.copy(dev)
    replica.system = system
    est = replica.estimates(theta_scaled=theta)
    return _parameter_rows(blocks, est.beta[None, :], np.array([est.sigma]),
                           [lam[None] for lam in est.lambdas])[0]


def _compiled_values(dev, blocks, theta_s, beta_s, sigma_s) -> np.ndarray:
    """``_parameter_rows`` of the kernel's unit-scale results (vectorized maps back)."""
    scaling = dev.scaling
    # einsum, not a BLAS product: a replicate's row does not depend on the chunk's size
    beta = scaling.y_scale * np.einsum("rj,ij->ri", beta_s, scaling.beta_map())
    if scaling.intercept is not None:
        beta[:, scaling.intercept] += scaling.y_shift
    lambdas = []
    layout = dev.layout
    for block, sl, structure, k in zip(blocks, layout.slices, layout.structures, dev.order,
                                       strict=True):
        lam = np.zeros((theta_s.shape[0], block.q, block.q))
        if structure.kind == "us":
            lam[:, structure.rows, structure.cols] = theta_s[:, sl]
        else:
            idx = np.arange(block.q)
            lam[:, idx, idx] = theta_s[:, sl]
        lambdas.append(lam / scaling.block_scale(k)[None, :, None])
    return _parameter_rows(blocks, beta, scaling.y_scale * sigma_s, lambdas)


def bootstrap(fit, n: int = 1000, random_seed: int | None = None,
              progressbar: bool = True, engine: str = "auto",
              cores: int | None = None) -> pd.DataFrame:
    """``n`` parametric-bootstrap replicates of every parameter (rows: replicates).

    ``engine``: ``"compiled"`` refits in ``bootstrap_kernel`` (one random-effects block, or
    several on one grouping factor as ``(x || g)``, with unstructured or diagonal G; all
    cores), ``"general"`` through the fit's deviance object and its optimizer (any model),
    ``"auto"`` the first where it applies.  Both simulate the same responses from a seed,
    and the replicates do not depend on ``cores`` (threads for the compiled refits;
    default: every core)."""
    if not isinstance(n, int | np.integer) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    if engine not in ("auto", "compiled", "general"):
        raise ValueError(f"engine must be 'auto', 'compiled' or 'general', got {engine!r}")
    if cores is not None and (not isinstance(cores, int | np.integer) or cores < 1):
        raise ValueError(f"cores must be a positive integer (or None), got {cores!r}")
    if fit.residual_model is not None or not fit.spec.blocks:
        raise NotImplementedError("the bootstrap of fits with a residual structure (or without "
                                  "random effects) is not built yet")
    dev = deviance_of(fit)
    eligible = _compiled_eligible(fit, dev)
    if engine == "compiled" and not eligible:
        raise ValueError("the compiled bootstrap takes one random-effects block (or several "
                         "on one grouping factor, as (x || g)) with an unstructured or "
                         "diagonal G; use engine='general'")
    compiled = _CompiledRefits(dev) if eligible and engine != "general" else None
    workers = int(cores) if cores is not None else (os.cpu_count() or 1)
    pool = ThreadPoolExecutor(workers) if compiled is not None and workers > 1 else None
    rng = np.random.default_rng(random_seed)
    spec, scaling = fit.spec, dev.scaling
    blocks = fit.blocks                        # engine order, as fit.lambdas
    chols = [np.linalg.cholesky(cov + 1e-14 * np.eye(block.q) * max(cov.max(), 1e-300))
             for block, cov in zip(blocks, fit.covariances(), strict=True)]
    mean = spec.X @ fit.beta
    theta0 = dev.scaled_theta(fit.theta)
    rows = np.empty((n, len(replicate_names(fit))))
    started = time.perf_counter()
    show = progressbar and n >= 200
    chunk = max(1, min(max(n // 20, 1), 4_000_000 // max(spec.n, 1)))
    done = 0
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            while done < n:
                size = min(chunk, n - done)
                Y = np.empty((size, spec.n))
                for r in range(size):
                    Y[r] = (_simulate(fit, rng, chols, mean) - scaling.y_shift) / scaling.y_scale
                if compiled is not None:
                    theta_s, beta_s, sigma_s, _evals, ok = compiled.run(Y, theta0, pool, workers)
                    rows[done:done + size] = _compiled_values(dev, blocks, theta_s, beta_s,
                                                              sigma_s)
                    for r in np.flatnonzero(~ok):   # the rare stall: the general optimizer
                        rows[done + r] = _general_refit(dev, blocks, Y[r], theta0)
                else:
                    for r in range(size):
                        rows[done + r] = _general_refit(dev, blocks, Y[r], theta0)
                done += size
                if show:
                    elapsed = time.perf_counter() - started
                    print(f"\rbootstrap {done}/{n} ({elapsed:.0f} s)", end="", file=sys.stderr,
                          flush=True)
    finally:
        if pool is not None:
            pool.shutdown()
    if show:
        print(file=sys.stderr)
    return pd.DataFrame(rows, columns=replicate_names(fit))
