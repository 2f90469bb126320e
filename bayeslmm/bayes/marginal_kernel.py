"""Numba kernel of the marginal log likelihood log p(y | G, sigma) and its gradient.

The same computation as ``MarginalStructure.logp_and_grad`` (whose docstring derives the
gradient; the numpy version stays as the readable reference the tests compare with), written
as loops over levels so one call costs microseconds instead of numpy's ~200 us of per-call
overhead on tiny arrays.  Arguments are the sufficient statistics of ``MarginalStructure``:

    A    (m1, q1, q1)  per-level cross products of the first block's columns
    C    (r, m1, q1)   rest rows (other random blocks level-major, centered X, y) times Z_1
    CR   (r, r)        rest rows' cross products
    rest (K-1, 2)      levels m_k and columns q_k of each rest block (rows 0 .. rz-1)
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


def marginal_logp_grad_c(m1, q1, r, p, n_rest, n_obs, a_ptr, c_ptr, cr_ptr, rest_ptr,
                         mu0_ptr, wprior_ptr, chol_ptr, chol_rest_ptr, sigma, g_chol_ptr,
                         g_rest_ptr, modes_x_ptr, modes_b1_ptr, out_ptr):  # pragma: no cover
    """log p(y | L_first, L_rest, sigma) with C arguments (``callback_abi.KERNEL_SIG``):
    numba compiles this function only as a C callback (``kernel_cfunc.kernel_callback``),
    which its callers reach through its address.

    Dimensions, then the arrays of the module docstring (A, C, CR, rest, mu0, wprior), the
    first block's Cholesky factor (q1 x q1), the other blocks' Cholesky factors packed one
    after the other (block k: q_k x q_k, row-major; a 1 x 1 block's is its SD) and sigma.
    Fills ``g_chol`` (lower triangle), ``g_rest`` (packed like the factors, lower
    triangles), ``out`` = [value, d value / d sigma] (value = -inf when the system is
    singular; returns 1 then, else 0) and the conditional modes: ``modes_x`` (r - 1: the
    rest blocks' spherical u, level-major, then beta of the centered X) and ``modes_b1``
    (m1 x q1: the first block's effects)."""
    A = carray(a_ptr, (m1, q1, q1))
    C = carray(c_ptr, (r, m1, q1))
    CR = carray(cr_ptr, (r, r))
    rest = carray(rest_ptr, (n_rest, 2))  # per rest block: levels m_k, columns q_k
    mu0 = carray(mu0_ptr, (p,))
    wprior = carray(wprior_ptr, (p,))
    chol_first = carray(chol_ptr, (q1, q1))
    g_chol = carray(g_chol_ptr, (q1, q1))
    modes_x = carray(modes_x_ptr, (r - 1,))
    modes_b1 = carray(modes_b1_ptr, (m1, q1))
    out = carray(out_ptr, (2,))
    out[0] = -np.inf
    out[1] = 0.0
    rz = r - p - 1
    # where each rest block's rows and packed factor start
    row_at = np.zeros(n_rest + 1, dtype=np.int64)
    fac_at = np.zeros(n_rest + 1, dtype=np.int64)
    for k in range(n_rest):
        row_at[k + 1] = row_at[k] + rest[k, 0] * rest[k, 1]
        fac_at[k + 1] = fac_at[k] + rest[k, 1] * rest[k, 1]
    chol_rest = carray(chol_rest_ptr, (fac_at[n_rest],))
    g_rest = carray(g_rest_ptr, (fac_at[n_rest],))
    sigma2 = sigma * sigma
    lam1 = chol_first / sigma
    lam_rest = np.empty(fac_at[n_rest])
    for t in range(fac_at[n_rest]):
        lam_rest[t] = chol_rest[t] / sigma
    # Lt' C and Lt' CR Lt: the rest rows in the spherical parametrization,
    # Lt = blockdiag_k(I_{m_k} (x) lambda_k, I_{p+1})
    Cs = np.empty((r, m1, q1))
    for i in range(r):
        for j in range(m1):
            for a in range(q1):
                Cs[i, j, a] = C[i, j, a]
    CRs = np.empty((r, r))
    for i in range(r):
        for k2 in range(r):
            CRs[i, k2] = CR[i, k2]
    colbuf = np.empty(r)
    for k in range(n_rest):
        qk = rest[k, 1]
        base = fac_at[k]
        for lev in range(rest[k, 0]):
            row0 = row_at[k] + lev * qk
            # rows: new row (row0 + a) = sum_b lam[b, a] old row (row0 + b)
            for j in range(m1):
                for c in range(q1):
                    for a in range(qk):
                        acc = 0.0
                        for b in range(a, qk):
                            acc += lam_rest[base + b * qk + a] * C[row0 + b, j, c]
                        colbuf[a] = acc
                    for a in range(qk):
                        Cs[row0 + a, j, c] = colbuf[a]
            for col in range(r):
                for a in range(qk):
                    acc = 0.0
                    for b in range(a, qk):
                        acc += lam_rest[base + b * qk + a] * CRs[row0 + b, col]
                    colbuf[a] = acc
                for a in range(qk):
                    CRs[row0 + a, col] = colbuf[a]
            for row in range(r):  # columns likewise
                for a in range(qk):
                    acc = 0.0
                    for b in range(a, qk):
                        acc += lam_rest[base + b * qk + a] * CRs[row, row0 + b]
                    colbuf[a] = acc
                for a in range(qk):
                    CRs[row, row0 + a] = colbuf[a]
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
    # Schur complement of the rest rows: Lt'(CR - C W C')Lt = CRs - Cs W Cs'
    cw = np.empty((r, m1 * q1))
    for i in range(r):
        for j in range(m1):
            for b in range(q1):
                acc = 0.0
                for a in range(q1):
                    acc += Cs[i, j, a] * weights[j, a, b]
                cw[i, j * q1 + b] = acc
    c2 = Cs.reshape(r, m1 * q1)
    schur = np.empty((r, r))
    for i in range(r):
        for k2 in range(i + 1):
            acc = 0.0
            for t in range(m1 * q1):
                acc += cw[i, t] * c2[k2, t]
            v = CRs[i, k2] - acc
            schur[i, k2] = v
            schur[k2, i] = v
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
        for k2 in range(i, ra):
            acc += inv_la[k2, i] * chol[r - 1, k2]
        x_rest[i] = acc
    for i in range(ra):
        modes_x[i] = x_rest[i]
    # w = [-b_rest, -beta, 1] with b_rest = lambda_k u per level (data units)
    wvec = np.empty(r)
    for k in range(n_rest):
        qk = rest[k, 1]
        base = fac_at[k]
        for lev in range(rest[k, 0]):
            row0 = row_at[k] + lev * qk
            for a in range(qk):
                acc = 0.0
                for b in range(a + 1):
                    acc += lam_rest[base + a * qk + b] * x_rest[row0 + b]
                wvec[row0 + a] = -acc
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
    t1 = np.empty(q1)
    for j in range(m1):
        for a in range(q1):
            acc = 0.0
            for c in range(q1):
                acc += lam1[c, a] * v[j, c]
            t1[a] = acc
        for a in range(q1):
            acc = 0.0
            for c in range(q1):
                acc += m_inv[j, a, c] * t1[c]
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
    h_first = np.zeros((q1, q1))
    for j in range(m1):
        for a in range(q1):
            for b in range(q1):
                h_first[a, b] += m_inv[j, a, b]
    # y_ij = (Cs_ij lam1) M_j^-1, then rows mixed by L_a^-1
    ymat = np.empty((ra, m1 * q1))
    for i in range(ra):
        for j in range(m1):
            for a in range(q1):
                acc = 0.0
                for c in range(q1):
                    acc += Cs[i, j, c] * lam1[c, a]
                t1[a] = acc
            for b in range(q1):
                acc = 0.0
                for a in range(q1):
                    acc += t1[a] * m_inv[j, a, b]
                ymat[i, j * q1 + b] = acc
    mixed = np.empty(m1 * q1)
    for i in range(ra):  # row i of L_a^-1 ymat
        mixed[:] = 0.0
        for k2 in range(i + 1):
            coef = inv_la[i, k2]
            for t2 in range(m1 * q1):
                mixed[t2] += coef * ymat[k2, t2]
        for j in range(m1):
            for a in range(q1):
                for b in range(q1):
                    h_first[a, b] += mixed[j * q1 + a] * mixed[j * q1 + b]
    grad_dot = 0.0
    # d/d lam1 = tril(-lam1^-T (m1 I - H_first) + (Z1'e)'u1 / sigma^2)
    rhs = -h_first
    for a in range(q1):
        rhs[a, a] += m1
    sol = np.zeros((q1, q1))     # lam1' sol = rhs (lam1' upper triangular)
    for col in range(q1):
        for i in range(q1 - 1, -1, -1):
            acc = rhs[i, col]
            for k2 in range(i + 1, q1):
                acc -= lam1[k2, i] * sol[k2, col]
            sol[i, col] = acc / lam1[i, i]
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
    # other blocks: d/d lam_k = tril(-lam_k^-T (m_k I - sum_j H_jj) + sum_j (Z_k'e)_j u_j'
    # / sigma^2), H_jj = level j's diagonal block of (L_a L_a')^-1
    zre = np.empty(rz)
    for i in range(rz):
        acc = 0.0
        for s2 in range(r):
            acc += CR[i, s2] * wvec[s2]
        for j in range(m1):
            for a in range(q1):
                acc -= C[i, j, a] * b1[j, a]
        zre[i] = acc
    for k in range(n_rest):
        mk, qk = rest[k, 0], rest[k, 1]
        base = fac_at[k]
        hk = np.zeros((qk, qk))
        ek = np.zeros((qk, qk))
        for lev in range(mk):
            row0 = row_at[k] + lev * qk
            for a in range(qk):
                for b in range(qk):
                    acc = 0.0
                    for t in range(max(row0 + a, row0 + b), ra):
                        acc += inv_la[t, row0 + a] * inv_la[t, row0 + b]
                    hk[a, b] += acc
                    ek[a, b] += zre[row0 + a] * x_rest[row0 + b]
        for a in range(qk):
            for b in range(qk):
                hk[a, b] = (mk if a == b else 0.0) - hk[a, b]
        solk = np.zeros((qk, qk))  # lam_k' solk = m_k I - sum H_jj
        for col in range(qk):
            for i in range(qk - 1, -1, -1):
                acc = hk[i, col]
                for k2 in range(i + 1, qk):
                    acc -= lam_rest[base + k2 * qk + i] * solk[k2, col]
                solk[i, col] = acc / lam_rest[base + i * qk + i]
        for a in range(qk):
            for b in range(qk):
                if b > a:
                    g_rest[base + a * qk + b] = 0.0
                    continue
                g = -solk[a, b] + ek[a, b] / sigma2
                grad_dot += g * lam_rest[base + a * qk + b]
                g_rest[base + a * qk + b] = g / sigma
    # diagonal of H for the fixed effects' prior term
    g_sigma = -dof / sigma + pwrss / (sigma2 * sigma)
    for a in range(p):
        i = rz + a
        acc = 0.0
        for t in range(i, ra):
            acc += inv_la[t, i] ** 2
        g_sigma -= sigma * wprior[a] * acc
        g_sigma -= wprior[a] * (mu0[a] - x_rest[i]) ** 2 / sigma
    g_sigma -= grad_dot / sigma
    out[0] = value
    out[1] = g_sigma
    return 0
