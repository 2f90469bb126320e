"""The partial sampler's log posterior in numba, for nutpie (large crossed designs).

beta, the largest block's effects and the small blocks' are integrated out (``partial.py``);
NUTS keeps the other blocks' effects, of any shape q_k x q_k (InstEval: the 1,128
lecturers, with the 28 department-by-service effects integrated).  theta is

    [u of the first block's SDs (q1), its CPCs, for each integrated and then each kept
     block: u of its SDs (q_k), its CPCs; log sigma; the kept blocks' effects level-major
     (centered r_j, or non-centered z_j with r_j = L_k z_j, per block)]

so its first part has ``MarginalPosterior``'s layout, and ``transform``/``add_priors`` serve
both.  One gradient reads no rows: the y rows of the sufficient statistics for
y_adj = y - Z_K r come from the kept statistics (``partial.KeptStatistics``), then the
marginal kernel over [Z_1, Z_I] (which also returns the conditional modes), and
d/dr = Z_K' e / sigma^2 with e the residual at the modes, again from the statistics.  Its
cost is two passes over the non-zeros of Z_1'Z_K (MovieLens-1M shape: 1.0 M, one per
rating; InstEval: 73 k), one over Z_K'Z_K and two over the dense R'Z_K.
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
        Must be eligible.
    priors : ResolvedPriors
    mu0, inv_scale : ndarray
        Normal prior means and 1/sd of the centered fixed effects (0 for flat priors).
    centered : dict
        factor -> whether its effects are sampled centered.
    pivots : ndarray or None
        The SDs' pivots (``CovarianceLayout``; default: log s for every SD).
    """

    def __init__(self, partial: PartialStructure, priors, mu0: np.ndarray,
                 inv_scale: np.ndarray, centered: dict[str, bool],
                 pivots: np.ndarray | None = None):
        self.partial = partial
        single = partial.single
        self.kept = partial.kept
        self.n_integrated = len(partial.integrated)
        self.covariance = CovarianceLayout(partial.first, [*partial.integrated, *partial.kept],
                                           priors, pivots)
        self.q1, self.n_cpc = self.covariance.q1, self.covariance.n_cpc
        self.n_kept = len(self.kept)
        self.ncov = self.covariance.ndim
        self.kept_levels = np.array([b.n_levels for b in self.kept], dtype=np.int64)
        self.kept_q = np.array(self.covariance.rest_q[self.n_integrated:], dtype=np.int64)
        self.ndim = self.ncov + int((self.kept_levels * self.kept_q).sum())
        self.centered = np.array([bool(centered.get(b.factor, False)) for b in self.kept])
        kept_stats = partial.kept_statistics
        from .kernel_cfunc import kernel_callback

        self._args = (
            kernel_callback().address, self.q1, self.n_cpc, self.covariance.eta,
            self.kept_levels, np.ascontiguousarray(single.rest, dtype=np.int64),
            self.covariance.rest_meta, self.covariance.rest_eta,
            self.centered, self.covariance.family,
            self.covariance.param_a, self.covariance.param_b, self.covariance.pivot,
            np.ascontiguousarray(single.cross_first), np.ascontiguousarray(single.cross),
            np.ascontiguousarray(single.cross_rest), np.asarray(mu0, dtype=float),
            np.asarray(inv_scale, dtype=float) ** 2, float(single.n),
            *csr_arrays(kept_stats.first_kept), *csr_arrays(kept_stats.kept_kept),
            kept_stats.rest_kept, kept_stats.kept_y)

    def logp_and_grad(self, theta: np.ndarray) -> tuple[float, np.ndarray]:
        """Log posterior density (up to a constant) and its gradient at ``theta``."""
        grad = np.empty(self.ndim)
        value = partial_log_posterior(np.asarray(theta, dtype=float), grad, *self._args)
        return value, grad

    def kept_factors(self, theta: np.ndarray) -> list[np.ndarray]:
        """Each kept block's Cholesky factor L_k (D, q_k, q_k) for draws ``theta`` (D, n)
        whose first ``ncov`` entries are the covariance part (n = ncov or ndim)."""
        theta = np.atleast_2d(np.asarray(theta, dtype=float))
        blocks, _ = self.covariance.constrain_blocks(theta[:, :self.ncov])
        return [sd[:, :, None] * corr for sd, corr in blocks[1 + self.n_integrated:]]

    def effects(self, theta: np.ndarray) -> list[np.ndarray]:
        """The kept blocks' effects (D, m_k, q_k) for draws ``theta`` (D, ndim)."""
        theta = np.asarray(theta, dtype=float).reshape(-1, self.ndim)
        factors = self.kept_factors(theta)
        out, start = [], self.ncov
        for k, (levels, q) in enumerate(zip(self.kept_levels, self.kept_q, strict=True)):
            values = theta[:, start:start + levels * q].reshape(len(theta), levels, q)
            # non-centered: r_j = L z_j for every level j
            out.append(values if self.centered[k]
                       else values @ np.swapaxes(factors[k], 1, 2))
            start += levels * q
        return out

    def effects_theta(self, effects: list[np.ndarray], theta_cov: np.ndarray) -> np.ndarray:
        """The effects part of theta for effects [(m_k, q_k)] at covariance part
        ``theta_cov`` (the inverse of ``effects``; z_j = L^-1 r_j where non-centered)."""
        factors = self.kept_factors(theta_cov)
        parts = []
        for k, values in enumerate(effects):
            values = np.asarray(values, dtype=float)
            if not self.centered[k]:
                values = np.linalg.solve(factors[k][0], values.T).T
            parts.append(values.reshape(-1))
        return np.concatenate(parts)


