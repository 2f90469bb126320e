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

from .jit import internal_fastmath

__all__ = ["marginal_logp_grad_c", "cholesky_lower", "lower_inverse", "forward_columns",
           "lower_gram", "spherical_rows"]


@internal_fastmath
def cholesky_lower(s, chol):  # pragma: no cover - jit
    """Lower Cholesky factor of ``s`` into ``chol``; False when not positive definite.
    Rows four at a time: below the diagonal block each row of the factor already solved
    serves four inner products."""
    r = s.shape[0]
    i = 0
    while i < r:
        rows = min(4, r - i)
        for j in range(i):  # the block's rows against the rows already factored
            lj = chol[j]
            a0 = s[i, j]
            a1 = s[i + 1, j] if rows > 1 else 0.0
            a2 = s[i + 2, j] if rows > 2 else 0.0
            a3 = s[i + 3, j] if rows > 3 else 0.0
            l0 = chol[i]
            l1 = chol[i + 1] if rows > 1 else l0
            l2 = chol[i + 2] if rows > 2 else l0
            l3 = chol[i + 3] if rows > 3 else l0
            for k in range(j):
                v = lj[k]
                a0 -= l0[k] * v
                a1 -= l1[k] * v
                a2 -= l2[k] * v
                a3 -= l3[k] * v
            d = lj[j]
            chol[i, j] = a0 / d
            if rows > 1:
                chol[i + 1, j] = a1 / d
            if rows > 2:
                chol[i + 2, j] = a2 / d
            if rows > 3:
                chol[i + 3, j] = a3 / d
        for ii in range(i, i + rows):  # the diagonal block
            for j in range(i, ii + 1):
                acc = s[ii, j]
                for k in range(j):
                    acc -= chol[ii, k] * chol[j, k]
                if ii == j:
                    if acc <= 0.0:
                        return False
                    chol[ii, ii] = math.sqrt(acc)
                else:
                    chol[ii, j] = acc / chol[j, j]
            for j in range(ii + 1, r):
                chol[ii, j] = 0.0
        i += rows
    return True


@internal_fastmath
def lower_inverse(chol, n, out):  # pragma: no cover - jit
    """Inverse of the leading n x n block of the lower-triangular ``chol`` into ``out``,
    row by row (each row a sum of earlier rows: contiguous, so it vectorizes)."""
    for i in range(n):
        row = out[i]
        for j in range(n):
            row[j] = 0.0
        for k in range(i):
            coef = chol[i, k]
            prev = out[k]
            for j in range(k + 1):
                row[j] -= coef * prev[j]
        d = 1.0 / chol[i, i]
        for j in range(i):
            row[j] *= d
        row[i] = d


@internal_fastmath
def forward_columns(chol, xt):  # pragma: no cover - jit
    """``xt`` <- (L^-1 ``xt``')' in place for the leading n x n block of the
    lower-triangular ``chol`` (n = columns of ``xt``): every row x of ``xt`` solves
    x L' = b.  Four rows of ``xt`` against four rows of L at a time: the sums over the
    solved part load eight contiguous rows for sixteen inner products, then the 4 x 4
    triangle is solved directly."""
    width, n = xt.shape
    inv_diag = np.empty(n)
    for i in range(n):
        inv_diag[i] = 1.0 / chol[i, i]
    t = 0
    while t + 4 <= width:
        x0, x1, x2, x3 = xt[t], xt[t + 1], xt[t + 2], xt[t + 3]
        i = 0
        while i + 4 <= n:
            l0, l1, l2, l3 = chol[i], chol[i + 1], chol[i + 2], chol[i + 3]
            a00 = a01 = a02 = a03 = 0.0  # a_rc: row r of xt against row i + c of L
            a10 = a11 = a12 = a13 = 0.0
            a20 = a21 = a22 = a23 = 0.0
            a30 = a31 = a32 = a33 = 0.0
            for k in range(i):
                v0, v1, v2, v3 = l0[k], l1[k], l2[k], l3[k]
                u = x0[k]
                a00 += u * v0
                a01 += u * v1
                a02 += u * v2
                a03 += u * v3
                u = x1[k]
                a10 += u * v0
                a11 += u * v1
                a12 += u * v2
                a13 += u * v3
                u = x2[k]
                a20 += u * v0
                a21 += u * v1
                a22 += u * v2
                a23 += u * v3
                u = x3[k]
                a30 += u * v0
                a31 += u * v1
                a32 += u * v2
                a33 += u * v3
            _solve_tile(x0, i, chol, inv_diag, a00, a01, a02, a03)
            _solve_tile(x1, i, chol, inv_diag, a10, a11, a12, a13)
            _solve_tile(x2, i, chol, inv_diag, a20, a21, a22, a23)
            _solve_tile(x3, i, chol, inv_diag, a30, a31, a32, a33)
            i += 4
        while i < n:
            li = chol[i]
            for x in (x0, x1, x2, x3):
                acc = x[i]
                for k in range(i):
                    acc -= x[k] * li[k]
                x[i] = acc / li[i]
            i += 1
        t += 4
    while t < width:
        x0 = xt[t]
        for i in range(n):
            li = chol[i]
            acc = x0[i]
            for k in range(i):
                acc -= x0[k] * li[k]
            x0[i] = acc / li[i]
        t += 1


