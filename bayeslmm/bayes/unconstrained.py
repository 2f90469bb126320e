"""Covariance parameters on the unconstrained scale, with their priors, in numba.

The nutpie backend samples a flat vector ``theta`` and needs log p(theta | y) and its
gradient without PyTensor (whose compile time the user would wait for).  This module holds
the pieces, each a small jitted function:

* an SD s from its unconstrained u (``sd_of``): s = exp(u), or, for an SD with a *pivot*
  c > 0, s = c softplus(u) = c log(1 + e^u): linear in u above c, logarithmic below it.
  Its log prior plus the log Jacobian is ``scale_prior_logp`` (HalfNormal, HalfStudentT,
  HalfCauchy, Exponential, family codes ``SCALE_FAMILIES``) plus ``sd_log_jacobian``.
  Why a pivot: an SD whose posterior reaches zero (the data cannot tell it from 0: the
  likelihood is flat there) has, in u = log s, a long exponential left tail (density
  prop. to e^u) beside a short right side; NUTS mixes slowly on it (kb07's sd_subj[spkr]:
  bulk ESS 964 of 4000, 9.3 steps a draw).  With s = c softplus(u) the bulk above c is
  linear in u and only s < c is stretched (ESS 2,900-3,300, 7 steps a draw).  For an SD
  the data pin down, log s is closer to normal than s, so it keeps c = 0 (``sd_pivots``);
  the posterior is the same either way, only the sampler's coordinates differ;
* a correlation matrix R = W W' from canonical partial correlations z = tanh(y) (Lewandowski,
  Kurowicka & Joe 2009; Stan's ``cholesky_corr`` transform): row i of the Cholesky factor W is
  W_ij = z_ij prod_{k<j} sqrt(1 - z_ik^2) (j < i), W_ii = prod_{k<i} sqrt(1 - z_ik^2).
  Under LKJ(eta) the CPCs are independent with density prop. to
  (1 - z_ij^2)^(eta - 1 + (q - 2 - j) / 2) (j counted from 0), so with the tanh Jacobian
  log p(y) = sum_ij (eta + (q - 2 - j) / 2) log(1 - z_ij^2)  (``corr_cholesky``);
* the block's Cholesky factor L = diag(s) W, and back-propagation of dlogp/dL to (u, y)
  (``cholesky_backprop``).

The prior is the full model's (``builder.py``): independent SD priors times LKJ(eta) on the
correlation, as ``pm.LKJCholeskyCov(sd_dist=...)``.  Constants of the densities are dropped.
"""

from __future__ import annotations

import math

import numpy as np

from .jit import entry, internal
from .priors import Exponential, HalfCauchy, HalfNormal, HalfStudentT, Prior

__all__ = ["SCALE_FAMILIES", "scale_prior_arrays", "scale_prior_logp", "corr_cholesky",
           "corr_cholesky_draws", "cholesky_backprop", "n_cpc", "sd_of", "sd_log_jacobian",
           "sd_from_u", "u_from_sd", "sd_pivots", "PIVOT_FRACTION"]

PIVOT_FRACTION = 0.25  # an SD's pivot, as a multiple of its noise scale (``sd_pivots``)

SCALE_FAMILIES = {HalfNormal: 0, HalfStudentT: 1, HalfCauchy: 2, Exponential: 3}


