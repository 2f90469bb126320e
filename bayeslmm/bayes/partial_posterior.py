"""The partial sampler's log posterior in numba, for nutpie (large crossed designs).

beta and the largest block's effects are integrated out (``partial.py``); NUTS keeps the
other blocks' effects, which must be 1 x 1 (InstEval: 1,128 lecturers and 28
department-by-service effects).  theta is

    [log sd of the first block (q1), its CPCs, log sd of each kept block, log sigma,
     the kept blocks' effects (centered r, or non-centered z with r = sd z, per block)]

so its first part has ``MarginalPosterior``'s layout, and ``transform``/``add_priors`` serve
both.  One gradient is O(n): y_adj = y - sum_k Z_k r_k, the y-rows of the sufficient
statistics recomputed from y_adj, the single-block marginal kernel (which also returns the
conditional modes), and d/dr_k = Z_k' e / sigma^2 with e the residual at the modes.
"""

from __future__ import annotations

import math

import numpy as np

from .callback_abi import kernel_logp_grad
from .jit import entry
from .marginal_posterior import CovarianceLayout
from .partial import PartialStructure
from .posterior_terms import add_priors, finite_or_reject, transform

__all__ = ["PartialPosterior", "partial_log_posterior"]


class PartialPosterior:
    """The partial sampler's target density for one model (see the module docstring).

    Parameters
    ----------
    partial : PartialStructure
        Must be eligible, with every kept block 1 x 1.
    priors : ResolvedPriors
    mu0, inv_scale : ndarray
        Normal prior means and 1/sd of the centered fixed effects (0 for flat priors).
    centered : dict
        factor -> whether its effects are sampled centered.
    """

    def __init__(self, partial: PartialStructure, priors, mu0: np.ndarray,
                 inv_scale: np.ndarray, centered: dict[str, bool]):
        self.partial = partial
        single = partial.single
        self.kept = partial.kept
        self.covariance = CovarianceLayout(partial.first, partial.kept, priors)
        self.q1, self.n_cpc = self.covariance.q1, self.covariance.n_cpc
        self.n_kept = len(self.kept)
        self.ncov = self.covariance.ndim
        self.kept_levels = np.array([b.n_levels for b in self.kept], dtype=np.int64)
        self.ndim = self.ncov + int(self.kept_levels.sum())
        self.centered = np.array([bool(centered.get(b.factor, False)) for b in self.kept])
        first = partial.first
        spec = single.spec
        from .kernel_cfunc import kernel_callback

        self._args = (
            kernel_callback().address, self.q1, self.n_cpc, self.covariance.eta,
            self.kept_levels, self.centered, self.covariance.family,
            self.covariance.param_a, self.covariance.param_b,
            np.ascontiguousarray(single.cross_first), np.ascontiguousarray(single.cross),
            np.ascontiguousarray(single.cross_rest), np.asarray(mu0, dtype=float),
            np.asarray(inv_scale, dtype=float) ** 2, np.ascontiguousarray(spec.y, dtype=float),
            np.ascontiguousarray(single.xc), np.ascontiguousarray(first.codes, dtype=np.int64),
            np.ascontiguousarray(first.columns, dtype=float),
            np.ascontiguousarray(np.array([b.codes for b in self.kept], dtype=np.int64)),
            np.ascontiguousarray(np.array([b.columns[:, 0] for b in self.kept], dtype=float)))

    def logp_and_grad(self, theta: np.ndarray) -> tuple[float, np.ndarray]:
        """Log posterior density (up to a constant) and its gradient at ``theta``."""
        grad = np.empty(self.ndim)
        value = partial_log_posterior(np.asarray(theta, dtype=float), grad, *self._args)
        return value, grad

    def effects(self, theta: np.ndarray) -> list[np.ndarray]:
        """The kept blocks' effects (D, m_k) for draws ``theta`` (D, ndim)."""
        theta = np.asarray(theta, dtype=float).reshape(-1, self.ndim)
        sd_kept = self.covariance.constrain(theta[:, :self.ncov])[2]
        out, start = [], self.ncov
        for k, levels in enumerate(self.kept_levels):
            values = theta[:, start:start + levels]
            out.append(values if self.centered[k] else values * sd_kept[:, k:k + 1])
            start += levels
        return out


