"""Compiled refits for the parametric bootstrap of a one-factor model (numba).

A model with one random-effects block (any q: ``(1 | g)``, ``(x | g)``, ``(x || g)``) has a
block-diagonal L_ZZ, so its profiled criterion at theta is a loop over levels (Bates et al.
2015, sec. 3, with the first block only):

    for each level j:   L_j L_j' = lambda' A_j lambda + I,   A_j = Z_j'Z_j
                        R_j = L_j^-1 lambda' Z_j'X,  u_j = L_j^-1 lambda' Z_j'y
    X'X - sum R_j'R_j = R_X R_X',   w = R_X^-1 (X'y - sum R_j'u_j)
    r^2 = y'y - sum u_j'u_j - w'w
    ML:   sum_j log|L_j|^2 + n (1 + log(2 pi r^2 / n))
    REML: ... + log|R_X|^2, with n - p in place of n.

Only Z_j'y, X'y and y'y depend on the response, so one replicate costs O(n q) for its
statistics plus O(m q^3 + m q^2 p + p^3) per evaluation - about 1.5 us for sleepstudy,
against ~70 us for a call of the general ``BlockedSystem`` from Python.

The optimizer, in the same compiled loop, is BFGS with central-difference gradients and a
backtracking Armijo search, over theta *without bounds*: the criterion depends on lambda
only through lambda lambda', which a column's sign does not change, so the unconstrained
problem has the same minimum and no boundary (the reflected branch of
``ThetaLayout.reflections`` lies inside it), and a boundary optimum of lme4's problem is a
smooth interior minimum here.  theta = 0 in a column is a stationary point of the
unconstrained criterion, so a refit never starts there (``START_FLOOR``); columns with a
negative diagonal are flipped at the end.  From the fitted theta a sleepstudy replicate
needs ~85 evaluations.  A refit that does not reach |gradient| <= gtol reports it and the
caller refits that replicate with the general optimizer.  (Nelder-Mead needed 260-525
evaluations for the same accuracy.)

Every function lives in this one file, so numba's cache (keyed by this file) is invalidated
whenever any of them changes.  The first call on a machine compiles for ~15 s; later
processes load the cache in ~0.4 s.
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["refit_replicates"]

START_FLOOR = 0.05   # unit-scale theta: the smallest diagonal entry a refit starts from


@njit(cache=True, nogil=True)
def _cholesky_in_place(a):  # pragma: no cover - jit
    """Lower Cholesky factor of the lower triangle of ``a``, in place: log|a|, or inf where
    ``a`` is not positive definite."""
    size = a.shape[0]
    logdet = 0.0
    for i in range(size):
        d = a[i, i]
        for e in range(i):
            d -= a[i, e] * a[i, e]
        if d <= 0.0:
            return np.inf
        d = np.sqrt(d)
        a[i, i] = d
        logdet += 2.0 * np.log(d)
        for b in range(i + 1, size):
            acc = a[b, i]
            for e in range(i):
                acc -= a[b, e] * a[i, e]
            a[b, i] = acc / d
    return logdet


@njit(cache=True, nogil=True)
def _criterion(theta, rows, cols, A, B, c, XtX, Xty, yty, n, reml,
               lam, M, R, u, S, s, w, tail):  # pragma: no cover - jit
    q = lam.shape[0]
    p = XtX.shape[0]
    lam[:, :] = 0.0
    for k in range(theta.shape[0]):
        lam[rows[k], cols[k]] = theta[k]
    S[:, :] = XtX
    s[:] = Xty
    r2 = yty
    logdet = 0.0
    for j in range(A.shape[0]):
        # M = lam' A_j lam + I (lower triangle), then its Cholesky factor in place
        for a in range(q):
            for b in range(a + 1):
                acc = 0.0
                for e in range(a, q):          # lam[e, a] != 0 only for e >= a
                    le = lam[e, a]
                    if le != 0.0:
                        for f in range(b, q):
                            acc += le * A[j, e, f] * lam[f, b]
                M[a, b] = acc + (1.0 if a == b else 0.0)
        level_logdet = _cholesky_in_place(M)
        if not np.isfinite(level_logdet):
            return np.inf
        logdet += level_logdet
        # R_j = L_j^-1 lam' B_j,  u_j = L_j^-1 lam' c_j
        for a in range(q):
            for col in range(p):
                acc = 0.0
                for e in range(a, q):
                    acc += lam[e, a] * B[j, e, col]
                R[a, col] = acc
            acc = 0.0
            for e in range(a, q):
                acc += lam[e, a] * c[j, e]
            u[a] = acc
        for a in range(q):
            for e in range(a):
                for col in range(p):
                    R[a, col] -= M[a, e] * R[e, col]
                u[a] -= M[a, e] * u[e]
            for col in range(p):
                R[a, col] /= M[a, a]
            u[a] /= M[a, a]
        for a in range(q):
            r2 -= u[a] * u[a]
            for col in range(p):
                s[col] -= R[a, col] * u[a]
                for col2 in range(col + 1):
                    S[col, col2] -= R[a, col] * R[a, col2]
    logdet_x = _cholesky_in_place(S)   # R_X, then w = R_X^-1 s
    if not np.isfinite(logdet_x):
        return np.inf
    for a in range(p):
        acc = s[a]
        for e in range(a):
            acc -= S[a, e] * w[e]
        w[a] = acc / S[a, a]
        r2 -= w[a] * w[a]
    tail[0] = r2
    if not r2 > 0.0:
        return np.inf
    dof = n - p if reml else n
    value = logdet + dof * (1.0 + np.log(2.0 * np.pi * r2 / dof))
    if reml:
        value += logdet_x
    return value


@njit(cache=True, nogil=True)
def _gradient(x, fx, h, g, work, rows, cols, A, B, c, XtX, Xty, yty, n, reml,
              lam, M, R, u, S, s, w, tail):  # pragma: no cover - jit
    """Central differences; False where a neighbour is not finite."""
    k = x.shape[0]
    for e in range(2 * k):        # one call site of the criterion (compile time)
        d, sign = e // 2, 1.0 - 2.0 * (e % 2)
        work[:] = x
        step = h * max(1.0, abs(x[d]))
        work[d] = x[d] + sign * step
        value = _criterion(work, rows, cols, A, B, c, XtX, Xty, yty, n, reml,
                           lam, M, R, u, S, s, w, tail)
        if not np.isfinite(value):
            return False
        if sign > 0.0:
            g[d] = value
        else:
            g[d] = (g[d] - value) / (2.0 * step)
    return True


@njit(cache=True, nogil=True)
def _bfgs(start, max_iter, gtol, rows, cols, A, B, c, XtX, Xty, yty, n, reml,
          lam, M, R, u, S, s, w, tail):  # pragma: no cover - jit
    """Quasi-Newton (BFGS on the inverse Hessian, backtracking Armijo search) with central
    difference gradients: (x, f, evaluations, converged with |gradient| <= gtol)."""
    k = start.shape[0]
    x = start.copy()
    fx = _criterion(x, rows, cols, A, B, c, XtX, Xty, yty, n, reml,
                    lam, M, R, u, S, s, w, tail)
    evals = 1
    if not np.isfinite(fx):
        return x, fx, evals, False
    H = np.eye(k)
    g = np.empty(k)
    g_new = np.empty(k)
    work = np.empty(k)
    direction = np.empty(k)
    x_new = np.empty(k)
    h = 1e-5
    if not _gradient(x, fx, h, g, work, rows, cols, A, B, c, XtX, Xty, yty, n, reml,
                     lam, M, R, u, S, s, w, tail):
        return x, fx, evals + 2 * k, False
    evals += 2 * k
    for _it in range(max_iter):
        gmax = 0.0
        for d in range(k):
            gmax = max(gmax, abs(g[d]))
        if gmax <= gtol * max(1.0, 1e-3 * abs(fx)):
            return x, fx, evals, True
        slope = 0.0
        for a in range(k):
            acc = 0.0
            for b in range(k):
                acc -= H[a, b] * g[b]
            direction[a] = acc
            slope += acc * g[a]
        if slope >= 0.0:            # not a descent direction: restart from steepest descent
            H[:, :] = 0.0
            slope = 0.0
            for a in range(k):
                H[a, a] = 1.0
                direction[a] = -g[a]
                slope -= g[a] * g[a]
        t = 1.0
        f_new = np.inf
        for _ls in range(40):
            for a in range(k):
                x_new[a] = x[a] + t * direction[a]
            f_new = _criterion(x_new, rows, cols, A, B, c, XtX, Xty, yty, n, reml,
                               lam, M, R, u, S, s, w, tail)
            evals += 1
            if np.isfinite(f_new) and f_new <= fx + 1e-4 * t * slope:
                break
            t *= 0.5
        if not (np.isfinite(f_new) and f_new <= fx + 1e-4 * t * slope):
            return x, fx, evals, False
        if not _gradient(x_new, f_new, h, g_new, work, rows, cols, A, B, c, XtX, Xty, yty,
                         n, reml, lam, M, R, u, S, s, w, tail):
            return x, fx, evals + 2 * k, False
        evals += 2 * k
        sy = 0.0
        for a in range(k):
            direction[a] = x_new[a] - x[a]       # s_k
            work[a] = g_new[a] - g[a]            # y_k
            sy += direction[a] * work[a]
        if sy > 1e-300:
            hy = np.empty(k)
            yhy = 0.0
            for a in range(k):
                acc = 0.0
                for b in range(k):
                    acc += H[a, b] * work[b]
                hy[a] = acc
                yhy += work[a] * acc
            for a in range(k):
                for b in range(k):
                    H[a, b] += ((sy + yhy) * direction[a] * direction[b] / (sy * sy)
                                - (hy[a] * direction[b] + direction[a] * hy[b]) / sy)
        x[:] = x_new
        g[:] = g_new
        fx = f_new
    return x, fx, evals, False


@njit(cache=True, nogil=True)
def refit_replicates(Y, codes, zcols, X, A, B, XtX, theta0, rows, cols, reml, max_iter,
                     gtol):  # pragma: no cover - jit
    """Refit every simulated response (rows of ``Y``, unit-scale data) of a one-block model.

    Returns theta (n_rep, k), beta (n_rep, p) and sigma (n_rep,) on the unit scale, the
    evaluations used and whether each optimizer converged."""
    n_rep, n = Y.shape
    m, q = A.shape[0], A.shape[1]
    p = X.shape[1]
    k = theta0.shape[0]
    theta_out = np.empty((n_rep, k))
    beta_out = np.empty((n_rep, p))
    sigma_out = np.empty(n_rep)
    evals_out = np.empty(n_rep, dtype=np.int64)
    ok_out = np.empty(n_rep, dtype=np.bool_)
    for r in range(n_rep):
        y = Y[r]
        c = np.zeros((m, q))
        Xty = np.zeros(p)
        yty = 0.0
        for i in range(n):
            yi = y[i]
            j = codes[i]
            for a in range(q):
                c[j, a] += zcols[i, a] * yi
            for col in range(p):
                Xty[col] += X[i, col] * yi
            yty += yi * yi
        lam = np.empty((q, q))
        M = np.empty((q, q))
        R = np.empty((q, p))
        u = np.empty(q)
        S = np.empty((p, p))
        s = np.empty(p)
        w = np.empty(p)
        tail = np.empty(1)
        # theta = 0 in a column is a stationary point of the unconstrained criterion
        # (lambda -> -lambda): start the diagonal away from it
        start = theta0.copy()
        for d in range(k):
            if rows[d] == cols[d] and abs(start[d]) < START_FLOOR:
                start[d] = START_FLOOR
        theta, _v, used, ok = _bfgs(start, max_iter, gtol, rows, cols, A, B, c, XtX, Xty,
                                    yty, n, reml, lam, M, R, u, S, s, w, tail)
        # canonical factor: a non-negative diagonal (flip the columns where it is negative)
        for col in range(q):
            for d in range(k):
                if rows[d] == col and cols[d] == col and theta[d] < 0.0:
                    for e in range(k):
                        if cols[e] == col:
                            theta[e] = -theta[e]
        value = _criterion(theta, rows, cols, A, B, c, XtX, Xty, yty, n, reml,
                           lam, M, R, u, S, s, w, tail)
        # beta = R_X'^-1 w (S holds R_X, w the last solve, from that evaluation)
        beta = np.empty(p)
        for a in range(p - 1, -1, -1):
            acc = w[a]
            for e in range(a + 1, p):
                acc -= S[e, a] * beta[e]
            beta[a] = acc / S[a, a]
        dof = n - p if reml else n
        sigma_out[r] = np.sqrt(tail[0] / dof) if tail[0] > 0.0 else np.nan
        theta_out[r] = theta
        beta_out[r] = beta
        evals_out[r] = used + 1
        ok_out[r] = ok and np.isfinite(value)
    return theta_out, beta_out, sigma_out, evals_out, ok_out