@internal_fastmath
def _solve_tile(x, i, chol, inv_diag, s0, s1, s2, s3):  # pragma: no cover - jit
    """Entries i .. i + 3 of the row x of ``forward_columns``, given its sums s_c over the
    solved entries (k < i) against rows i + c of L (``inv_diag``: 1 / diag(L))."""
    e0 = (x[i] - s0) * inv_diag[i]
    e1 = (x[i + 1] - s1 - e0 * chol[i + 1, i]) * inv_diag[i + 1]
    e2 = (x[i + 2] - s2 - e0 * chol[i + 2, i] - e1 * chol[i + 2, i + 1]) * inv_diag[i + 2]
    e3 = (x[i + 3] - s3 - e0 * chol[i + 3, i] - e1 * chol[i + 3, i + 1]
          - e2 * chol[i + 3, i + 2]) * inv_diag[i + 3]
    x[i] = e0
    x[i + 1] = e1
    x[i + 2] = e2
    x[i + 3] = e3


@internal_fastmath
def lower_gram(x, base, out):  # pragma: no cover - jit
    """``out`` = base - x x' (symmetric, both triangles), in 4 x 4 tiles: each pass over
    the columns loads four rows of x and four others and makes sixteen inner products (the
    diagonal tiles are computed whole and stored below the diagonal only)."""
    n, width = x.shape
    i = 0
    while i + 4 <= n:
        x0, x1, x2, x3 = x[i], x[i + 1], x[i + 2], x[i + 3]
        k = 0
        while k + 4 <= i + 4:
            y0, y1, y2, y3 = x[k], x[k + 1], x[k + 2], x[k + 3]
            a00 = a01 = a02 = a03 = 0.0
            a10 = a11 = a12 = a13 = 0.0
            a20 = a21 = a22 = a23 = 0.0
            a30 = a31 = a32 = a33 = 0.0
            for t in range(width):
                v0, v1, v2, v3 = y0[t], y1[t], y2[t], y3[t]
                u = x0[t]
                a00 += u * v0
                a01 += u * v1
                a02 += u * v2
                a03 += u * v3
                u = x1[t]
                a10 += u * v0
                a11 += u * v1
                a12 += u * v2
                a13 += u * v3
                u = x2[t]
                a20 += u * v0
                a21 += u * v1
                a22 += u * v2
                a23 += u * v3
                u = x3[t]
                a30 += u * v0
                a31 += u * v1
                a32 += u * v2
                a33 += u * v3
            _gram_store(base, out, i, k, a00)
            _gram_store(base, out, i, k + 1, a01)
            _gram_store(base, out, i, k + 2, a02)
            _gram_store(base, out, i, k + 3, a03)
            _gram_store(base, out, i + 1, k, a10)
            _gram_store(base, out, i + 1, k + 1, a11)
            _gram_store(base, out, i + 1, k + 2, a12)
            _gram_store(base, out, i + 1, k + 3, a13)
            _gram_store(base, out, i + 2, k, a20)
            _gram_store(base, out, i + 2, k + 1, a21)
            _gram_store(base, out, i + 2, k + 2, a22)
            _gram_store(base, out, i + 2, k + 3, a23)
            _gram_store(base, out, i + 3, k, a30)
            _gram_store(base, out, i + 3, k + 1, a31)
            _gram_store(base, out, i + 3, k + 2, a32)
            _gram_store(base, out, i + 3, k + 3, a33)
            k += 4
        i += 4
    while i < n:  # the last rows (n not a multiple of 4), against every row before
        xi = x[i]
        for k in range(i + 1):
            xk = x[k]
            acc = 0.0
            for t in range(width):
                acc += xi[t] * xk[t]
            _gram_store(base, out, i, k, acc)
        i += 1


@internal_fastmath
def _gram_store(base, out, i, k, acc):  # pragma: no cover - jit
    if k <= i:
        value = base[i, k] - acc
        out[i, k] = value
        out[k, i] = value


