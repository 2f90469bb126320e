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
import pytensor.tensor as pt
from pytensor.graph.basic import Apply
from pytensor.graph.op import Op

from ..spec import ModelSpec
from .marginal import MarginalStructure

__all__ = ["PartialStructure", "PartialLogp"]


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
        resid = y_adj - single._xc @ beta_c - (b1[first.codes] * first.columns).sum(axis=1)
        return value, g_chol, g_sigma, -resid / sigma**2


class PartialLogp(Op):
    """PyTensor Op: (chol_first, sigma, y_adj) -> (logp, d/dchol, d/dsigma, d/dy_adj)."""

    __props__ = ("key",)

    def __init__(self, structure: PartialStructure, mu0: np.ndarray, inv_scale: np.ndarray):
        self.structure = structure
        self.mu0 = np.asarray(mu0, dtype=float)
        self.inv_scale = np.asarray(inv_scale, dtype=float)
        self.key = id(structure), self.mu0.tobytes(), self.inv_scale.tobytes()

    def make_node(self, chol_first, sigma, y_adj):
        inputs = [pt.as_tensor_variable(chol_first, dtype="float64"),
                  pt.as_tensor_variable(sigma, dtype="float64"),
                  pt.as_tensor_variable(y_adj, dtype="float64")]
        return Apply(self, inputs, [pt.dscalar(), pt.dmatrix(), pt.dscalar(), pt.dvector()])

    def perform(self, node, inputs, output_storage):
        chol_first, sigma, y_adj = inputs
        try:
            value, g_chol, g_sigma, g_y = self.structure.logp_and_grad(
                chol_first, float(sigma), y_adj, self.mu0, self.inv_scale)
        except np.linalg.LinAlgError:
            value, g_chol, g_sigma, g_y = -np.inf, np.zeros_like(chol_first), 0.0, \
                np.zeros_like(y_adj)
        for k, out in enumerate((value, g_chol, g_sigma, g_y)):
            output_storage[k][0] = np.asarray(out, dtype="float64")

    def grad(self, inputs, output_grads):
        _, g_chol, g_sigma, g_y = self(*inputs)
        g = output_grads[0]
        return [g * g_chol, g * g_sigma, g * g_y]
