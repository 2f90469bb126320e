"""PyTensor Op for the partial sampler's log density (``partial.PartialStructure``).

Kept apart from ``partial.py`` so that importing the sampler choice does not import PyTensor
(about a second); only building the PyMC partial model does.
"""

from __future__ import annotations

import numpy as np
import pytensor.tensor as pt
from pytensor.graph.basic import Apply

from .partial import PartialStructure
from .value_grad_op import ValueAndGradientsOp

__all__ = ["PartialLogp"]


class PartialLogp(ValueAndGradientsOp):
    """PyTensor Op: (chol_first, sigma, y_adj, *chol_integrated) -> (logp, d/dchol,
    d/dsigma, d/dy_adj, *d/dchol_integrated), the integrated blocks' Cholesky factors in
    ``structure.integrated`` order."""

    __props__ = ("key",)

    def __init__(self, structure: PartialStructure, mu0: np.ndarray, inv_scale: np.ndarray):
        self.structure = structure
        self.mu0 = np.asarray(mu0, dtype=float)
        self.inv_scale = np.asarray(inv_scale, dtype=float)
        self.key = id(structure), self.mu0.tobytes(), self.inv_scale.tobytes()

    def make_node(self, chol_first, sigma, y_adj, *chol_integrated):
        inputs = [pt.as_tensor_variable(chol_first, dtype="float64"),
                  pt.as_tensor_variable(sigma, dtype="float64"),
                  pt.as_tensor_variable(y_adj, dtype="float64"),
                  *[pt.as_tensor_variable(c, dtype="float64") for c in chol_integrated]]
        outputs = [pt.dscalar(), pt.dmatrix(), pt.dscalar(), pt.dvector(),
                   *[pt.dmatrix() for _ in chol_integrated]]
        return Apply(self, inputs, outputs)

    def perform(self, node, inputs, output_storage):
        chol_first, sigma, y_adj, *chol_integrated = inputs
        try:
            value, g_chol, g_sigma, g_y, g_rest = self.structure.logp_and_grad(
                chol_first, float(sigma), y_adj, self.mu0, self.inv_scale, chol_integrated)
        except np.linalg.LinAlgError:
            value, g_chol, g_sigma, g_y = -np.inf, np.zeros_like(chol_first), 0.0, \
                np.zeros_like(y_adj)
            g_rest = [np.zeros_like(c) for c in chol_integrated]
        self.store(output_storage, (value, g_chol, g_sigma, g_y, *g_rest))
