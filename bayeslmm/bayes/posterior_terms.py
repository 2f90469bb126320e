"""The numba pieces of the log posterior on the unconstrained scale that both C-callback
densities share (``marginal_cfunc.LOGP_CFUNC`` and ``partial_posterior``): theta -> the
blocks' Cholesky factors (``transform``), the priors with their Jacobians and the chain
rule back to theta (``add_priors``), and the non-finite guard (``finite_or_reject``).
theta's layout is ``marginal_posterior.CovarianceLayout``'s.
"""

from __future__ import annotations

import math

import numpy as np

from .jit import internal
from .unconstrained import (
    cholesky_backprop,
    corr_cholesky,
    scale_prior_logp,
    sd_log_jacobian,
    sd_of,
)

__all__ = ["scale_term", "transform", "add_priors", "finite_or_reject"]


@internal
def scale_term(u, pivot, family, a, b, g_sd):  # pragma: no cover - jit
    """For an SD s = ``sd_of(u, pivot)`` with prior (family, a, b): (log prior + log
    Jacobian, dlogp/du) given the rest of the density's derivative ``g_sd`` in s."""
    s = sd_of(u, pivot)
    lp, dlp = scale_prior_logp(s, family, a, b)
    log_jac, d_log_jac, ds_du = sd_log_jacobian(u, pivot)
    return lp + log_jac, (g_sd + dlp) * ds_du + d_log_jac


@internal
def transform(theta, q1, ncpc, eta, rest_meta, rest_eta, w, chol, w_rest, chol_rest, pivot
              ):  # pragma: no cover - jit
    """theta -> the first block's correlation factor ``w`` and Cholesky factor ``chol``, and
    the other blocks' ones packed row-major in ``w_rest`` and ``chol_rest`` (a 1 x 1
    block's is its SD); returns (sigma, LKJ log densities with their Jacobians).
    ``pivot``: each SD's (the first block's, the others', sigma's), see ``sd_of``."""
    lkj = 0.0
    if ncpc > 0:
        lkj = corr_cholesky(theta[q1:q1 + ncpc], q1, eta, w)
    else:
        for i in range(q1):
            for j in range(q1):
                w[i, j] = 1.0 if i == j else 0.0
    for i in range(q1):
        sd = sd_of(theta[i], pivot[i])
        for j in range(q1):
            chol[i, j] = sd * w[i, j]
    at = q1 + ncpc
    base = 0
    prior = q1
    for k in range(rest_meta.shape[0]):
        qk, nk = rest_meta[k, 0], rest_meta[k, 1]
        wk = w_rest[base:base + qk * qk].reshape((qk, qk))
        if nk > 0:
            lkj += corr_cholesky(theta[at + qk:at + qk + nk], qk, rest_eta[k], wk)
        else:
            for i in range(qk):
                for j in range(qk):
                    wk[i, j] = 1.0 if i == j else 0.0
        for i in range(qk):
            sd = sd_of(theta[at + i], pivot[prior])
            prior += 1
            for j in range(qk):
                chol_rest[base + i * qk + j] = sd * wk[i, j]
        at += qk + nk
        base += qk * qk
    return sd_of(theta[theta.shape[0] - 1], pivot[prior]), lkj


@internal
def add_priors(theta, grad, q1, ncpc, eta, w, g_chol, rest_meta, rest_eta, w_rest, g_rest,
               g_sigma, family, pa, pb, pivot):  # pragma: no cover - jit
    """Given the likelihood's gradient in (chol, the packed rest factors, sigma), fill
    ``grad`` (in theta) and return the log prior density with the Jacobians (LKJ
    excluded: ``transform``)."""
    ndim = theta.shape[0]
    sd = np.empty(q1)
    for i in range(q1):
        sd[i] = sd_of(theta[i], pivot[i])
    g_u = np.empty(q1)
    g_y = np.zeros(ncpc)
    cholesky_backprop(g_chol, sd, w, theta[q1:q1 + ncpc], q1, eta, g_u, g_y)
    for j in range(ncpc):
        grad[q1 + j] = g_y[j]
    # prior k belongs to the k-th SD: first block's q1, the rest blocks', sigma last
    value = 0.0
    for i in range(q1):
        lp, grad[i] = scale_term(theta[i], pivot[i], family[i], pa[i], pb[i],
                                 g_u[i] / sd[i])
        value += lp
    at = q1 + ncpc
    base = 0
    prior = q1
    for k in range(rest_meta.shape[0]):
        qk, nk = rest_meta[k, 0], rest_meta[k, 1]
        sdk = np.empty(qk)
        for i in range(qk):
            sdk[i] = sd_of(theta[at + i], pivot[prior + i])
        g_uk = np.empty(qk)
        g_yk = np.zeros(nk)
        cholesky_backprop(g_rest[base:base + qk * qk].reshape((qk, qk)), sdk,
                          w_rest[base:base + qk * qk].reshape((qk, qk)),
                          theta[at + qk:at + qk + nk], qk, rest_eta[k], g_uk, g_yk)
        for j in range(nk):
            grad[at + qk + j] = g_yk[j]
        for i in range(qk):
            lp, grad[at + i] = scale_term(theta[at + i], pivot[prior], family[prior],
                                          pa[prior], pb[prior], g_uk[i] / sdk[i])
            value += lp
            prior += 1
        at += qk + nk
        base += qk * qk
    lp, grad[ndim - 1] = scale_term(theta[ndim - 1], pivot[prior], family[prior], pa[prior],
                                    pb[prior], g_sigma)
    return value + lp


@internal
def finite_or_reject(value, grad):  # pragma: no cover - jit
    """``value`` when it and every gradient entry are finite; else -inf with ``grad``
    zeroed (an SD under- or overflowed: outside the numerically usable support)."""
    ok = math.isfinite(value)
    for i in range(grad.shape[0]):
        ok = ok and math.isfinite(grad[i])
    if ok:
        return value
    for i in range(grad.shape[0]):
        grad[i] = 0.0
    return -np.inf
