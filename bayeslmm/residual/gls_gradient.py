"""The GLS criterion (no random effects) and its exact gradient in the residual parameters.

For V_i = E_i V E_i' (group i's rows of one relative covariance V over every position: true
for every structure but car1, without a variance function), sigma profiled out, the REML
criterion's differential is sum_i tr(G_i dV_i) with

    G_i = V_i^-1 - V_i^-1 X_i H X_i' V_i^-1 - V_i^-1 r_i r_i' V_i^-1 / sigma^2,
    H = (X' V^-1 X)^-1,  r = y - X beta_hat

(ML drops the H term; sigma^2 is the profiled value, the envelope theorem drops its
derivative and beta_hat's).  With W_i = L_i^-1 the whitening and A = W X R^-1 (R'R = X~'X~):

    G_i = W_i' (I - A_i A_i' - r~_i r~_i' / sigma^2) W_i,

summed by pattern of observed positions and scattered into G (T x T), so the gradient costs
about one more evaluation and d criterion / d rho = sum_ab G_ab dV_ab / d rho
(``ResidualStructure.cov_gradient``).  A quasi-Newton method then needs a few dozen
evaluations where a derivative-free one needs thousands (an unstructured 10-visit MMRM: 54
parameters).
"""

from __future__ import annotations

import numpy as np
import scipy.linalg as sla

from ..core.cholesky import LOG_2PI
from ..spec import ModelSpec
from .model import ResidualModel
from .structures import ContinuousAutoRegressive

__all__ = ["GlsGradient", "has_gradient"]


def has_gradient(spec: ModelSpec, residual: ResidualModel) -> bool:
    """Whether the closed-form gradient applies (see the module docstring)."""
    return (not spec.blocks and residual.structure is not None and residual.n_variance == 0
            and not isinstance(residual.structure, ContinuousAutoRegressive))


class GlsGradient:
    """Criterion and gradient of a GLS model on the unit-scale data ``spec``."""

    def __init__(self, spec: ModelSpec, residual: ResidualModel, reml: bool):
        self.residual, self.reml = residual, bool(reml)
        self.structure = residual.structure
        self.n, self.p = spec.n, spec.p
        # every batch's rows of [X y], contiguous: (n_groups, m, p + 1)
        xy = np.column_stack([spec.X, spec.y])
        self._xy = [xy[b.rows] for b in residual.batches]
        self._starts = [b.pattern_starts for b in residual.batches]
        self._index = [b.patterns.astype(np.intp) for b in residual.batches]

    def __call__(self, rho: np.ndarray) -> tuple[float, np.ndarray]:
        rho = np.asarray(rho, dtype=float)
        v_full = self.structure.relative_cov(rho)
        p = self.p
        logdet = 0.0
        inverses, white = [], []
        for batch, idx, xy in zip(self.residual.batches, self._index, self._xy, strict=True):
            v = v_full[idx[:, :, None], idx[:, None, :]]
            chol = np.linalg.cholesky(v)
            counts = np.bincount(batch.pattern, minlength=len(idx))
            logdet += 2.0 * float((np.log(np.diagonal(chol, axis1=1, axis2=2)).sum(axis=1)
                                   * counts).sum())
            inv = np.linalg.inv(chol)
            inverses.append(inv)
            white.append(inv[batch.pattern] @ xy)
        cross = sum(np.einsum("gmi,gmj->ij", w, w) for w in white)
        chol = np.linalg.cholesky(cross)
        rx, pwrss = chol[:p, :p], float(chol[p, p] ** 2)
        dof = self.n - p if self.reml else self.n
        value = dof * (1.0 + LOG_2PI + np.log(pwrss / dof)) + logdet
        if self.reml:
            value += 2.0 * float(np.log(np.diagonal(rx)).sum())
        beta = sla.cho_solve((rx, True), cross[:p, p])
        sigma2 = pwrss / dof
        t = self.structure.n_positions
        grad_v = np.zeros((t, t))
        for batch, idx, inv, w, starts in zip(self.residual.batches, self._index, inverses,
                                              white, self._starts, strict=True):
            resid = w[:, :, p] - w[:, :, :p] @ beta
            m = np.einsum("gi,gj->gij", resid, resid) / sigma2
            if self.reml:  # A = X~ R^-1: solve R' A' = X~' per row block
                a = sla.solve_triangular(rx, w[:, :, :p].reshape(-1, p).T, lower=True,
                                         check_finite=False).T.reshape(w.shape[0], -1, p)
                m += a @ np.swapaxes(a, 1, 2)
            summed = np.add.reduceat(m, starts, axis=0)
            counts = np.diff(np.append(starts, len(batch.pattern)))
            eye = np.eye(idx.shape[1])
            g = np.swapaxes(inv, 1, 2) @ (counts[:, None, None] * eye - summed) @ inv
            np.add.at(grad_v, (idx[:, :, None], idx[:, None, :]), g)
        return float(value), self.structure.cov_gradient(rho, grad_v)
