"""The marginal likelihood of a Gaussian model with an R-side structure, beta (and the random
effects of the residual's own groups) integrated out, with its gradient; and exact draws of
beta and b from their conditional posterior.  numba, one pass of loops over the groups.

Model: y_i = X_i beta + Z_i b_i + e_i for group i (the residual's groups), b_i ~ N(0, G),
e_i ~ N(0, Sigma[pos_i, pos_i]) at the group's occasions, beta ~ N(mu0, diag(1 / prec))
(prec = 0: flat).  With V_i = Sigma_i + Z_i G Z_i' = L_i L_i', X~_i = L_i^-1 X_i and
e~_i = L_i^-1 (y_i - X_i mu0):

    A = sum_i X~_i' X~_i + diag(prec) = R R',   c = sum_i X~_i' e~_i,   u = R^-1 c
    log p(y) = -n/2 log 2 pi - sum_i log|L_i| - 1/2 (sum_i e~_i' e~_i - u'u) - log|R|
               + 1/2 sum log prec   (finite priors only; flat ones drop a constant)

Its differential in V_i is tr(Gamma_i dV_i) with the i-th diagonal block of
1/2 (K^-1 e e' K^-1 - K^-1), K = V + X diag(1/prec) X', K^-1 = V^-1 - V^-1 X A^-1 X' V^-1
(Woodbury):

    Gamma_i = 1/2 L_i^-T (r~_i r~_i' - I + A~_i A~_i') L_i^-1,
    r~_i = e~_i - X~_i A^-1 c,   A~_i = X~_i R^-T,

so d log p / d Sigma[s, t] = sum of Gamma_i over the (s, t) occasion pairs and d log p / d G
= sum_i Z_i' Gamma_i Z_i.  A gradient is O(n (m p + p^2)) for groups of m rows: no n x n
matrix, no dense Z.  The layout arrays are ``loglik_kernel.KernelLayout``'s (every group's
rows in position order); ``z`` holds the random-effect columns of each row (n x q, q = 0
without random effects).
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["gls_marginal_logp", "gls_conditional_draws"]

_LOG_2PI = float(np.log(2.0 * np.pi))


@njit(cache=True, nogil=True, error_model="numpy")
def _factor_lower(a, m):
    """Lower Cholesky factor of a[:m, :m] in place (the lower triangle is read); returns
    (ok, log|L|), ok False where the matrix is not positive definite."""
    logdet = 0.0
    for i in range(m):
        for j in range(i + 1):
            acc = a[i, j]
            for k in range(j):
                acc -= a[i, k] * a[j, k]
            if i == j:
                if not acc > 0.0:
                    return False, 0.0
                a[i, i] = np.sqrt(acc)
                logdet += np.log(a[i, i])
            else:
                a[i, j] = acc / a[j, j]
    return True, logdet


@njit(cache=True, nogil=True, error_model="numpy", fastmath={"reassoc", "contract"})
def _whiten_groups(e0, x, z, cov, g, rows, group_start, group_pattern, pattern_pos,
                   pattern_start, chol, xt, et):
    """Per group: V_i's lower factor (into ``chol[i]``), X~ and e~ (into ``xt``, ``et``, in
    layout order); returns (ok, sum log|L_i|)."""
    n_groups = group_start.size - 1
    p = x.shape[1]
    q = z.shape[1]
    max_size = chol.shape[1]
    zg = np.empty((max_size, q))
    logdet = 0.0
    for gi in range(n_groups):
        u = group_pattern[gi]
        r0 = group_start[gi]
        m = group_start[gi + 1] - r0
        s0 = pattern_start[u]
        lo = chol[gi]
        for i in range(m):
            ri = rows[r0 + i]
            for b in range(q):
                acc = 0.0
                for a in range(q):
                    acc += z[ri, a] * g[a, b]
                zg[i, b] = acc
        for i in range(m):  # V_i = Sigma_i + Z_i G Z_i' (lower triangle)
            for j in range(i + 1):
                acc = cov[pattern_pos[s0 + i], pattern_pos[s0 + j]]
                rj = rows[r0 + j]
                for b in range(q):
                    acc += zg[i, b] * z[rj, b]
                lo[i, j] = acc
        ok, part = _factor_lower(lo, m)
        if not ok:
            return False, 0.0
        logdet += part
        for i in range(m):  # forward substitution, row by row (contiguous inner loops)
            ri = rows[r0 + i]
            inv = 1.0 / lo[i, i]
            acc = e0[ri]
            for k in range(i):
                acc -= lo[i, k] * et[r0 + k]
            et[r0 + i] = acc * inv
            for col in range(p):
                xt[r0 + i, col] = x[ri, col]
            for k in range(i):
                lik = lo[i, k]
                for col in range(p):
                    xt[r0 + i, col] -= lik * xt[r0 + k, col]
            for col in range(p):
                xt[r0 + i, col] *= inv
    return True, logdet


@njit(cache=True, nogil=True, error_model="numpy", fastmath={"reassoc", "contract"})
def _fixed_system(xt, et, prec, rfac):
    """A = X~'X~ + diag(prec) factored into ``rfac`` (lower), u = R^-1 c, e~'e~ and log|R|;
    (ok, u, ee, logdet_r)."""
    p = xt.shape[1]
    a = xt.T @ xt   # BLAS
    c = xt.T @ et
    ee = et @ et
    for i in range(p):
        a[i, i] += prec[i]
        for j in range(i + 1):
            rfac[i, j] = a[i, j]
    ok, logdet = _factor_lower(rfac, p)
    if not ok:
        return False, c, ee, 0.0
    u = np.empty(p)
    for i in range(p):
        acc = c[i]
        for k in range(i):
            acc -= rfac[i, k] * u[k]
        u[i] = acc / rfac[i, i]
    return True, u, ee, logdet


@njit(cache=True, nogil=True, error_model="numpy")
def _back_solve(rfac, u):
    """R^-T u."""
    p = u.size
    out = np.empty(p)
    for i in range(p - 1, -1, -1):
        acc = u[i]
        for k in range(i + 1, p):
            acc -= rfac[k, i] * out[k]
        out[i] = acc / rfac[i, i]
    return out


@njit(cache=True, nogil=True, error_model="numpy", fastmath={"reassoc", "contract"})
def gls_marginal_logp(e0, x, z, cov, g, prec, rows, group_start, group_pattern, pattern_pos,
                      pattern_start, max_size):
    """(log p(y | Sigma, G), d/dSigma (T x T), d/dG (q x q)); see the module docstring.
    ``e0`` = y - X mu0, ``x`` the design the prior is stated on, ``prec`` its prior
    precisions.  -inf (zero gradients) where V_i or A is not positive definite."""
    n_groups = group_start.size - 1
    n = rows.size
    p = x.shape[1]
    q = z.shape[1]
    t = cov.shape[0]
    grad_cov = np.zeros((t, t))
    grad_g = np.zeros((q, q))
    chol = np.zeros((n_groups, max_size, max_size))
    xt = np.empty((n, p))
    et = np.empty(n)
    ok, logdet = _whiten_groups(e0, x, z, cov, g, rows, group_start, group_pattern,
                                pattern_pos, pattern_start, chol, xt, et)
    if not ok:
        return -np.inf, grad_cov, grad_g
    rfac = np.zeros((p, p))
    ok, u, ee, logdet_r = _fixed_system(xt, et, prec, rfac)
    if not ok:
        return -np.inf, grad_cov, grad_g
    value = -0.5 * n * _LOG_2PI - logdet - logdet_r - 0.5 * ee
    for i in range(p):
        value += 0.5 * u[i] * u[i]
        if prec[i] > 0.0:
            value += 0.5 * np.log(prec[i])
    delta = _back_solve(rfac, u)  # A^-1 c
    rinv = np.zeros((p, p))  # R^-1: X~ R^-T row by row below (loops, see docs/design.md)
    for col in range(p):
        rinv[col, col] = 1.0 / rfac[col, col]
        for i in range(col + 1, p):
            acc = 0.0
            for k in range(col, i):
                acc -= rfac[i, k] * rinv[k, col]
            rinv[i, col] = acc / rfac[i, i]
    at_all = np.empty((n, p))  # X~ R^-T and r~ = e~ - X~ A^-1 c, row by row
    rt_all = np.empty(n)
    for k in range(n):
        acc = et[k]
        for col in range(p):
            acc -= xt[k, col] * delta[col]
        rt_all[k] = acc
        for i in range(p):
            acc = 0.0
            for col in range(i + 1):
                acc += rinv[i, col] * xt[k, col]
            at_all[k, i] = acc
    mm = np.empty((max_size, max_size))
    bb = np.empty((max_size, max_size))
    zw = np.empty((max_size, q))
    for gi in range(n_groups):
        u_ = group_pattern[gi]
        r0 = group_start[gi]
        m = group_start[gi + 1] - r0
        s0 = pattern_start[u_]
        lo = chol[gi]
        for i in range(m):  # M = r~ r~' - I + A~ A~'
            ai = at_all[r0 + i]
            for j in range(i + 1):
                aj = at_all[r0 + j]
                acc = rt_all[r0 + i] * rt_all[r0 + j]
                for col in range(p):
                    acc += ai[col] * aj[col]
                if i == j:
                    acc -= 1.0
                mm[i, j] = acc
                mm[j, i] = acc
        for i in range(m):  # B = M L^-1 (B L = M, row by row)
            for j in range(m - 1, -1, -1):
                acc = mm[i, j]
                for k in range(j + 1, m):
                    acc -= bb[i, k] * lo[k, j]
                bb[i, j] = acc / lo[j, j]
        for j in range(m):  # Gamma = L^-T B (into mm, column by column, bottom up)
            for i in range(m - 1, -1, -1):
                acc = bb[i, j]
                for k in range(i + 1, m):
                    acc -= lo[k, i] * mm[k, j]
                mm[i, j] = acc / lo[i, i]
        for i in range(m):
            pi = pattern_pos[s0 + i]
            for j in range(m):
                grad_cov[pi, pattern_pos[s0 + j]] += 0.5 * mm[i, j]
        if q:
            for i in range(m):  # Gamma Z_i
                for b in range(q):
                    acc = 0.0
                    for j in range(m):
                        acc += mm[i, j] * z[rows[r0 + j], b]
                    zw[i, b] = 0.5 * acc
            for a in range(q):
                for b in range(q):
                    acc = 0.0
                    for i in range(m):
                        acc += z[rows[r0 + i], a] * zw[i, b]
                    grad_g[a, b] += acc
    return value, grad_cov, grad_g


@njit(cache=True, nogil=True, error_model="numpy", fastmath={"reassoc", "contract"})
def gls_conditional_draws(e0, x, z, covs, gs, prec, rows, group_start, group_pattern,
                          pattern_pos, pattern_start, max_size, noise_beta, noise_b,
                          noise_e):
    """For every draw d of (Sigma, G) = (covs[d], gs[d]): beta - mu0 from N(A^-1 c, A^-1)
    and each group's b_i from p(b_i | beta, y) by the conditioning identity
    b_i = b* + G Z_i' V_i^-1 (y_i - X_i beta - Z_i b* - e*), b* ~ N(0, G),
    e* ~ N(0, Sigma_i) (only factors of G and Sigma_i are needed, never G^-1).
    Standard normal ``noise_beta`` (D, p), ``noise_b`` (D, n_groups, q) and ``noise_e``
    (D, n, rows in layout order) come from the caller's generator.  Returns
    (delta (D, p), b (D, n_groups, q)); NaN for a draw whose matrices do not factor."""
    n_draws = covs.shape[0]
    n_groups = group_start.size - 1
    n = rows.size
    p = x.shape[1]
    q = z.shape[1]
    out_beta = np.full((n_draws, p), np.nan)
    out_b = np.full((n_draws, n_groups, q), np.nan)
    chol = np.zeros((n_groups, max_size, max_size))
    xt = np.empty((n, p))
    et = np.empty(n)
    rfac = np.zeros((p, p))
    gfac = np.zeros((q, q))
    sfac = np.zeros((max_size, max_size))
    resid = np.empty(max_size)
    w = np.empty(max_size)
    bstar = np.empty(q)
    for d in range(n_draws):
        cov = covs[d]
        g = gs[d]
        ok, _ = _whiten_groups(e0, x, z, cov, g, rows, group_start, group_pattern,
                               pattern_pos, pattern_start, chol, xt, et)
        if not ok:
            continue
        ok, u, _, _ = _fixed_system(xt, et, prec, rfac)
        if not ok:
            continue
        for i in range(p):
            u[i] += noise_beta[d, i]
        delta = _back_solve(rfac, u)   # A^-1 c + R^-T z
        out_beta[d] = delta
        if q == 0:
            continue
        jitter = 0.0
        for a in range(q):
            jitter += g[a, a]
        jitter *= 1e-12
        for i in range(q):  # G's factor (SDs underflowed to zero still factor)
            for j in range(i + 1):
                gfac[i, j] = g[i, j] + (jitter if i == j else 0.0)
        if not _factor_lower(gfac, q)[0]:  # G = 0: b = 0
            gfac[:, :] = 0.0
        for gi in range(n_groups):
            u_ = group_pattern[gi]
            r0 = group_start[gi]
            m = group_start[gi + 1] - r0
            s0 = pattern_start[u_]
            lo = chol[gi]
            for a in range(q):
                acc = 0.0
                for k in range(a + 1):
                    acc += gfac[a, k] * noise_b[d, gi, k]
                bstar[a] = acc
            for i in range(m):  # Sigma_i's factor for e*
                for j in range(i + 1):
                    sfac[i, j] = cov[pattern_pos[s0 + i], pattern_pos[s0 + j]]
            if not _factor_lower(sfac, m)[0]:
                continue  # this group's b stays NaN for this draw
            for i in range(m):
                ri = rows[r0 + i]
                acc = e0[ri]
                for col in range(p):
                    acc -= x[ri, col] * delta[col]
                for a in range(q):
                    acc -= z[ri, a] * bstar[a]
                for k in range(i + 1):
                    acc -= sfac[i, k] * noise_e[d, r0 + k]
                resid[i] = acc
            for i in range(m):  # w = V_i^-1 resid: forward then back substitution
                acc = resid[i]
                for k in range(i):
                    acc -= lo[i, k] * w[k]
                w[i] = acc / lo[i, i]
            for i in range(m - 1, -1, -1):
                acc = w[i]
                for k in range(i + 1, m):
                    acc -= lo[k, i] * w[k]
                w[i] = acc / lo[i, i]
            for a in range(q):  # b = b* + G Z_i' w
                acc = bstar[a]
                for b in range(q):
                    zt = 0.0
                    for i in range(m):
                        zt += z[rows[r0 + i], b] * w[i]
                    acc += g[a, b] * zt
                out_b[d, gi, a] = acc
    return out_beta, out_b
