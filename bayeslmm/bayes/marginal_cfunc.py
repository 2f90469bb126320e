"""The marginal log posterior as a C callback for nutpie: no Python (and no GIL) per step.

nutpie calls ``logp(dim, theta, grad_out, logp_out, user_data)`` from its Rust threads.
``user_data`` is the buffer of ``callback_abi.pack`` (dimensions, priors, sufficient
statistics and the kernel callback's address).  The callback runs ``transform`` (theta ->
Cholesky factor, SDs, sigma), the likelihood kernel (``kernel_cfunc``, called through its
address: compiled and cached apart from this callback) and ``add_priors`` (priors,
Jacobians, chain rule to theta).  ``MarginalPosterior.logp_and_grad`` calls this same
callback through ctypes.  Return codes follow nutpie's: 0 ok, 4 non-finite log density
(nutpie treats it as a divergence).
"""

from __future__ import annotations

import numpy as np
from numba import carray, cfunc

from .callback_abi import EXPAND_SIG, LOGP_SIG, kernel_logp_grad, unpack
from .posterior_terms import add_priors, finite_or_reject, transform

__all__ = ["LOGP_CFUNC", "EXPAND_CFUNC"]


@cfunc(LOGP_SIG, cache=True, error_model="numpy")
def LOGP_CFUNC(dim, x_ptr, grad_ptr, logp_ptr, data_ptr):  # pragma: no cover - jit
    (q1, ncpc, kernel, eta, n_obs, a, c, cr, rest, rest_meta, rest_eta, mu0, wprior, family,
     pa, pb, pivot) = unpack(data_ptr)
    m1, r = a.shape[0], cr.shape[0]
    n_fac = 0
    for k in range(rest.shape[0]):
        n_fac += rest[k, 1] * rest[k, 1]
    theta = carray(x_ptr, (dim,))
    grad = carray(grad_ptr, (dim,))
    logp = carray(logp_ptr, (1,))
    w = np.empty((q1, q1))
    chol = np.empty((q1, q1))
    w_rest = np.empty(n_fac)
    chol_rest = np.empty(n_fac)
    sigma, lkj = transform(theta, q1, ncpc, eta, rest_meta, rest_eta, w, chol, w_rest,
                           chol_rest, pivot)
    g_chol = np.zeros((q1, q1))
    g_rest = np.zeros(n_fac)
    modes_x = np.empty(r - 1)
    modes_b1 = np.empty((m1, q1))
    value, g_sigma = kernel_logp_grad(kernel, chol, chol_rest, sigma, a, c, cr, rest, mu0,
                                      wprior, n_obs, g_chol, g_rest, modes_x, modes_b1)
    for i in range(dim):
        grad[i] = 0.0
    if not np.isfinite(value):
        logp[0] = -np.inf
        return 4
    value += lkj + add_priors(theta, grad, q1, ncpc, eta, w, g_chol, rest_meta, rest_eta,
                              w_rest, g_rest, g_sigma, family, pa, pb,
                              pivot)
    logp[0] = finite_or_reject(value, grad)
    return 0 if np.isfinite(logp[0]) else 4


@cfunc(EXPAND_SIG, cache=True)
def EXPAND_CFUNC(dim, expanded, x_ptr, out_ptr, data_ptr):  # pragma: no cover - jit
    x = carray(x_ptr, (dim,))
    out = carray(out_ptr, (expanded,))
    for i in range(dim):
        out[i] = x[i]
    return 0
