"""The partial sampler's log posterior in numba, for nutpie (large crossed designs).

beta and the largest block's effects are integrated out (``partial.py``); NUTS keeps the
other blocks' effects, which must be 1 x 1 (InstEval: 1,128 lecturers and 28
department-by-service effects).  theta is

    [log sd of the first block (q1), its CPCs, log sd of each kept block, log sigma,
     the kept blocks' effects (centered r, or non-centered z with r = sd z, per block)]

so its first part has ``MarginalPosterior``'s layout, and ``transform``/``add_priors`` serve
both.  One gradient reads no rows: the y rows of the sufficient statistics for
y_adj = y - Z_K r come from the kept statistics (``partial.KeptStatistics``), then the
single-block marginal kernel (which also returns the conditional modes), and
d/dr = Z_K' e / sigma^2 with e the residual at the modes, again from the statistics.  Its
cost is two passes over the non-zeros of Z_1'Z_K (MovieLens-1M shape: 1.0 M, one per
rating; InstEval: 73 k) and one over Z_K'Z_K.
"""

from __future__ import annotations

import math

import numpy as np

from .callback_abi import kernel_logp_grad
from .jit import entry
from .marginal_posterior import CovarianceLayout
from .partial import PartialStructure, csr_arrays
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
        kept_stats = partial.kept_statistics
        from .kernel_cfunc import kernel_callback

        self._args = (
            kernel_callback().address, self.q1, self.n_cpc, self.covariance.eta,
            self.kept_levels, self.centered, self.covariance.family,
            self.covariance.param_a, self.covariance.param_b,
            np.ascontiguousarray(single.cross_first), np.ascontiguousarray(single.cross),
            np.ascontiguousarray(single.cross_rest), np.asarray(mu0, dtype=float),
            np.asarray(inv_scale, dtype=float) ** 2, float(single.n),
            *csr_arrays(kept_stats.first_kept), *csr_arrays(kept_stats.kept_kept),
            kept_stats.x_kept, kept_stats.kept_y)

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
                          pa, pb, A, C, CR, mu0, wprior, n, fk_ptr, fk_idx, fk_val, kk_ptr,
                          kk_idx, kk_val, x_kept, kept_y):  # pragma: no cover - jit
    """log p(theta | y) + const; fills ``grad``; -inf (zero gradient) off the support.

    ``kernel`` is the kernel callback's address (``kernel_cfunc``); ``C``/``CR`` are the
    single structure's statistics for y itself, ``fk_*`` and ``kk_*`` the CSR arrays of
    Z_1'Z_K and Z_K'Z_K, ``x_kept`` = X_c'Z_K and ``kept_y`` = Z_K'y (``KeptStatistics``)."""
    p = x_kept.shape[0]
    n_kept = kept_levels.shape[0]
    m1 = A.shape[0]
    r = CR.shape[0]
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
    # the kept effects r
    starts = np.empty(n_kept + 1, dtype=np.int64)
    starts[0] = ncov
    for k in range(n_kept):
        starts[k + 1] = starts[k] + kept_levels[k]
    effects = theta[ncov:].copy()
    n_eff = effects.shape[0]
    for k in range(n_kept):
        if not centered[k]:
            for j in range(starts[k], starts[k + 1]):
                effects[j - ncov] *= sd_kept[k]
    # the statistics of y_adj = y - Z_K r (the y rows of C and CR)
    C_adj = C.copy()
    CR_adj = CR.copy()
    for row in range(m1 * q1):
        acc = 0.0
        for at in range(fk_ptr[row], fk_ptr[row + 1]):
            acc += fk_val[at] * effects[fk_idx[at]]
        C_adj[r - 1, row // q1, row % q1] -= acc
    kk_r = np.zeros(n_eff)          # (Z_K'Z_K) r
    yy = CR[r - 1, r - 1]
    for row in range(n_eff):
        acc = 0.0
        for at in range(kk_ptr[row], kk_ptr[row + 1]):
            acc += kk_val[at] * effects[kk_idx[at]]
        kk_r[row] = acc
        yy += effects[row] * (acc - 2.0 * kept_y[row])
    for a in range(p):
        acc = CR[r - 1, a]
        for j in range(n_eff):
            acc -= x_kept[a, j] * effects[j]
        CR_adj[r - 1, a] = acc
        CR_adj[a, r - 1] = acc
    CR_adj[r - 1, r - 1] = yy
    g_chol = np.zeros((q1, q1))
    no_rest = np.empty(0)
    modes_x = np.empty(r - 1)
    modes_b1 = np.empty((m1, q1))
    value, g_sigma = kernel_logp_grad(kernel, chol, no_rest, sigma, A, C_adj, CR_adj,
                                      np.empty((0, 2), dtype=np.int64), mu0, wprior, n,
                                      g_chol, no_rest, modes_x, modes_b1)
    if not math.isfinite(value):
        return -np.inf
    # d/dr = Z_K'e / sigma^2, e = y_adj - X beta - Z_1 b_1 at the conditional modes:
    # Z_K'y - (Z_K'Z_K) r - (X_c'Z_K)' beta - (Z_1'Z_K)' b_1
    inv_sigma2 = 1.0 / (sigma * sigma)
    g_eff = np.empty(n_eff)
    for j in range(n_eff):
        acc = kept_y[j] - kk_r[j]
        for a in range(p):
            acc -= x_kept[a, j] * modes_x[a]
        g_eff[j] = acc
    for row in range(m1 * q1):
        b = modes_b1[row // q1, row % q1]
        for at in range(fk_ptr[row], fk_ptr[row + 1]):
            g_eff[fk_idx[at]] -= fk_val[at] * b
    for j in range(n_eff):
        g_eff[j] *= inv_sigma2
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
