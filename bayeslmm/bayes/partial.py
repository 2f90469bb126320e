"""The partial sampler: integrate out beta, the largest factor's effects and the small blocks.

For crossed designs whose other factors are too large for the marginal sampler's dense
r x r system (InstEval: 1,128 lecturers after 2,972 students), NUTS keeps the large
blocks' effects r_k (the *kept* blocks) and the likelihood integrates out beta, b_1 and the
effects of the *integrated* blocks (small factors a kept factor is nested in, as many as the
dense rest system of the marginal sampler takes; ``choose_integrated``) given them:

    log p(y | r_K, G, sigma) = log N(y_adj | X mu0, sigma^2 I + Z_1 G_1 Z_1' + Z_I G_I Z_I'
                                             + X S0 X'),     y_adj = y - Z_K r.

That is the marginal kernel's structure for the blocks [Z_1, Z_I] (``single``: rest rows
R = [Z_I, X_c, y]) with the statistics involving y recomputed from y_adj at every step, and
d/d y_adj = -e / sigma^2 with e = y_adj - X beta_hat - Z_I b_hat_I - Z_1 b_hat_1 the
residual at the conditional modes.  Neither needs a pass over the rows: with r the kept
effects stacked, cross products of the blocks' sparse Z (``KeptStatistics``) give

    Z_1'y_adj = Z_1'y - (Z_1'Z_K) r,    R'y_adj = R'y - (R'Z_K) r,
    y_adj'y_adj = y'y - 2 r'Z_K'y + r'(Z_K'Z_K) r,
    Z_K'e = Z_K'y - (Z_K'Z_K) r - (Z_K'R) [b_hat_I, beta_hat] - (Z_K'Z_1) b_hat_1,

so a gradient costs two sparse products with Z_1'Z_K (``KeptStatistics``): its non-zeros
are the (first level, kept level) pairs that occur, at most n and fewer where pairs repeat.
Afterwards beta, b_1 and b_I are drawn from their exact conditional for every posterior draw.

Why integrate a small block a kept factor is nested in: NUTS over both sets of effects meets
a ridge, each level's effect against the mean of the effects nested in it (MixedModels.jl's
InstEval model: 14 departments' intercepts against their lecturers' mean; R-hat 1.016, min
bulk ESS 326 when kept).  Integrated, its SDs enter the marginal likelihood only, as in the
marginal sampler.
"""

from __future__ import annotations

import dataclasses
from functools import cached_property

import numpy as np
import scipy.sparse as sp

from ..spec import ModelSpec, RandomBlock
from . import marginal
from .marginal import MarginalStructure

__all__ = ["PartialStructure", "KeptStatistics", "csr_arrays", "choose_integrated"]


@dataclasses.dataclass(frozen=True)
class KeptStatistics:
    """The cross products with the kept blocks' design Z_K (n x M, M = sum_k m_k q_k, each
    block's columns level-major) that y_adj = y - Z_K r enters through (module docstring);
    r stacks the kept blocks' effects (m_k, q_k) flattened row-major."""

    first_kept: sp.csr_matrix   # Z_1' Z_K, (m1 q1, M), rows level-major as Z_1's columns
    kept_kept: sp.csr_matrix    # Z_K' Z_K, (M, M)
    rest_kept: np.ndarray       # R' Z_K, (r - 1, M), R = [Z_I, X_c] as the single's rest rows
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
        parts = [np.asarray((b.sparse_z().T @ z_kept).todense()) for b in partial.integrated]
        parts.append(np.asarray(z_kept.T @ single.xc).T)
        rest_kept = np.ascontiguousarray(np.concatenate(parts, axis=0), dtype=float)
        kept_y = np.ascontiguousarray(np.asarray(z_kept.T @ spec.y, dtype=float))
        return cls(first_kept, kept_kept, rest_kept, kept_y)

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
        xy = single.cross_rest[-1, :-1] - effects @ self.rest_kept.T
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