def scale_prior_arrays(priors: list[Prior]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(family codes, first parameter, second parameter) of a list of SD priors."""
    family = np.array([SCALE_FAMILIES[type(p)] for p in priors], dtype=np.int64)
    first = np.zeros(len(priors))
    second = np.zeros(len(priors))
    for k, prior in enumerate(priors):
        values = list(prior.params().values())  # HalfStudentT: (nu, sigma); others: one
        first[k] = values[0]
        second[k] = values[1] if len(values) > 1 else 0.0
    return family, first, second


def n_cpc(q: int, correlated: bool) -> int:
    """Number of canonical partial correlations of a q x q block."""
    return q * (q - 1) // 2 if correlated else 0


@internal
def scale_prior_logp(x, family, a, b):  # pragma: no cover - jit
    """log prior density of an SD x > 0 (up to a constant) and its derivative in x."""
    if family == 0:   # HalfNormal(sigma=a)
        return -0.5 * (x / a) ** 2, -x / (a * a)
    if family == 1:   # HalfStudentT(nu=a, sigma=b)
        t = x / b
        return -0.5 * (a + 1.0) * math.log1p(t * t / a), -(a + 1.0) * t / (b * (a + t * t))
    if family == 2:   # HalfCauchy(beta=a)
        t = x / a
        return -math.log1p(t * t), -2.0 * t / (a * (1.0 + t * t))
    return -a * x, -a  # Exponential(lam=a)


def sd_pivots(reml_sd: np.ndarray, noise_sd: np.ndarray) -> np.ndarray:
    """Pivots c of SDs (see the module docstring): ``PIVOT_FRACTION`` x the noise scale
    where the REML SD is below its noise scale, else 0 (s = exp(u)).

    ``noise_sd`` of a term with column z of a factor with m levels is
    sigma / sqrt(sum_i z_i^2 / m): the standard error of one level's effect from the
    noise alone, the size below which the data cannot tell an SD from zero.  Both
    arguments scale with the data's units, so the sampler's coordinates do too."""
    reml_sd = np.asarray(reml_sd, dtype=float)
    noise_sd = np.asarray(noise_sd, dtype=float)
    usable = np.isfinite(noise_sd) & (noise_sd > 0)
    return np.where(usable & ~(reml_sd >= noise_sd), PIVOT_FRACTION * noise_sd, 0.0)


def sd_from_u(u: np.ndarray, pivot: np.ndarray) -> np.ndarray:
    """numpy ``sd_of`` over arrays (pivots broadcast along the last axis)."""
    u = np.asarray(u, dtype=float)
    pivot = np.broadcast_to(np.asarray(pivot, dtype=float), u.shape)
    soft = pivot > 0
    return np.where(soft, pivot * np.logaddexp(0.0, u), np.exp(np.where(soft, 0.0, u)))


def u_from_sd(sd: np.ndarray, pivot: np.ndarray) -> np.ndarray:
    """The inverse of ``sd_from_u``: log s, or log(expm1(s / c)) (stable for large s / c)."""
    sd = np.asarray(sd, dtype=float)
    pivot = np.broadcast_to(np.asarray(pivot, dtype=float), sd.shape)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = sd / np.where(pivot > 0, pivot, 1.0)
        soft = np.where(t > 30.0, t + np.log1p(-np.exp(-np.minimum(t, 700.0))),
                        np.log(np.expm1(np.minimum(t, 30.0))))
        return np.where(pivot > 0, soft, np.log(sd))


@internal
def softplus(u):  # pragma: no cover - jit
    """log(1 + e^u) without overflow."""
    if u > 0.0:
        return u + math.log1p(math.exp(-u))
    return math.log1p(math.exp(u))


@internal
def sd_of(u, pivot):  # pragma: no cover - jit
    """The SD of unconstrained ``u``: exp(u), or pivot * softplus(u) when pivot > 0."""
    if pivot > 0.0:
        return pivot * softplus(u)
    return math.exp(u)


@internal
def sd_log_jacobian(u, pivot):  # pragma: no cover - jit
    """(log ds/du, its derivative in u, ds/du) of ``sd_of``."""
    if pivot > 0.0:
        # ds/du = c sigmoid(u); log sigmoid(u) = -softplus(-u), d/du = sigmoid(-u)
        if u >= 0.0:
            e = math.exp(-u)
            sig, sig_neg = 1.0 / (1.0 + e), e / (1.0 + e)
        else:
            e = math.exp(u)
            sig, sig_neg = e / (1.0 + e), 1.0 / (1.0 + e)
        return math.log(pivot) - softplus(-u), sig_neg, pivot * sig
    s = math.exp(u)
    return u, 1.0, s


@internal
def log_one_minus_tanh2(y):  # pragma: no cover - jit
    """log(1 - tanh(y)^2) = -2 log cosh y, without underflow for large |y|."""
    ay = abs(y)
    return -2.0 * (ay + math.log1p(math.exp(-2.0 * ay)) - math.log(2.0))


@internal
def corr_cholesky(y, q, eta, w):  # pragma: no cover - jit
    """Fill ``w`` (q x q) with the Cholesky factor of the correlation matrix whose CPCs are
    tanh(y) (row-major over the strict lower triangle); return the LKJ(eta) log density of
    y including the Jacobian."""
    logp = 0.0
    idx = 0
    for i in range(q):
        for j in range(q):
            w[i, j] = 0.0
    w[0, 0] = 1.0
    for i in range(1, q):
        remaining = 1.0
        for j in range(i):
            z = math.tanh(y[idx])
            w[i, j] = z * math.sqrt(remaining)
            remaining *= 1.0 - z * z
            logp += (eta + 0.5 * (q - 2 - j)) * log_one_minus_tanh2(y[idx])
            idx += 1
        w[i, i] = math.sqrt(remaining)
    return logp


@entry
def corr_cholesky_draws(y, q, eta, out):  # pragma: no cover - jit
    """``corr_cholesky`` for every row of ``y`` (draws x CPCs) into ``out`` (draws x q x q)."""
    for d in range(y.shape[0]):
        corr_cholesky(y[d], q, eta, out[d])


@internal
def cholesky_backprop(g_chol, sd, w, y, q, eta, g_u, g_y):  # pragma: no cover - jit
    """Given dlogp/dL for L = diag(sd) W (``g_chol``, lower triangle), set g_u = dlogp/du
    (u = log sd) and add dlogp/dy (the LKJ term's derivative included) into ``g_y``."""
    for i in range(q):
        acc = 0.0
        for j in range(i + 1):
            acc += g_chol[i, j] * w[i, j]
        g_u[i] = acc * sd[i]
    if y.shape[0] == 0:  # uncorrelated block: W = I
        return
    idx = 0
    for i in range(1, q):
        # W_ij = z_ij P_j, W_ii = P_i, P_j = prod_{k<j} sqrt(1 - z_ik^2):
        # dlogp/dy_il = (1 - z_il^2) gW_il P_l - z_il sum_{j=l+1..i} gW_ij W_ij
        for l in range(i):
            z = math.tanh(y[idx + l])
            prod = 1.0
            for k in range(l):
                zk = math.tanh(y[idx + k])
                prod *= math.sqrt(1.0 - zk * zk)
            tail = 0.0
            for j in range(l + 1, i + 1):
                tail += g_chol[i, j] * sd[i] * w[i, j]
            g = (1.0 - z * z) * g_chol[i, l] * sd[i] * prod - z * tail
            g_y[idx + l] += g - 2.0 * z * (eta + 0.5 * (q - 2 - l))
        idx += i
