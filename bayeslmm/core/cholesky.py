"""The blocked Cholesky factor behind lme4's profiled deviance (Bates et al. 2015, sec. 3).

With relative covariance factor Lambda(theta) (block diagonal, ``I_m (x) lambda_k`` for
block k, ``lambda_k`` lower triangular q_k x q_k), lme4 factors

    [Lambda'Z'Z Lambda + I   Lambda'Z'X   Lambda'Z'y]       [L_ZZ            ]
    [X'Z Lambda              X'X          X'y       ]  =  L L',  L = [L_XZ  R_X'      ]
    [y'Z Lambda              y'X          y'y       ]       [l_yZ  l_yX   r  ]

and the profiled criteria are

    ML:    log|L_ZZ|^2 + n (1 + log(2 pi r^2 / n))
    REML:  log|L_ZZ|^2 + log|R_X|^2 + (n - p)(1 + log(2 pi r^2 / (n - p))).

As in MixedModels.jl, blocks are ordered by number of levels (most first).  The first
block's diagonal of ``Lambda'Z'Z Lambda + I`` is block diagonal (one q1 x q1 matrix per
level), so its Cholesky factor is too, and it is never formed as one matrix.  Everything
after it - the other random-effects blocks, X and y, together the "rest" rows R - is
reduced to one dense Schur complement

    S = Lt' (R'R - C W C') Lt + diag(I, 0),   C = R'Z_1 (sparse),
    W = blockdiag_j( lambda_1 (lambda_1' A_j lambda_1 + I)^-1 lambda_1' ),

(Lt = Lambda for the rest blocks, identity for X and y) whose dense Cholesky gives the
remaining rows of L.  For InstEval this is a 2,972-level diagonal first block and a
1,159 x 1,159 dense S.  Z is only ever held as sparse matrices.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg as sla

from ..spec import ModelSpec, RandomBlock
from .covariance import ThetaLayout, structure_for
from .statistics import cross_products

__all__ = ["BlockedSystem", "Factorization"]

LOG_2PI = float(np.log(2.0 * np.pi))


@dataclass
class Factorization:
    """The pieces of L(theta) that the criteria and the estimates need."""

    theta: np.ndarray
    lambdas: list[np.ndarray]
    chol_rest: np.ndarray    # (r, r): Cholesky factor of the Schur complement S (rows in
    #                          the system's held order: ``BlockedSystem.rest_perm``)
    logdet_z: float          # log|L_ZZ|^2
    logdet_x: float          # log|R_X|^2
    pwrss: float             # r^2, penalized weighted residual sum of squares


class BlockedSystem:
    """Cross products of [Z X y] arranged for the blocked factorization.

    Parameters
    ----------
    spec : ModelSpec
        Must have at least one random-effects block.
    """

    DENSE_FLOPS = 2e7  # below this many flops, C W C' is formed densely

    def __init__(self, spec: ModelSpec):
        if not spec.blocks:
            raise ValueError("the model has no random-effects terms; use a linear model")
        self.spec = spec
        # stable sort by number of levels, most first (lme4 and MixedModels.jl order)
        self.order = spec.block_order()
        self.blocks: list[RandomBlock] = [spec.blocks[k] for k in self.order]
        self.layout = ThetaLayout([structure_for(b) for b in self.blocks])
        self.n, self.p = spec.n, spec.p
        first = self.blocks[0]
        self.m1, self.q1 = first.n_levels, first.q
        rest = self.blocks[1:]
        self.rz = sum(b.n_effects for b in rest)
        self.r = self.rz + self.p + 1

        # A_j (per level of the first block), C = R'Z_1 and R'R, R = [Z_2 .. Z_K, X, y]
        stats = cross_products(spec, self.order)
        self.first_cross = stats.first
        self.cross_c = stats.cross
        self.cross_rest = stats.rest
        if self.q1 == 2:
            self._a00 = self.first_cross[:, 0, 0].copy()
            self._a01 = self.first_cross[:, 0, 1].copy()
            self._a11 = self.first_cross[:, 1, 1].copy()
        self.use_dense = self.r * self.r * self.m1 * self.q1 < self.DENSE_FLOPS
        if self.use_dense:
            self.cross_c_dense = self.cross_c.toarray().reshape(self.r, self.m1, self.q1)
            self._cross_c_2d = self.cross_c_dense.reshape(self.r, -1)
            # level-major copy for one batched matmul per evaluation: (m1, r, q1)
            self._cross_c_levels = np.ascontiguousarray(self.cross_c_dense.transpose(1, 0, 2))
        self._rest_q = [b.q for b in rest]
        self._rest_m = [b.n_levels for b in rest]
        self.rest_all_scalar = all(q == 1 for q in self._rest_q)
        self._rest_diag = np.arange(self.rz)
        # sparse path with 1 x 1 rest blocks: the rest levels are held most-connected first
        # (each block's levels sorted by their number of nonzeros in C), so the scattered
        # update's writes crowd into S's top-left corner and hit the cache (MovieLens-1M
        # shape: 2x faster); ``rest_perm[i]`` is the engine-order row held at row i
        self.rest_perm: np.ndarray | None = None
        if not self.use_dense:
            from .schur_kernel import SparseSchurParts

            if self.rest_all_scalar and self.rz:
                self.rest_perm = self._connectivity_order()
                self.cross_c = self.cross_c[self.rest_perm]
                self.cross_rest = self.cross_rest[np.ix_(self.rest_perm, self.rest_perm)]
            # numba (0.4 s to import) only for problems big enough to need it
            self.sparse_parts = SparseSchurParts(self.cross_c, self.m1, self.q1)

    def _connectivity_order(self) -> np.ndarray:
        nnz = np.diff(self.cross_c.tocsr().indptr)
        order, at = [], 0
        for m in self._rest_m:
            order.append(at + np.argsort(-nnz[at: at + m], kind="stable"))
            at += m
        return np.concatenate(order + [np.arange(self.rz, self.r)]).astype(np.int64)

    def with_response(self, y: np.ndarray) -> BlockedSystem:
        """A copy whose statistics are those of response ``y`` (the same Z and X, on this
        system's scale): only C's and R'R's last row change.  The parametric bootstrap
        refits thousands of responses this way without rebuilding anything."""
        import copy

        y = np.asarray(y, dtype=float)
        out = copy.copy(self)
        parts = []
        for block in self.blocks:  # Z_k' y, level-major
            zy = np.zeros((block.n_levels, block.q))
            for a in range(block.q):
                zy[:, a] = np.bincount(block.codes, weights=block.columns[:, a] * y,
                                       minlength=block.n_levels)
            parts.append(zy.reshape(-1))
        xy = self.spec.X.T @ y if self.p else np.zeros(0)
        last = np.concatenate(parts[1:] + [xy, [y @ y]])
        if self.rest_perm is not None:
            last = last[self.rest_perm]
        rest = self.cross_rest.copy()
        rest[-1, :] = last
        rest[:, -1] = last
        out.cross_rest = rest
        cross = self.cross_c.tolil(copy=True)
        cross[self.r - 1, :] = parts[0]
        out.cross_c = cross.tocsr()
        if self.use_dense:
            dense = self.cross_c_dense.copy()
            dense[-1] = parts[0].reshape(self.m1, self.q1)
            out.cross_c_dense = dense
            out._cross_c_2d = dense.reshape(self.r, -1)
            out._cross_c_levels = np.ascontiguousarray(dense.transpose(1, 0, 2))
        else:
            from .schur_kernel import SparseSchurParts

            out.sparse_parts = SparseSchurParts(out.cross_c, self.m1, self.q1)
        return out

    # -- one evaluation ------------------------------------------------------------------
    def first_precision(self, lam1: np.ndarray) -> np.ndarray:
        """M_j = lam1' A_j lam1 + I for every level j of the first block, (m1, q1, q1)."""
        m = lam1.T @ self.first_cross @ lam1
        m += np.eye(self.q1)
        return m

    def _weights_first(self, lam1: np.ndarray) -> tuple[np.ndarray, float]:
        """W_j = lam1 M_j^-1 lam1' and log prod_j |M_j| (closed forms for q1 <= 2)."""
        if self.q1 == 1:
            lam2 = lam1[0, 0] ** 2
            m = lam2 * self.first_cross[:, 0, 0] + 1.0
            return (lam2 / m)[:, None, None], float(np.log(m).sum())
        if self.q1 == 2:  # lam1 = [[l0, 0], [l1, l2]], written out (2x faster than matmuls)
            l0, l1, l2 = lam1[0, 0], lam1[1, 0], lam1[1, 1]
            a00, a01, a11 = self._a00, self._a01, self._a11
            t = a01 * l0 + a11 * l1
            m00 = a00 * l0 * l0 + 2.0 * a01 * l0 * l1 + a11 * l1 * l1 + 1.0
            m01 = l2 * t
            m11 = a11 * l2 * l2 + 1.0
            det = m00 * m11 - m01 * m01
            i00, i01, i11 = m11 / det, -m01 / det, m00 / det
            weights = np.empty((self.m1, 2, 2))
            weights[:, 0, 0] = l0 * l0 * i00
            weights[:, 0, 1] = weights[:, 1, 0] = l0 * (l1 * i00 + l2 * i01)
            weights[:, 1, 1] = l1 * l1 * i00 + 2.0 * l1 * l2 * i01 + l2 * l2 * i11
            return weights, float(np.log(det).sum())
        m = self.first_precision(lam1)
        chol = np.linalg.cholesky(m)
        logdet = 2.0 * np.log(np.diagonal(chol, axis1=1, axis2=2)).sum()
        # W_j = lam1 M_j^-1 lam1' = (L_j^-1 lam1')' (L_j^-1 lam1')
        half = np.linalg.solve(chol, np.broadcast_to(lam1.T, m.shape))
        return np.swapaxes(half, 1, 2) @ half, float(logdet)

    def _schur(self, weights: np.ndarray) -> np.ndarray:
        """R'R - C W C' (on the sparse path with only 1 x 1 rest blocks, only its lower
        triangle is filled: the factorization reads no more)."""
        if self.use_dense:
            if self.q1 == 1:
                cw = self.cross_c_dense[:, :, 0] * weights[None, :, 0, 0]
            else:  # cw[i, j] = C[i, j] @ W_j, as (m1, r, q1) @ (m1, q1, q1)
                cw = np.matmul(self._cross_c_levels, weights).transpose(1, 0, 2)
            return self.cross_rest - cw.reshape(self.r, -1) @ self._cross_c_2d.T
        lower = self.sparse_parts.subtract(self.cross_rest.copy(), weights)
        if self.rest_all_scalar:  # the diagonal scaling below keeps the lower triangle
            return lower
        # Lt' S Lt mixes rows and columns: it needs both triangles (issue 10: a q >= 2 block
        # after the first raised LinAlgError, or gave a wrong finite criterion, here)
        lower = np.tril(lower)
        lower += np.tril(lower, -1).T
        return lower

    def _rest_scale(self, lambdas: list[np.ndarray]) -> np.ndarray:
        """The diagonal of Lt where every rest block is 1 x 1."""
        return np.concatenate(
            [np.full(m, lam[0, 0]) for m, lam in zip(self._rest_m, lambdas, strict=True)]
            + [np.ones(self.p + 1)])

    def _scale_rest(self, dense: np.ndarray, lambdas: list[np.ndarray]) -> np.ndarray:
        """Lt' D Lt for symmetric D, with Lt = blockdiag(I_m (x) lambda_k, I_{p+1})."""
        if not self._rest_m:
            return dense
        if self.rest_all_scalar:
            scale = self._rest_scale(lambdas)
            dense *= scale[:, None]
            dense *= scale[None, :]
            return dense
        # Lt' D Lt block by block: each block's columns (level-major, q_k per level) times
        # lambda_k, then the same for the rows (D is symmetric)
        out = dense
        for _ in range(2):
            out = np.array(out.T, order="C")
            at = 0
            for m, lam in zip(self._rest_m, lambdas, strict=True):
                q = lam.shape[0]
                sl = slice(at, at + m * q)
                if q == 1:
                    out[:, sl] *= lam[0, 0]
                else:
                    out[:, sl] = (out[:, sl].reshape(self.r, m, q) @ lam).reshape(self.r,
                                                                                   m * q)
                at += m * q
        return out

    def factorize(self, theta: np.ndarray) -> Factorization:
        """Blocked Cholesky factor of the augmented system at ``theta``."""
        theta = np.asarray(theta, dtype=float)
        lambdas = self.layout.lambdas(theta)
        weights, logdet1 = self._weights_first(lambdas[0])
        if self.use_dense or not self.rest_all_scalar:
            schur = self._scale_rest(self._schur(weights), lambdas[1:])
            schur[self._rest_diag, self._rest_diag] += 1.0
        else:  # D (R'R - C W C') D + diag(I, 0) = D R'R D + diag(I, 0) - (DC) W (DC)'
            from .schur_kernel import scaled_lower_copy

            scale = self._rest_scale(lambdas[1:])
            schur = scaled_lower_copy(self.cross_rest, scale, self.rz,
                                      np.empty_like(self.cross_rest))
            schur = self.sparse_parts.subtract(schur, weights, scale)
        # numpy's Cholesky has less overhead on tiny matrices, scipy's is faster on big ones
        chol_rest = (np.linalg.cholesky(schur) if self.r < 64 else
                     sla.cholesky(schur, lower=True, check_finite=False, overwrite_a=True))
        diag = np.diagonal(chol_rest)
        logdet_z = logdet1 + 2.0 * np.log(diag[: self.rz]).sum()
        logdet_x = 2.0 * np.log(diag[self.rz: self.rz + self.p]).sum()
        pwrss = float(diag[-1] ** 2)
        if not np.isfinite(logdet_z):
            raise np.linalg.LinAlgError("non-finite log determinant")
        return Factorization(theta, lambdas, chol_rest, float(logdet_z), float(logdet_x), pwrss)

    def criterion(self, fac: Factorization, reml: bool) -> float:
        """lme4's REML criterion or ML deviance (-2 log L, 2 pi constant included)."""
        if reml:
            dof = self.n - self.p
            return fac.logdet_z + fac.logdet_x + dof * (1.0 + LOG_2PI + np.log(fac.pwrss / dof))
        return fac.logdet_z + self.n * (1.0 + LOG_2PI + np.log(fac.pwrss / self.n))

    def objective(self, theta: np.ndarray, reml: bool) -> float:
        try:
            return self.criterion(self.factorize(theta), reml)
        except (np.linalg.LinAlgError, ValueError):
            return np.inf

    # -- estimates at theta -------------------------------------------------------------
    def solve(self, fac: Factorization) -> tuple[np.ndarray, list[np.ndarray]]:
        """Fixed effects beta and spherical modes u (list of (m_k, q_k), engine order)."""
        chol = fac.chol_rest
        x_rest = sla.solve_triangular(chol[:-1, :-1], chol[-1, :-1], trans="T", lower=True,
                                      check_finite=False)
        perm = self.rest_perm
        if perm is not None:  # back to engine order
            held = x_rest
            x_rest = np.empty_like(held)
            x_rest[perm[:-1]] = held
        beta = x_rest[self.rz:]
        modes: list[np.ndarray] = [np.empty(0)]
        start = 0
        b_rest = []
        for block, lam in zip(self.blocks[1:], fac.lambdas[1:], strict=True):
            u = x_rest[start: start + block.n_effects].reshape(block.n_levels, block.q)
            modes.append(u)
            b_rest.append((u @ lam.T).ravel())
            start += block.n_effects
        w = np.concatenate(b_rest + [beta, [-1.0]]) * -1.0
        if perm is not None:
            w = w[perm]
        v = np.asarray(self.cross_c.T @ w).reshape(self.m1, self.q1)  # Z1'(y - X beta - Zr br)
        lam1 = fac.lambdas[0]
        rhs = v @ lam1  # rows: lam1' v_j
        modes[0] = np.linalg.solve(self.first_precision(lam1), rhs[:, :, None])[:, :, 0]
        return beta, modes

    def fixed_precision_factor(self, fac: Factorization) -> np.ndarray:
        """R_X' (lower triangular p x p): vcov(beta) = sigma^2 (R_X' R_X)^-1."""
        return fac.chol_rest[self.rz: self.rz + self.p, self.rz: self.rz + self.p]
