"""The marginal log posterior as a C callback for nutpie: no Python (and no GIL) per step.

nutpie calls ``logp(dim, theta, grad_out, logp_out, user_data)`` from its Rust threads.
``user_data`` points at one float64 buffer (``pack``) holding the dimensions, the priors and
the sufficient statistics; the callback unpacks views of it and runs three jitted functions:
``transform`` (theta -> Cholesky factor, SDs, sigma), ``marginal_logp_grad`` (the
likelihood) and ``add_priors`` (priors, Jacobians, chain rule to theta).
``MarginalPosterior.logp_and_grad`` calls this same callback through ctypes.  Return codes
follow nutpie's: 0 ok, 4 non-finite log density (nutpie treats it as a divergence).
"""

from __future__ import annotations

import numpy as np
from numba import carray, cfunc, types

from .marginal_kernel import marginal_logp_grad
from .marginal_posterior import add_priors, finite_or_reject, transform

__all__ = ["pack", "LOGP_CFUNC", "EXPAND_CFUNC"]

HEADER = 9  # size, q1, n_cpc, eta, n_rest, p, m1, r, n_obs


def pack(post) -> np.ndarray:
    """The float64 buffer the callback reads: the ``HEADER`` numbers, then A, C, CR,
    rest_levels, mu0, wprior and the scale priors' family codes and parameters (the order
    ``LOGP_CFUNC`` unpacks)."""
    cross_first, cross, cross_rest, rest_levels, mu0, wprior, n_obs = post._data
    m1, q1 = cross_first.shape[0], cross_first.shape[1]
    r, p = cross_rest.shape[0], len(mu0)
    parts = [cross_first.ravel(), cross.ravel(), cross_rest.ravel(),
             rest_levels.astype(float), mu0, wprior, post.family.astype(float), post.param_a,
             post.param_b]
    body = np.concatenate(parts)
    header = np.array([HEADER + body.size, q1, post.n_cpc, post.eta, post.n_rest, p, m1, r,
                       n_obs], dtype=float)
    return np.ascontiguousarray(np.concatenate([header, body]))


LOGP_SIG = types.int64(types.uint64, types.CPointer(types.double),
                       types.CPointer(types.double), types.CPointer(types.double),
                       types.voidptr)
EXPAND_SIG = types.int64(types.uint64, types.uint64, types.CPointer(types.double),
                         types.CPointer(types.double), types.voidptr)


@cfunc(LOGP_SIG, cache=True, error_model="numpy")
def LOGP_CFUNC(dim, x_ptr, grad_ptr, logp_ptr, data_ptr):  # pragma: no cover - jit
    size = int(carray(data_ptr, (1,), np.float64)[0])
    buf = carray(data_ptr, (size,), np.float64)
    q1, ncpc, eta, n_rest = int(buf[1]), int(buf[2]), buf[3], int(buf[4])
    p, m1, r, n_obs = int(buf[5]), int(buf[6]), int(buf[7]), buf[8]
    at = HEADER
    a = buf[at:at + m1 * q1 * q1].reshape((m1, q1, q1))
    at += m1 * q1 * q1
    c = buf[at:at + r * m1 * q1].reshape((r, m1, q1))
    at += r * m1 * q1
    cr = buf[at:at + r * r].reshape((r, r))
    at += r * r
    rest_levels = np.empty(n_rest, dtype=np.int64)
    for k in range(n_rest):
        rest_levels[k] = int(buf[at + k])
    at += n_rest
    mu0 = buf[at:at + p]
    wprior = buf[at + p:at + 2 * p]
    at += 2 * p
    n_scale = q1 + n_rest + 1
    family = np.empty(n_scale, dtype=np.int64)
    for k in range(n_scale):
        family[k] = int(buf[at + k])
    pa = buf[at + n_scale:at + 2 * n_scale]
    pb = buf[at + 2 * n_scale:at + 3 * n_scale]
    theta = carray(x_ptr, (dim,))
    grad = carray(grad_ptr, (dim,))
    logp = carray(logp_ptr, (1,))
    w = np.empty((q1, q1))
    chol = np.empty((q1, q1))
    sd_rest = np.empty(n_rest)
    sigma, lkj = transform(theta, q1, ncpc, eta, n_rest, w, chol, sd_rest)
    g_chol = np.zeros((q1, q1))
    g_rest = np.zeros(n_rest)
    modes_x = np.empty(r - 1)
    modes_b1 = np.empty((m1, q1))
    value, g_sigma = marginal_logp_grad(chol, sd_rest, sigma, a, c, cr, rest_levels, mu0,
                                        wprior, n_obs, g_chol, g_rest, modes_x, modes_b1)
    for i in range(dim):
        grad[i] = 0.0
    if not np.isfinite(value):
        logp[0] = -np.inf
        return 4
    value += lkj + add_priors(theta, grad, q1, ncpc, eta, w, g_chol, g_rest, g_sigma, family,
                              pa, pb)
    logp[0] = finite_or_reject(value, grad)
    return 0 if np.isfinite(logp[0]) else 4


@cfunc(EXPAND_SIG, cache=True)
def EXPAND_CFUNC(dim, expanded, x_ptr, out_ptr, data_ptr):  # pragma: no cover - jit
    x = carray(x_ptr, (dim,))
    out = carray(out_ptr, (expanded,))
    for i in range(dim):
        out[i] = x[i]
    return 0
