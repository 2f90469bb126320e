"""Numba kernel of the marginal log likelihood log p(y | G, sigma) and its gradient.

The same computation as ``MarginalStructure.logp_and_grad`` (whose docstring derives the
gradient; the numpy version stays as the readable reference the tests compare with), written
as loops over levels so one call costs microseconds instead of numpy's ~200 us of per-call
overhead on tiny arrays.  Arguments are the sufficient statistics of ``MarginalStructure``:

    A    (m1, q1, q1)  per-level cross products of the first block's columns
    C    (r, m1, q1)   rest rows (other 1 x 1 random blocks, centered X, y) times Z_1
    CR   (r, r)        rest rows' cross products
    rest_levels (K-1,) levels of each rest block (rows 0 .. rz-1 of C and CR)
    mu0, wprior (p,)   Normal prior means and 1/s0^2 of the centered fixed effects (0: flat)

Failure (a non-positive-definite system) returns -inf; nothing raises inside the kernel.
"""

from __future__ import annotations

import math

import numpy as np
from numba import carray

from .jit import internal

__all__ = ["marginal_logp_grad_c", "small_spd_inverse", "cholesky_lower", "lower_inverse"]


@internal
def cholesky_lower(s, chol):  # pragma: no cover - jit
    """Lower Cholesky factor of ``s`` into ``chol``; False when not positive definite."""
    r = s.shape[0]
    for i in range(r):
        for j in range(i + 1):
            acc = s[i, j]
            for k in range(j):
                acc -= chol[i, k] * chol[j, k]
            if i == j:
                if acc <= 0.0:
                    return False
                chol[i, i] = math.sqrt(acc)
            else:
                chol[i, j] = acc / chol[j, j]
        for j in range(i + 1, r):
            chol[i, j] = 0.0
    return True


@internal
def lower_inverse(chol, n, out):  # pragma: no cover - jit
    """Inverse of the leading n x n block of the lower-triangular ``chol`` into ``out``."""
    for i in range(n):
        for j in range(i + 1, n):
            out[i, j] = 0.0
        out[i, i] = 1.0 / chol[i, i]
        for j in range(i):
            acc = 0.0
            for k in range(j, i):
                acc -= chol[i, k] * out[k, j]
            out[i, j] = acc / chol[i, i]


@internal
def small_spd_inverse(m, out, chol, inv_l):  # pragma: no cover - jit
    """Inverse of a small SPD matrix into ``out``; returns (log det, ok).  ``chol`` and
    ``inv_l`` are q x q workspaces (allocating them per call costs more than the work)."""
    q = m.shape[0]
    if q == 1:
        if m[0, 0] <= 0.0:
            return 0.0, False
        out[0, 0] = 1.0 / m[0, 0]
        return math.log(m[0, 0]), True
    if not cholesky_lower(m, chol):
        return 0.0, False
    logdet = 0.0
    for i in range(q):
        logdet += 2.0 * math.log(chol[i, i])
    lower_inverse(chol, q, inv_l)
    for i in range(q):  # M^-1 = L^-T L^-1
        for j in range(i + 1):
            s = 0.0
            for k in range(i, q):
                s += inv_l[k, i] * inv_l[k, j]
            out[i, j] = s
            out[j, i] = s
    return logdet, True


