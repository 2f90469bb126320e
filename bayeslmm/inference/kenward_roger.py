"""Kenward-Roger: the small-sample adjusted covariance of the fixed effects and the
denominator df of t and F tests (Kenward & Roger 1997), as pbkrtest 0.5 computes them
(``vcovAdj``, ``Lb_ddf``, ``.KR_adjust``) and lmerTest reports them.

The marginal covariance Sigma = sum_r gamma_r G_r is linear in the variance parameters gamma
(every entry of every G_k, then sigma^2): G_r = Z_a Z_b' + Z_b Z_a' for entry (a, b) of
block k, G_r = I for sigma^2.  With Phi = (X' Sigma^-1 X)^-1,
P_r = -X' Sigma^-1 G_r Sigma^-1 X, Q_rs = X' Sigma^-1 G_r Sigma^-1 G_s Sigma^-1 X and the
REML expected information I_rs = tr(Sigma^-1 G_r Sigma^-1 G_s) - 2 tr(Phi Q_rs)
+ tr(Phi P_r Phi P_s) (W = 2 I^-1):

    Phi_A = Phi + 2 Phi U Phi,   U = sum_rs W_rs (Q_rs - P_r Phi P_s).

The df of L beta (q rows) follow from A1 = sum_rs W_rs tr(Theta Phi P_r Phi) tr(Theta Phi P_s
Phi), A2 = sum_rs W_rs tr(Theta Phi P_r Phi Theta Phi P_s Phi), Theta = L'(L Phi L')^-1 L, as in
pbkrtest.  Sigma is dense (n x n): fits with more than ``MAX_ROWS`` rows are refused.
"""

from __future__ import annotations

import numpy as np

__all__ = ["KenwardRoger", "MAX_ROWS"]

MAX_ROWS = 6000


class KenwardRoger:
    """The adjusted covariance and what the df need, for one REML fit."""

    def __init__(self, fit):
        if fit.method != "REML":
            raise ValueError("Kenward-Roger's method needs a REML fit (method='reml')")
        if fit.residual_model is not None or not fit.spec.blocks:
            raise NotImplementedError("Kenward-Roger for residual structures or models "
                                      "without random effects is not built yet")
        spec = fit.spec
        n, p = spec.n, spec.p
        if n > MAX_ROWS:
            raise ValueError(f"Kenward-Roger builds the dense {n} x {n} marginal covariance; "
                             f"above {MAX_ROWS} rows use ddf='satterthwaite'")
        X = spec.X
        gs = []
        sigma_full = fit.sigma**2 * np.eye(n)
        for block, cov in zip(fit.blocks, fit.covariances(), strict=True):
            z = block.sparse_z().tocsc()
            cols = [z[:, a::block.q] for a in range(block.q)]   # Z_a: n x m_k per term
            for b in range(block.q):
                for a in range(b, block.q):
                    g = (cols[a] @ cols[b].T).toarray()
                    if a != b:
                        g = g + g.T
                    gs.append(g)
                    sigma_full += cov[a, b] * g if a != b else cov[a, a] * g
        gs.append(np.eye(n))
        chol = np.linalg.cholesky(sigma_full)
        inv = np.linalg.inv(chol)
        sigma_inv = inv.T @ inv
        tt = sigma_inv @ X
        hh = [g @ sigma_inv for g in gs]
        oo = [h @ X for h in hh]
        self.phi = np.linalg.inv(X.T @ tt)
        phi = self.phi
        self.P = [-(o.T @ tt) for o in oo]
        self.P = [0.5 * (m + m.T) for m in self.P]
        k = len(gs)
        Q = {}
        for r in range(k):
            left = oo[r].T @ sigma_inv
            for s in range(r, k):
                Q[r, s] = left @ oo[s]
        info = np.empty((k, k))
        for r in range(k):
            for s in range(r, k):
                ktrace = float(np.sum(hh[r].T * hh[s]))
                value = (ktrace - 2.0 * float(np.sum(phi * Q[r, s]))
                         + float(np.sum((phi @ self.P[r]) * (self.P[s] @ phi))))
                info[r, s] = info[s, r] = value
        eig = np.abs(np.linalg.eigvalsh(info))
        self.W = 2.0 * (np.linalg.inv(info) if eig.min() > 1e-10 else np.linalg.pinv(info))
        u = np.zeros((p, p))
        for r in range(k):
            for s in range(r + 1, k):
                u += self.W[r, s] * (Q[r, s] - self.P[r] @ phi @ self.P[s])
        u = u + u.T
        for r in range(k):
            u += self.W[r, r] * (Q[r, r] - self.P[r] @ phi @ self.P[r])
        self.vcov_adjusted = phi + 2.0 * phi @ u @ phi
        self.beta = fit.beta

    def _a1_a2(self, L: np.ndarray) -> tuple[float, float]:
        phi = self.phi
        theta = L.T @ np.linalg.solve(L @ phi @ L.T, L)
        theta_phi = theta @ phi
        a1 = a2 = 0.0
        k = len(self.P)
        us = [theta_phi @ P @ phi for P in self.P]
        for i in range(k):
            for j in range(i, k):
                e = 1.0 if i == j else 2.0
                a1 += e * self.W[i, j] * np.trace(us[i]) * np.trace(us[j])
                a2 += e * self.W[i, j] * float(np.sum(us[i] * us[j].T))
        return a1, a2

    def test(self, L: np.ndarray, rhs: np.ndarray | None = None) -> dict:
        """pbkrtest's ``.KR_adjust``: scaled F, numerator and denominator df of L beta = rhs."""
        L = np.atleast_2d(np.asarray(L, dtype=float))
        q = int(np.linalg.matrix_rank(L))
        a1, a2 = self._a1_a2(L)
        b = (a1 + 6.0 * a2) / (2.0 * q)
        g = ((q + 1) * a1 - (q + 4) * a2) / ((q + 2) * a2)
        denom = 3.0 * q + 2.0 * (1.0 - g)
        c1, c2, c3 = g / denom, (q - g) / denom, (q + 2 - g) / denom
        v0 = 1.0 + c1 * b
        v0 = 0.0 if abs(v0) < 1e-10 else v0
        v1, v2 = 1.0 - c2 * b, 1.0 - c3 * b
        rho = (1.0 / q) * ((1.0 - a2 / q) / v1) ** 2 * v0 / v2
        ddf = 4.0 + (q + 2.0) / (q * rho - 1.0)
        scaling = 1.0 if abs(ddf - 2.0) < 1e-2 else ddf * (1.0 - a2 / q) / (ddf - 2.0)
        diff = L @ self.beta - (0.0 if rhs is None else np.asarray(rhs, dtype=float))
        wald = float(diff @ np.linalg.solve(L @ self.vcov_adjusted @ L.T, diff))
        return {"num_df": q, "den_df": float(ddf), "F": float(scaling * wald / q)}

    def ddf(self, contrast: np.ndarray) -> float:
        """pbkrtest's ``Lb_ddf`` for a one-row contrast."""
        return self.test(np.atleast_2d(contrast))["den_df"]