def choose_integrated(first: RandomBlock, others: list[RandomBlock], p: int,
                      limit: int | None = None) -> set[str]:
    """The factors after the first whose effects the partial sampler integrates out with
    the first block's (module docstring): the small factors that another factor NUTS keeps
    is nested in (each of its levels within one level of the small one: lecturers in
    departments), smallest first, while the rest system stays within ``limit`` (default
    ``marginal.MAX_REST``) and its cross products with the first block within
    ``marginal.MAX_CROSS``; at least one factor stays kept.  A factor's blocks go together
    (its effects are one posterior variable).

    Only nesting: integrating costs a dense r x r Schur complement against the first block
    per gradient (O(r^2 m1 q1)), and where nothing is nested in a small factor NUTS mixes as
    well over its effects.  Measured on InstEval (same run): (1 | dept:service), 28 effects
    nothing is nested in, integrated 148 s, min bulk ESS 2922, kept 85 s, 3121; MixedModels.jl's
    (1 + service | dept), lecturers nested, integrated: 0 divergences, R-hat 1.007, min ESS 934;
    kept: 7-8 divergences, R-hat 1.016-1.02, min ESS 326-371 (docs/benchmarks.md)."""
    limit = marginal.MAX_REST if limit is None else limit
    blocks_of: dict[str, list[RandomBlock]] = {}
    for block in others:
        blocks_of.setdefault(block.factor, []).append(block)
    sizes = {f: sum(b.n_effects for b in bs) for f, bs in blocks_of.items()}
    chosen: set[str] = set()
    rest = p + 1
    for factor in sorted(sizes, key=lambda f: sizes[f]):
        kept = [f for f in sizes if f != factor and f not in chosen]
        size = rest + sizes[factor]
        if not kept or size > limit or size * first.n_effects > marginal.MAX_CROSS:
            break
        small = blocks_of[factor][0]
        if any(_nested(blocks_of[f][0], small) for f in kept):
            chosen.add(factor)
            rest = size
    return chosen


def _nested(inner: RandomBlock, outer: RandomBlock) -> bool:
    """Whether every level of ``inner``'s factor occurs with one level of ``outer``'s only
    (and ``inner`` has more levels)."""
    if inner.n_levels <= outer.n_levels:
        return False
    pairs = np.unique(inner.codes.astype(np.int64) * outer.n_levels + outer.codes)
    return len(pairs) == inner.n_levels


class PartialStructure:
    """The largest block and the small ones (integrated out) and the blocks NUTS keeps.

    Attributes
    ----------
    first : RandomBlock
        The block with the most levels (integrated out).
    integrated : list of RandomBlock
        The other integrated blocks, in the order of ``single``'s rest rows.
    kept : list of RandomBlock
        The blocks whose effects NUTS samples.
    single : MarginalStructure
        The marginal structure of [first, *integrated] (statistics of y; the sampler adjusts
        their y rows for the kept effects).
    """

    def __init__(self, spec: ModelSpec):
        self.spec = spec
        order = spec.block_order()
        self.first = spec.blocks[order[0]]
        others = [spec.blocks[k] for k in order[1:]]
        integrate = choose_integrated(self.first, others, spec.p)
        self.kept = [b for b in others if b.factor not in integrate]
        inner = [self.first] + [b for b in others if b.factor in integrate]
        self.single = MarginalStructure(dataclasses.replace(spec, blocks=inner))
        self.integrated = self.single.blocks[1:]
        same_factor = any(b.factor == self.first.factor for b in self.kept)
        self.eligible = bool(self.kept) and self.single.eligible and not same_factor

    @cached_property
    def kept_statistics(self) -> KeptStatistics:
        """The cross products with the kept blocks' design."""
        return KeptStatistics.of(self)

    def logp_and_grad(self, chol_first, sigma, y_adj, mu0, inv_scale, chol_integrated=()):
        """Value and gradients with respect to (chol_first, sigma, y_adj, the integrated
        blocks' Cholesky factors ``chol_integrated`` (a list))."""
        single = self.single
        cross, cross_rest = (a[0] for a in single.statistics_of(y_adj[None]))
        rest = [np.atleast_2d(np.asarray(f, dtype=float)) for f in chol_integrated]
        value, g_chol, g_rest, g_sigma, beta_c, b1, b_rest = single.logp_and_grad(
            chol_first, rest, sigma, mu0, inv_scale, cross, cross_rest, modes=True)
        first = self.first
        resid = y_adj - single.xc @ beta_c - (b1[first.codes] * first.columns).sum(axis=1)
        at = 0
        for block in self.integrated:
            effects = b_rest[at:at + block.n_effects].reshape(block.n_levels, block.q)
            resid -= block.z_times(effects)
            at += block.n_effects
        return value, g_chol, g_sigma, -resid / sigma**2, g_rest