def marginal_logp_grad_c(m1, q1, r, p, n_rest, n_obs, a_ptr, c_ptr, cr_ptr, rest_levels_ptr,
                         mu0_ptr, wprior_ptr, chol_ptr, sd_rest_ptr, sigma, g_chol_ptr,
                         g_rest_ptr, modes_x_ptr, modes_b1_ptr, out_ptr):  # pragma: no cover
    """log p(y | L_first, sd_rest, sigma) with C arguments (``callback_abi.KERNEL_SIG``):
    numba compiles this function only as a C callback (``kernel_cfunc.kernel_callback``),
    which its callers reach through its address.

    Dimensions, then the arrays of the module docstring (A, C, CR, rest_levels, mu0, wprior),
    the first block's Cholesky factor (q1 x q1), the other blocks' SDs and sigma.  Fills
    ``g_chol`` (lower triangle), ``g_rest``, ``out`` = [value, d value / d sigma] (value =
    -inf when the system is singular; returns 1 then, else 0) and the conditional modes:
    ``modes_x`` (r - 1: the rest blocks' u, then beta of the centered X) and ``modes_b1``
    (m1 x q1: the first block's effects)."""
    A = carray(a_ptr, (m1, q1, q1))
    C = carray(c_ptr, (r, m1, q1))
    CR = carray(cr_ptr, (r, r))
    rest_levels = carray(rest_levels_ptr, (n_rest,))
    mu0 = carray(mu0_ptr, (p,))
    wprior = carray(wprior_ptr, (p,))
    chol_first = carray(chol_ptr, (q1, q1))
    sd_rest = carray(sd_rest_ptr, (n_rest,))
    g_chol = carray(g_chol_ptr, (q1, q1))
    g_rest = carray(g_rest_ptr, (n_rest,))
    modes_x = carray(modes_x_ptr, (r - 1,))
    modes_b1 = carray(modes_b1_ptr, (m1, q1))
    out = carray(out_ptr, (2,))
    out[0] = -np.inf
    out[1] = 0.0
    rz = r - p - 1
    sigma2 = sigma * sigma
    lam1 = chol_first / sigma
    lam_rest = sd_rest / sigma
    scale = np.ones(r)
    offset = 0
    for k in range(n_rest):
        for i in range(offset, offset + rest_levels[k]):
            scale[i] = lam_rest[k]
        offset += rest_levels[k]
    # per level: M_j = lam' A_j lam + I, its inverse, W_j = lam M_j^-1 lam'
    m_inv = np.empty((m1, q1, q1))
    weights = np.empty((m1, q1, q1))
    tmp = np.empty((q1, q1))
    mj = np.empty((q1, q1))
    work1 = np.empty((q1, q1))
    work2 = np.empty((q1, q1))
    logdet1 = 0.0
    for j in range(m1):
        for a in range(q1):
            for b in range(q1):
                acc = 0.0
                for c in range(q1):
                    acc += A[j, a, c] * lam1[c, b]
                tmp[a, b] = acc
        for a in range(q1):
            for b in range(q1):
                acc = 1.0 if a == b else 0.0
                for c in range(q1):
                    acc += lam1[c, a] * tmp[c, b]
                mj[a, b] = acc
        ld, ok = small_spd_inverse(mj, m_inv[j], work1, work2)
        if not ok:
            return 1
        logdet1 += ld
        for a in range(q1):
            for b in range(q1):
                acc = 0.0
                for c in range(q1):
                    acc += m_inv[j, a, c] * lam1[b, c]
                tmp[a, b] = acc            # M^-1 lam'
        for a in range(q1):
            for b in range(q1):
                acc = 0.0
                for c in range(q1):
                    acc += lam1[a, c] * tmp[c, b]
                weights[j, a, b] = acc
    # Schur complement of the rest rows
    cw = np.empty((r, m1 * q1))
    for i in range(r):
        for j in range(m1):
            for b in range(q1):
                acc = 0.0
                for a in range(q1):
                    acc += C[i, j, a] * weights[j, a, b]
                cw[i, j * q1 + b] = acc
    c2 = C.reshape(r, m1 * q1)
    schur = np.empty((r, r))
    for i in range(r):
        for k in range(i + 1):
            acc = 0.0
            for t in range(m1 * q1):
                acc += cw[i, t] * c2[k, t]
            v = (CR[i, k] - acc) * scale[i] * scale[k]
            schur[i, k] = v
            schur[k, i] = v
    for i in range(rz):
        schur[i, i] += 1.0
    prior_ss = 0.0
    for a in range(p):
        w = sigma2 * wprior[a]
        schur[rz + a, rz + a] += w
        schur[rz + a, r - 1] += w * mu0[a]
        schur[r - 1, rz + a] += w * mu0[a]
        prior_ss += w * mu0[a] * mu0[a]
    schur[r - 1, r - 1] += prior_ss
    chol = np.empty((r, r))
    if not cholesky_lower(schur, chol):
        return 1
    logdet_rest = 0.0
    for i in range(r - 1):
        logdet_rest += 2.0 * math.log(chol[i, i])
    pwrss = chol[r - 1, r - 1] ** 2
    dof = n_obs - p
    value = (-0.5 * dof * math.log(2.0 * math.pi * sigma2) - 0.5 * (logdet1 + logdet_rest)
             - pwrss / (2.0 * sigma2))
    # modes: x = [u_rest, beta] = L_a^-T l (l: last row of chol)
    ra = r - 1
    inv_la = np.empty((ra, ra))
    lower_inverse(chol, ra, inv_la)
    x_rest = np.zeros(ra)
    for i in range(ra):
        acc = 0.0
        for k in range(i, ra):
            acc += inv_la[k, i] * chol[r - 1, k]
        x_rest[i] = acc
    for i in range(ra):
        modes_x[i] = x_rest[i]
    wvec = np.empty(r)
    for i in range(rz):
        wvec[i] = -x_rest[i] * scale[i]
    for a in range(p):
        wvec[rz + a] = -x_rest[rz + a]
    wvec[r - 1] = 1.0
    # first block: v_j = Z1'(y - X beta - Zr br), u1 = M^-1 lam' v, b1 = lam u1, Z1'e
    v = np.zeros((m1, q1))
    for i in range(r):
        wi = wvec[i]
        for j in range(m1):
            for a in range(q1):
                v[j, a] += wi * C[i, j, a]
    u1 = np.empty((m1, q1))
    b1 = np.empty((m1, q1))
    z1e = np.empty((m1, q1))
    t = np.empty(q1)
    for j in range(m1):
        for a in range(q1):
            acc = 0.0
            for c in range(q1):
                acc += lam1[c, a] * v[j, c]
            t[a] = acc
        for a in range(q1):
            acc = 0.0
            for c in range(q1):
                acc += m_inv[j, a, c] * t[c]
            u1[j, a] = acc
        for a in range(q1):
            acc = 0.0
            for c in range(q1):
                acc += lam1[a, c] * u1[j, c]
            b1[j, a] = acc
            modes_b1[j, a] = acc
        for a in range(q1):
            acc = v[j, a]
            for c in range(q1):
                acc -= A[j, a, c] * b1[j, c]
            z1e[j, a] = acc
    # diagonal of H = M^-1 for the rest rows, and sum_j of the first block's diagonal blocks
    h_diag = np.zeros(ra)
    for i in range(ra):
        acc = 0.0
        for k in range(i, ra):
            acc += inv_la[k, i] ** 2
        h_diag[i] = acc
    h_first = np.zeros((q1, q1))
    for j in range(m1):
        for a in range(q1):
            for b in range(q1):
                h_first[a, b] += m_inv[j, a, b]
    # y_ij = (scale_i C_ij lam1) M_j^-1, then rows mixed by L_a^-1
    ymat = np.empty((ra, m1 * q1))
    for i in range(ra):
        for j in range(m1):
            for a in range(q1):
                acc = 0.0
                for c in range(q1):
                    acc += C[i, j, c] * lam1[c, a]
                t[a] = acc * scale[i]
            for b in range(q1):
                acc = 0.0
                for a in range(q1):
                    acc += t[a] * m_inv[j, a, b]
                ymat[i, j * q1 + b] = acc
    mixed = np.empty(m1 * q1)
    for i in range(ra):  # row i of L_a^-1 ymat
        mixed[:] = 0.0
        for k in range(i + 1):
            coef = inv_la[i, k]
            for t2 in range(m1 * q1):
                mixed[t2] += coef * ymat[k, t2]
        for j in range(m1):
            for a in range(q1):
                for b in range(q1):
                    h_first[a, b] += mixed[j * q1 + a] * mixed[j * q1 + b]
    # d/d lam1 = tril(-lam1^-T (m1 I - H_first) + (Z1'e)'u1 / sigma^2)
    rhs = -h_first
    for a in range(q1):
        rhs[a, a] += m1
    sol = np.zeros((q1, q1))     # lam1' sol = rhs (lam1' upper triangular)
    for col in range(q1):
        for i in range(q1 - 1, -1, -1):
            acc = rhs[i, col]
            for k in range(i + 1, q1):
                acc -= lam1[k, i] * sol[k, col]
            sol[i, col] = acc / lam1[i, i]
    grad_dot = 0.0
    for a in range(q1):
        for b in range(q1):
            if b > a:
                g_chol[a, b] = 0.0
                continue
            acc = 0.0
            for j in range(m1):
                acc += z1e[j, a] * u1[j, b]
            g = -sol[a, b] + acc / sigma2
            grad_dot += g * lam1[a, b]
            g_chol[a, b] = g / sigma
    # other blocks: d/d lam_k = -(m_k - sum H_ii)/lam_k + u_k'(Z_k'e)/sigma^2
    offset = 0
    for k in range(n_rest):
        h_sum = 0.0
        ue = 0.0
        for i in range(offset, offset + rest_levels[k]):
            h_sum += h_diag[i]
            zre = 0.0
            for s in range(r):
                zre += CR[i, s] * wvec[s]
            for j in range(m1):
                for a in range(q1):
                    zre -= C[i, j, a] * b1[j, a]
            ue += x_rest[i] * zre
        g = -(rest_levels[k] - h_sum) / lam_rest[k] + ue / sigma2
        grad_dot += g * lam_rest[k]
        g_rest[k] = g / sigma
        offset += rest_levels[k]
    g_sigma = -dof / sigma + pwrss / (sigma2 * sigma)
    for a in range(p):
        g_sigma -= sigma * wprior[a] * h_diag[rz + a]
        g_sigma -= wprior[a] * (mu0[a] - x_rest[rz + a]) ** 2 / sigma
    g_sigma -= grad_dot / sigma
    out[0] = value
    out[1] = g_sigma
    return 0
