"""The partial sampler: integrate out beta and the largest factor's effects only.

For crossed designs whose other factors are too large for the marginal sampler's dense
r x r system (InstEval: 1,128 lecturers after 2,972 students), NUTS keeps the other blocks'
effects r_k and the likelihood integrates out beta and b_1 given them:

    log p(y | r_2.., G_1, sigma) = log N(y_adj | X mu0, sigma^2 I + Z_1 G_1 Z_1' + X S0 X'),
    y_adj = y - sum_k Z_k r_k.

That is the single-block case of ``MarginalStructure`` (r = p + 1) with the statistics
involving y recomputed from y_adj at every step, and
d/d y_adj = -(y_adj - X beta_hat - Z_1 b_hat_1) / sigma^2 (the residual at the conditional
modes).  Neither needs a pass over the rows: with Z_K = [Z_2 .. Z_K] and r the kept
effects stacked, cross products of the blocks' sparse Z (``KeptStatistics``) give

    Z_1'y_adj = Z_1'y - (Z_1'Z_K) r,    X'y_adj = X'y - (X'Z_K) r,
    y_adj'y_adj = y'y - 2 r'Z_K'y + r'(Z_K'Z_K) r,
    Z_K'e = Z_K'y - (Z_K'Z_K) r - (Z_K'X) beta_hat - (Z_K'Z_1) b_hat_1,

so a gradient costs two sparse products with Z_1'Z_K (``KeptStatistics``): its non-zeros
are the (first level, kept level) pairs that occur, at most n and fewer where pairs repeat.
Afterwards beta and b_1 are drawn from their exact conditional for every posterior draw.
"""

from __future__ import annotations

import dataclasses
from functools import cached_property

import numpy as np
import scipy.sparse as sp

from ..spec import ModelSpec
from .marginal import MarginalStructure

__all__ = ["PartialStructure", "KeptStatistics", "csr_arrays"]


@dataclasses.dataclass(frozen=True)
class KeptStatistics:
    """The cross products with the kept blocks' design Z_K (n x M, M = sum_k m_k q_k, each
    block's columns level-major) that y_adj = y - Z_K r enters through (module docstring);
    r stacks the kept blocks' effects (m_k, q_k) flattened row-major."""

    first_kept: sp.csr_matrix   # Z_1' Z_K, (m1 q1, M), rows level-major as Z_1's columns
    kept_kept: sp.csr_matrix    # Z_K' Z_K, (M, M)
    x_kept: np.ndarray          # X_c' Z_K, (p, M), X centered as the single structure's
    kept_y: np.ndarray          # Z_K' y, (M,)

    @classmethod
    def of(cls, partial: PartialStructure) -> KeptStatistics:
        """By sparse products of the blocks' Z (O(non-zeros); the core's accumulator holds
        R'R dense, M x M, which the factors this sampler is for need not fit)."""
        spec, single = partial.spec, partial.single
        z_first = partial.first.sparse_z()
        z_kept = sp.hstack([b.sparse_z() for b in partial.kept], format="csc")
        first_kept = _csr(z_first.T @ z_kept)
        kept_kept = _csr(z_kept.T @ z_kept)
        x_kept = np.ascontiguousarray(np.asarray(z_kept.T @ single.xc).T)
        kept_y = np.ascontiguousarray(np.asarray(z_kept.T @ spec.y, dtype=float))
        return cls(first_kept, kept_kept, x_kept, kept_y)

    def adjusted(self, single: MarginalStructure, effects: np.ndarray):
        """``single``'s (cross, cross_rest) for y_adj = y - Z_K r, one per row of
        ``effects`` (D, M): (D, r, m1, q1) and (D, r, r), as ``statistics_of`` gives for
        the adjusted responses themselves."""
        effects = np.atleast_2d(effects)
        n_draws = effects.shape[0]
        cross = np.repeat(single.cross[None], n_draws, axis=0)
        cross[:, -1] -= np.asarray(self.first_kept @ effects.T).T.reshape(
            n_draws, single.m1, single.q1)
        cross_rest = np.repeat(single.cross_rest[None], n_draws, axis=0)
        xy = single.cross_rest[-1, :-1] - effects @ self.x_kept.T
        cross_rest[:, -1, :-1] = cross_rest[:, :-1, -1] = xy
        kk_r = np.asarray(self.kept_kept @ effects.T).T
        cross_rest[:, -1, -1] = (single.cross_rest[-1, -1] - 2.0 * effects @ self.kept_y
                                 + np.einsum("dm,dm->d", effects, kk_r))
        return cross, cross_rest


def csr_arrays(matrix: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(indptr int64, indices int32, data float64) of a CSR matrix, as the numba density
    reads them (int32 indices: fewer bytes on the product a partial gradient is bound by)."""
    return (np.ascontiguousarray(matrix.indptr, dtype=np.int64),
            np.ascontiguousarray(matrix.indices, dtype=np.int32),
            np.ascontiguousarray(matrix.data, dtype=float))


def _csr(matrix) -> sp.csr_matrix:
    matrix = sp.csr_matrix(matrix, dtype=float)
    matrix.sum_duplicates()
    matrix.sort_indices()
    return matrix


class PartialStructure:
    """The largest block (integrated out) and the blocks NUTS keeps."""

    def __init__(self, spec: ModelSpec):
        self.spec = spec
        order = spec.block_order()
        self.first = spec.blocks[order[0]]
        self.kept = [spec.blocks[k] for k in order[1:]]
        self.single = MarginalStructure(dataclasses.replace(spec, blocks=[self.first]))
        same_factor = any(b.factor == self.first.factor for b in self.kept)
        self.eligible = bool(self.kept) and self.single.eligible and not same_factor

    @cached_property
    def kept_statistics(self) -> KeptStatistics:
        """The cross products with the kept blocks' design."""
        return KeptStatistics.of(self)

    def logp_and_grad(self, chol_first, sigma, y_adj, mu0, inv_scale):
        """Value and gradients with respect to (chol_first, sigma, y_adj)."""
        single = self.single
        cross, cross_rest = single.statistics_of(y_adj[None])
        value, g_chol, _, g_sigma, beta_c, b1 = single.logp_and_grad(
            chol_first, np.zeros(0), sigma, mu0, inv_scale, cross[0], cross_rest[0], modes=True)
        first = self.first
        resid = y_adj - single.xc @ beta_c - (b1[first.codes] * first.columns).sum(axis=1)
        return value, g_chol, g_sigma, -resid / sigma**2