@entry
def partial_log_posterior(theta, grad, kernel, q1, ncpc, eta, kept_levels, centered, family,
                          pa, pb, A, C0, CR0, mu0, wprior, y, xc, codes1, cols1, kept_codes,
                          kept_cols):  # pragma: no cover - jit
    """log p(theta | y) + const; fills ``grad``; -inf (zero gradient) off the support.

    ``kernel`` is the kernel callback's address (``kernel_cfunc``); ``C0``/``CR0`` are the
    statistics with the y row to be recomputed; ``kept_codes`` and ``kept_cols`` are (K, n):
    level and column value of every row for each kept block."""
    n = y.shape[0]
    p = xc.shape[1]
    n_kept = kept_levels.shape[0]
    m1 = A.shape[0]
    r = CR0.shape[0]
    ncov = q1 + ncpc + n_kept + 1
    for i in range(theta.shape[0]):
        grad[i] = 0.0
    w = np.empty((q1, q1))
    chol = np.empty((q1, q1))
    sd_kept = np.empty(n_kept)   # the kept blocks are 1 x 1: their packed factors are SDs
    w_kept = np.empty(n_kept)
    kept_meta = np.zeros((n_kept, 2), dtype=np.int64)
    for k in range(n_kept):
        kept_meta[k, 0] = 1
    kept_eta = np.ones(n_kept)
    sigma, lkj = transform(theta[:ncov], q1, ncpc, eta, kept_meta, kept_eta, w, chol, w_kept,
                           sd_kept)
    # the kept effects and y adjusted for them
    starts = np.empty(n_kept + 1, dtype=np.int64)
    starts[0] = ncov
    for k in range(n_kept):
        starts[k + 1] = starts[k] + kept_levels[k]
    effects = theta[ncov:].copy()
    for k in range(n_kept):
        if not centered[k]:
            for j in range(starts[k], starts[k + 1]):
                effects[j - ncov] *= sd_kept[k]
    # y_adj and the statistics involving it, in one pass over the rows
    y_adj = np.empty(n)
    C = C0.copy()
    CR = CR0.copy()
    for j in range(m1):
        for a in range(q1):
            C[r - 1, j, a] = 0.0
    for a in range(r):
        CR[r - 1, a] = 0.0
    for i in range(n):
        yi = y[i]
        for k in range(n_kept):
            yi -= effects[starts[k] - ncov + kept_codes[k, i]] * kept_cols[k, i]
        y_adj[i] = yi
        for a in range(q1):
            C[r - 1, codes1[i], a] += cols1[i, a] * yi
        for a in range(p):
            CR[r - 1, a] += xc[i, a] * yi
        CR[r - 1, r - 1] += yi * yi
    for a in range(p):
        CR[a, r - 1] = CR[r - 1, a]
    g_chol = np.zeros((q1, q1))
    no_rest = np.empty(0)
    modes_x = np.empty(r - 1)
    modes_b1 = np.empty((m1, q1))
    value, g_sigma = kernel_logp_grad(kernel, chol, no_rest, sigma, A, C, CR,
                                      np.empty((0, 2), dtype=np.int64), mu0, wprior, float(n),
                                      g_chol, no_rest, modes_x, modes_b1)
    if not math.isfinite(value):
        return -np.inf
    # d/dr_k = Z_k' e / sigma^2, e = y_adj - X beta - Z_1 b_1 at the conditional modes
    sigma2 = sigma * sigma
    g_eff = np.zeros(effects.shape[0])
    for i in range(n):
        e = y_adj[i]
        for a in range(p):
            e -= xc[i, a] * modes_x[a]
        for a in range(q1):
            e -= modes_b1[codes1[i], a] * cols1[i, a]
        e /= sigma2
        for k in range(n_kept):
            g_eff[starts[k] - ncov + kept_codes[k, i]] += e * kept_cols[k, i]
    # the kept effects' prior N(0, sd_k^2), centered or not
    g_sd = np.zeros(n_kept)
    for k in range(n_kept):
        sd = sd_kept[k]
        for j in range(starts[k], starts[k + 1]):
            t = theta[j]
            g = g_eff[j - ncov]
            if centered[k]:
                value -= 0.5 * t * t / (sd * sd)
                grad[j] = g - t / (sd * sd)
                g_sd[k] += t * t / (sd * sd * sd)
            else:
                value -= 0.5 * t * t
                grad[j] = sd * g - t
                g_sd[k] += t * g
        if centered[k]:
            value -= kept_levels[k] * math.log(sd)
            g_sd[k] -= kept_levels[k] / sd
    value += lkj + add_priors(theta[:ncov], grad[:ncov], q1, ncpc, eta, w, g_chol, kept_meta,
                              kept_eta, w_kept, g_sd, g_sigma, family, pa, pb)
    return finite_or_reject(value, grad)