@internal_fastmath
def spherical_rows(rows, rest, row_at, fac_at, lam):  # pragma: no cover - jit
    """``rows`` <- Lt' ``rows`` in place, Lt = blockdiag_k(I_{m_k} (x) lambda_k, I): each
    rest level's q_k rows mixed by lambda_k' (packed row-major lower triangles in ``lam``);
    the rows after the rest blocks stay.  New row a reads old rows a..q_k-1 only, so
    increasing a works in place."""
    width = rows.shape[1]
    for k in range(rest.shape[0]):
        qk = rest[k, 1]
        base = fac_at[k]
        for lev in range(rest[k, 0]):
            row0 = row_at[k] + lev * qk
            for a in range(qk):
                row = rows[row0 + a]
                coef = lam[base + a * qk + a]
                for t in range(width):
                    row[t] *= coef
                for b in range(a + 1, qk):
                    coef = lam[base + b * qk + a]
                    other = rows[row0 + b]
                    for t in range(width):
                        row[t] += coef * other[t]


def marginal_logp_grad_c(m1, q1, r, p, n_rest, n_obs, a_ptr, c_ptr, cr_ptr, rest_ptr,
                         mu0_ptr, wprior_ptr, chol_ptr, chol_rest_ptr, sigma, g_chol_ptr,
                         g_rest_ptr, modes_x_ptr, modes_b1_ptr, out_ptr, n_noise,
                         noise_ptr):  # pragma: no cover
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
    (m1 x q1: the first block's effects).

    Draw mode (``n_noise`` = r - 1 + m1 q1, ``noise`` standard normal): ``modes_x`` and
    ``modes_b1`` receive one draw from p(u_rest, beta, b1 | G, sigma, y) instead,
    x = L_a^-T (l + sigma z_x) and u1 = M_j^-1 lam' v_j + sigma L_j^-T z_1j (v_j from the
    drawn x), and the kernel returns after the value, without gradients (``g_chol``,
    ``g_rest`` and out[1] untouched).  ``n_noise`` = 0: the modes and gradients."""
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
    noise = carray(noise_ptr, (n_noise,))
    drawing = n_noise > 0
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
    # Lt = blockdiag_k(I_{m_k} (x) lambda_k, I_{p+1}); row operations on contiguous rows
    width = m1 * q1
    # (two r x width work arrays: Cs, and Cs F, then L_a^-1 Cs F in place)
    c_flat = C.reshape((r, width))
    work = c_flat.copy()
    spherical_rows(work, rest, row_at, fac_at, lam_rest)
    CRs = CR.copy()
    spherical_rows(CRs, rest, row_at, fac_at, lam_rest)
    for i in range(r):  # Lt' CR Lt = (Lt' (Lt' CR)')' and CR is symmetric
        for k2 in range(i):
            swap = CRs[i, k2]
            CRs[i, k2] = CRs[k2, i]
            CRs[k2, i] = swap
    spherical_rows(CRs, rest, row_at, fac_at, lam_rest)
    # per level: M_j = lam' A_j lam + I = L_j L_j', F_j = lam L_j^-T (so W_j = F_j F_j')
    l_inv = np.empty((m1, q1, q1))
    fac = np.empty((m1, q1, q1))
    tmp = np.empty((q1, q1))
    mj = np.empty((q1, q1))
    lj = np.empty((q1, q1))
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
        if not cholesky_lower(mj, lj):
            return 1
        for a in range(q1):
            logdet1 += 2.0 * math.log(lj[a, a])
        lower_inverse(lj, q1, l_inv[j])
        for a in range(q1):
            for b in range(q1):
                acc = 0.0
                for c in range(b + 1):  # L_j^-T[c, b] = l_inv[j, b, c], zero for c > b
                    acc += lam1[a, c] * l_inv[j, b, c]
                fac[j, a, b] = acc
    # Schur complement of the rest rows: Lt'(CR - C W C')Lt = CRs - (Cs F)(Cs F)'
    cw = np.zeros((r, width))
    for i in range(r):
        row = work[i]
        out_row = cw[i]
        for j in range(m1):
            fj = fac[j]
            at = j * q1
            for a in range(q1):
                v = row[at + a]
                fa = fj[a]
                for b in range(q1):
                    out_row[at + b] += v * fa[b]
    schur = np.empty((r, r))
    lower_gram(cw, CRs, schur)
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
    for k2 in range(ra):
        coef = chol[r - 1, k2] + (sigma * noise[k2] if drawing else 0.0)
        for i in range(k2 + 1):
            x_rest[i] += inv_la[k2, i] * coef
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
    v = np.zeros(width)
    for i in range(r):
        wi = wvec[i]
        for t in range(width):
            v[t] += wi * c_flat[i, t]
    u1 = np.empty((m1, q1))
    b1 = np.empty((m1, q1))
    z1e = np.empty((m1, q1))
    t1 = np.empty(q1)
    t2 = np.empty(q1)
    for j in range(m1):
        for a in range(q1):
            acc = 0.0
            for c in range(q1):
                acc += lam1[c, a] * v[j * q1 + c]
            t1[a] = acc
        for a in range(q1):  # L_j^-1 t1
            acc = 0.0
            for c in range(a + 1):
                acc += l_inv[j, a, c] * t1[c]
            t2[a] = acc + (sigma * noise[ra + j * q1 + a] if drawing else 0.0)
        for a in range(q1):  # L_j^-T t2
            acc = 0.0
            for c in range(a, q1):
                acc += l_inv[j, c, a] * t2[c]
            u1[j, a] = acc
        for a in range(q1):
            acc = 0.0
            for c in range(q1):
                acc += lam1[a, c] * u1[j, c]
            b1[j, a] = acc
            modes_b1[j, a] = acc
        for a in range(q1):
            acc = v[j * q1 + a]
            for c in range(q1):
                acc -= A[j, a, c] * b1[j, c]
            z1e[j, a] = acc
    if drawing:
        out[0] = value
        return 0
    # H_first = sum_j M_j^-1 + Y_j' S^-1 Y_j with Y_j = Cs_j lam M_j^-1 = (Cs F)_j L_j^-1:
    # = sum_j L_j^-T (I + K_j) L_j^-1, K_j = level j's block of (L_a^-1 Cs F)'(L_a^-1 Cs F)
    mixed_t = np.empty((width, ra))  # (Cs F)' without the y row, then (L_a^-1 Cs F)'
    for i in range(ra):
        row = cw[i]
        for t in range(width):
            mixed_t[t, i] = row[t]
    forward_columns(chol, mixed_t)
    gram = np.empty((m1, q1, q1))
    neg_eye = -np.eye(q1)
    for j in range(m1):  # level j's q1 rows of mixed_t: -(I + K_j)
        lower_gram(mixed_t[j * q1:(j + 1) * q1], neg_eye, gram[j])
    h_first = np.zeros((q1, q1))
    for j in range(m1):
        for a in range(q1):
            for b in range(q1):
                gram[j, a, b] = -gram[j, a, b]
        for a in range(q1):  # tmp = (I + K_j) L_j^-1
            for b in range(q1):
                acc = 0.0
                for c in range(b, q1):
                    acc += gram[j, a, c] * l_inv[j, c, b]
                tmp[a, b] = acc
        for a in range(q1):  # h += L_j^-T tmp
            for b in range(q1):
                acc = 0.0
                for c in range(a, q1):
                    acc += l_inv[j, c, a] * tmp[c, b]
                h_first[a, b] += acc
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
    # / sigma^2), H_jj = level j's diagonal block of (L_a L_a')^-1 = L_a^-T L_a^-1
    zre = np.empty(rz)
    b1_flat = b1.reshape(width)
    inv_la_t = np.zeros((ra, ra))  # (L_a^-1)', rows contiguous for the H_jj inner products
    if n_rest > 0:
        for t in range(ra):
            for i in range(t + 1):
                inv_la_t[i, t] = inv_la[t, i]
    for i in range(rz):
        acc = 0.0
        for s2 in range(r):
            acc += CR[i, s2] * wvec[s2]
        for t in range(width):
            acc -= c_flat[i, t] * b1_flat[t]
        zre[i] = acc
    for k in range(n_rest):
        mk, qk = rest[k, 0], rest[k, 1]
        base = fac_at[k]
        hk = np.zeros((qk, qk))
        ek = np.zeros((qk, qk))
        for lev in range(mk):  # columns of L_a^-1 = rows of inv_la_t, zero left of row0
            row0 = row_at[k] + lev * qk
            for a in range(qk):
                ua = inv_la_t[row0 + a]
                for b in range(a + 1):
                    ub = inv_la_t[row0 + b]
                    acc = 0.0
                    for t in range(row0, ra):
                        acc += ua[t] * ub[t]
                    hk[a, b] += acc
        for a in range(qk):
            for b in range(a + 1, qk):
                hk[a, b] = hk[b, a]
        for lev in range(mk):
            row0 = row_at[k] + lev * qk
            for a in range(qk):
                for b in range(qk):
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