@entry
def partial_log_posterior(theta, grad, kernel, q1, ncpc, eta, kept_levels, integrated,
                          rest_meta, rest_eta, centered, family, pa, pb, pivot, A, C, CR, mu0,
                          wprior, n, fk_ptr, fk_idx, fk_val, kk_ptr, kk_idx, kk_val, rest_kept,
                          kept_y):  # pragma: no cover - jit
    """log p(theta | y) + const; fills ``grad``; -inf (zero gradient) off the support.

    ``kernel`` is the kernel callback's address (``kernel_cfunc``); ``integrated`` holds
    the integrated blocks' (levels, q) (the single structure's ``rest``), ``kept_levels``
    the kept blocks' levels; ``rest_meta`` (q_k, CPCs_k) and ``rest_eta`` describe the
    covariance parameters of the integrated and then the kept blocks
    (``CovarianceLayout.rest_meta``/``rest_eta``); ``C``/``CR`` are the single structure's
    statistics for y itself, ``fk_*`` and ``kk_*`` the CSR arrays of Z_1'Z_K and Z_K'Z_K,
    ``rest_kept`` = R'Z_K (R = [Z_I, X_c]) and ``kept_y`` = Z_K'y (``KeptStatistics``)."""
    n_int = integrated.shape[0]
    n_kept = kept_levels.shape[0]
    m1 = A.shape[0]
    r = CR.shape[0]
    ncov = q1 + ncpc + 1
    n_fac = 0
    int_fac = 0       # the integrated blocks' factors come first in the packed arrays
    for k in range(n_int + n_kept):
        ncov += rest_meta[k, 0] + rest_meta[k, 1]
        n_fac += rest_meta[k, 0] * rest_meta[k, 0]
        if k < n_int:
            int_fac += rest_meta[k, 0] * rest_meta[k, 0]
    for i in range(theta.shape[0]):
        grad[i] = 0.0
    w = np.empty((q1, q1))
    chol = np.empty((q1, q1))
    w_kept = np.empty(n_fac)
    chol_kept = np.empty(n_fac)  # L_k packed row-major, block after block
    sigma, lkj = transform(theta[:ncov], q1, ncpc, eta, rest_meta, rest_eta, w, chol, w_kept,
                           chol_kept, pivot)
    # where each kept block's effects (level-major, q_k per level) and factor start
    starts = np.empty(n_kept + 1, dtype=np.int64)
    fac_at = np.empty(n_kept + 1, dtype=np.int64)
    starts[0] = ncov
    fac_at[0] = int_fac
    for k in range(n_kept):
        qk = rest_meta[n_int + k, 0]
        starts[k + 1] = starts[k] + kept_levels[k] * qk
        fac_at[k + 1] = fac_at[k] + qk * qk
    effects = theta[ncov:].copy()
    n_eff = effects.shape[0]
    for k in range(n_kept):  # non-centered: r_j = L_k z_j
        if not centered[k]:
            qk = rest_meta[n_int + k, 0]
            lk = chol_kept[fac_at[k]:fac_at[k + 1]].reshape((qk, qk))
            for j in range(kept_levels[k]):
                at = starts[k] - ncov + j * qk
                for a in range(qk):
                    acc = 0.0
                    for b in range(a + 1):
                        acc += lk[a, b] * theta[ncov + at + b]
                    effects[at + a] = acc
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
    for a in range(r - 1):
        acc = CR[r - 1, a]
        for j in range(n_eff):
            acc -= rest_kept[a, j] * effects[j]
        CR_adj[r - 1, a] = acc
        CR_adj[a, r - 1] = acc
    CR_adj[r - 1, r - 1] = yy
    g_chol = np.zeros((q1, q1))
    g_kept = np.zeros(n_fac)     # the kernel fills the integrated blocks' part
    modes_x = np.empty(r - 1)
    modes_b1 = np.empty((m1, q1))
    value, g_sigma = kernel_logp_grad(kernel, chol, chol_kept[:int_fac], sigma, A, C_adj,
                                      CR_adj, integrated, mu0, wprior, n, g_chol,
                                      g_kept[:int_fac], modes_x, modes_b1)
    if not math.isfinite(value):
        return -np.inf
    # the integrated blocks' modes in data units: b = (L_k / sigma) u per level
    x_data = modes_x.copy()
    row = 0
    base = 0
    for k in range(n_int):
        qk = integrated[k, 1]
        for _ in range(integrated[k, 0]):
            for a in range(qk):
                acc = 0.0
                for b in range(a + 1):
                    acc += chol_kept[base + a * qk + b] * modes_x[row + b]
                x_data[row + a] = acc / sigma
            row += qk
        base += qk * qk
    # d/dr = Z_K'e / sigma^2, e = y_adj - Z_I b_I - X beta - Z_1 b_1 at the conditional
    # modes: Z_K'y - (Z_K'Z_K) r - (R'Z_K)' [b_I, beta] - (Z_1'Z_K)' b_1
    inv_sigma2 = 1.0 / (sigma * sigma)
    g_eff = np.empty(n_eff)
    for j in range(n_eff):
        acc = kept_y[j] - kk_r[j]
        for a in range(r - 1):
            acc -= rest_kept[a, j] * x_data[a]
        g_eff[j] = acc
    for row in range(m1 * q1):
        b = modes_b1[row // q1, row % q1]
        for at in range(fk_ptr[row], fk_ptr[row + 1]):
            g_eff[fk_idx[at]] -= fk_val[at] * b
    for j in range(n_eff):
        g_eff[j] *= inv_sigma2
    # the kept effects' prior N(0, G_k), G_k = L_k L_k', centered or not
    s_j = np.empty(q1 + n_fac)   # scratch, at least q_k long
    t_j = np.empty(q1 + n_fac)
    for k in range(n_kept):
        qk = rest_meta[n_int + k, 0]
        lk = chol_kept[fac_at[k]:fac_at[k + 1]].reshape((qk, qk))
        gk = g_kept[fac_at[k]:fac_at[k + 1]].reshape((qk, qk))
        for j in range(kept_levels[k]):
            at = starts[k] + j * qk          # index into theta
            if centered[k]:
                # s = L^-1 r, t = L^-T s: -|s|^2 / 2, d/dr = -t, d/dL = tril(t s')
                for a in range(qk):
                    acc = theta[at + a]
                    for b in range(a):
                        acc -= lk[a, b] * s_j[b]
                    s_j[a] = acc / lk[a, a]
                for a in range(qk - 1, -1, -1):
                    acc = s_j[a]
                    for b in range(a + 1, qk):
                        acc -= lk[b, a] * t_j[b]
                    t_j[a] = acc / lk[a, a]
                for a in range(qk):
                    value -= 0.5 * s_j[a] * s_j[a]
                    grad[at + a] = g_eff[at - ncov + a] - t_j[a]
                    for b in range(a + 1):
                        gk[a, b] += t_j[a] * s_j[b]
            else:
                # r = L z: -|z|^2 / 2, d/dz = L' g - z, d/dL = tril(g z')
                for a in range(qk):
                    z = theta[at + a]
                    value -= 0.5 * z * z
                    acc = -z
                    for b in range(a, qk):
                        acc += lk[b, a] * g_eff[at - ncov + b]
                    grad[at + a] = acc
                    for b in range(a + 1):
                        gk[a, b] += g_eff[at - ncov + a] * theta[at + b]
        if centered[k]:  # -m_k log|L_k|
            for a in range(qk):
                value -= kept_levels[k] * math.log(lk[a, a])
                gk[a, a] -= kept_levels[k] / lk[a, a]
    value += lkj + add_priors(theta[:ncov], grad[:ncov], q1, ncpc, eta, w, g_chol, rest_meta,
                              rest_eta, w_kept, g_kept, g_sigma, family, pa, pb,
                              pivot)
    return finite_or_reject(value, grad)
