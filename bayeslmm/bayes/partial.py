"""The partial sampler: integrate out beta and the largest factor's effects only.

For crossed designs whose other factors are too large for the marginal sampler's dense
r x r system (InstEval: 1,128 lecturers after 2,972 students), NUTS keeps the other blocks'
effects r_k and the likelihood integrates out beta and b_1 given them:

    log p(y | r_2.., G_1, sigma) = log N(y_adj | X mu0, sigma^2 I + Z_1 G_1 Z_1' + X S0 X'),
    y_adj = y - sum_k Z_k r_k.

That is the single-block case of ``MarginalStructure`` (r = p + 1) with the statistics
involving y recomputed from y_adj at every step (O(n)), and
d/d y_adj = -(y_adj - X beta_hat - Z_1 b_hat_1) / sigma^2 (the residual at the conditional
modes), so each gradient is O(n) however many levels the largest factor has.  Afterwards
beta and b_1 are drawn from their exact conditional for every posterior draw.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ..spec import ModelSpec
from .marginal import MarginalStructure

__all__ = ["PartialStructure"]


class PartialStructure:
    """The largest block (integrated out) and the blocks NUTS keeps."""

    def __init__(self, spec: ModelSpec):
        order = spec.block_order()
        self.first = spec.blocks[order[0]]
        self.kept = [spec.blocks[k] for k in order[1:]]
        self.single = MarginalStructure(dataclasses.replace(spec, blocks=[self.first]))
        same_factor = any(b.factor == self.first.factor for b in self.kept)
        self.eligible = bool(self.kept) and self.single.eligible and not same_factor

    def logp_and_grad(self, chol_first, sigma, y_adj, mu0, inv_scale):
        """Value and gradients with respect to (chol_first, sigma, y_adj)."""
        single = self.single
        cross, cross_rest = single.statistics_of(y_adj[None])
        value, g_chol, _, g_sigma, beta_c, b1 = single.logp_and_grad(
            chol_first, np.zeros(0), sigma, mu0, inv_scale, cross[0], cross_rest[0], modes=True)
        first = self.first
        resid = y_adj - single.xc @ beta_c - (b1[first.codes] * first.columns).sum(axis=1)
        return value, g_chol, g_sigma, -resid / sigma**2
