"""PyTensor Op for the marginal log density: one numpy call gives value and gradient.

The same density as ``MarginalStructure.logp`` (a pure PyTensor graph, kept as the reference
the tests differentiate automatically), but evaluated by ``MarginalStructure.logp_and_grad``:
about 300 graph nodes, many of them Python-only without a linked BLAS, become one node.
The Op has four outputs (value and the three gradients); ``grad`` reuses the gradient outputs
of the same apply node, which PyTensor merges with the forward one, so each NUTS step runs
the numpy code once.
"""

from __future__ import annotations

import numpy as np
import pytensor.tensor as pt
from pytensor.graph.basic import Apply

from .value_grad_op import ValueAndGradientsOp

__all__ = ["MarginalLogp"]


class MarginalLogp(ValueAndGradientsOp):
    """log p(y | L_first, sd_rest, sigma) with b and beta integrated out."""

    __props__ = ("key",)

    def __init__(self, structure, mu0: np.ndarray, inv_scale: np.ndarray):
        self.structure = structure
        self.mu0 = np.asarray(mu0, dtype=float)
        self.inv_scale = np.asarray(inv_scale, dtype=float)
        self.key = id(structure), self.mu0.tobytes(), self.inv_scale.tobytes()

    def make_node(self, chol_first, sd_rest, sigma):
        chol_first = pt.as_tensor_variable(chol_first, dtype="float64")
        sd_rest = pt.as_tensor_variable(sd_rest, dtype="float64")
        sigma = pt.as_tensor_variable(sigma, dtype="float64")
        outputs = [pt.dscalar(), pt.dmatrix(), pt.dvector(), pt.dscalar()]
        return Apply(self, [chol_first, sd_rest, sigma], outputs)

    def perform(self, node, inputs, output_storage):
        chol_first, sd_rest, sigma = inputs
        try:
            value, g_chol, g_sd, g_sigma = self.structure.logp_and_grad(
                chol_first, sd_rest, float(sigma), self.mu0, self.inv_scale)
        except np.linalg.LinAlgError:
            value, g_chol = -np.inf, np.zeros_like(chol_first)
            g_sd, g_sigma = np.zeros_like(sd_rest), 0.0
        self.store(output_storage, (value, g_chol, g_sd, g_sigma))
