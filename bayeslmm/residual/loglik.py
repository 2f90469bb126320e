"""The log density of residuals under a structure, with its exact gradient (numpy).

For residuals e (y - mu) and per-group covariance V_i = Sigma restricted to the group's
occasions (``ResidualModel``'s batches by size and pattern):

    log p(e) = -1/2 sum_i e_i' V_i^-1 e_i - 1/2 sum_i log|V_i| - n/2 log 2 pi,
    d/de_i   = -V_i^-1 e_i = -W_i' z_i,               z_i = W_i e_i,  W_i = L_i^-1,
    d/dV_i   = -1/2 W_i' (I - z_i z_i') W_i            (summed by pattern into Sigma's
                                                         occasions).

The Bayesian engine's PyTensor Op (``bayes/residual_op.py``) calls these once per NUTS step.
"""

from __future__ import annotations

import numpy as np

from .model import ResidualModel

__all__ = ["occasion_logp", "car1_logp"]

LOG_2PI = float(np.log(2.0 * np.pi))


def _pattern_terms(residual: ResidualModel, e: np.ndarray, covs: list[np.ndarray]):
    """Per batch: value contribution, d/de, d/dV_u (n_patterns, m, m)."""
    value = -0.5 * residual.n * LOG_2PI
    grad_e = np.zeros_like(e)
    grad_covs = []
    for batch, cov in zip(residual.batches, covs, strict=True):
        chol = np.linalg.cholesky(cov)
        inv = np.linalg.inv(chol)
        w = inv[batch.pattern]                                  # (groups, m, m)
        z = np.einsum("gij,gj->gi", w, e[batch.rows])
        counts = np.bincount(batch.pattern, minlength=len(cov))
        value -= 0.5 * float((z * z).sum())
        value -= float((np.log(np.diagonal(chol, axis1=1, axis2=2)).sum(axis=1)
                        * counts).sum())
        grad_e[batch.rows] = -np.einsum("gji,gj->gi", w, z)
        starts = batch.pattern_starts
        outer = np.add.reduceat(np.einsum("gi,gj->gij", z, z), starts, axis=0)
        eye = np.eye(cov.shape[1])
        inner = counts[:, None, None] * eye - outer
        grad_covs.append(-0.5 * np.swapaxes(inv, 1, 2) @ inner @ inv)
    return value, grad_e, grad_covs


def occasion_logp(residual: ResidualModel, e: np.ndarray, sigma_full: np.ndarray):
    """(log p(e), d/de, d/dSigma) for Sigma over every occasion (T x T)."""
    e = np.asarray(e, dtype=float)
    covs = []
    for batch in residual.batches:
        idx = batch.patterns.astype(np.intp)
        covs.append(sigma_full[idx[:, :, None], idx[:, None, :]])
    value, grad_e, grad_covs = _pattern_terms(residual, e, covs)
    grad_sigma = np.zeros_like(sigma_full)
    for batch, g in zip(residual.batches, grad_covs, strict=True):
        idx = batch.patterns.astype(np.intp)
        np.add.at(grad_sigma, (idx[:, :, None], idx[:, None, :]), g)
    return value, grad_e, grad_sigma


def car1_logp(residual: ResidualModel, e: np.ndarray, sigma: float, phi: float):
    """(log p(e), d/de, d/dsigma, d/dphi) for V = sigma^2 phi^|t - t'| (car1)."""
    e = np.asarray(e, dtype=float)
    lags = [np.abs(b.patterns[:, :, None] - b.patterns[:, None, :]) for b in residual.batches]
    corrs = [phi**lag for lag in lags]
    value, grad_e, grad_covs = _pattern_terms(residual, e, [sigma**2 * c for c in corrs])
    g_sigma = sum(float((g * 2.0 * sigma * c).sum()) for g, c in zip(grad_covs, corrs,
                                                                       strict=True))
    g_phi = sum(float((g * sigma**2 * lag * phi ** np.maximum(lag - 1.0, 0.0)).sum())
                for g, lag in zip(grad_covs, lags, strict=True))
    return value, grad_e, g_sigma, g_phi
