"""PyTensor Ops for the structured residual likelihood: one call per NUTS step gives the value
and every gradient (the numba kernel ``residual/loglik_kernel.py`` for occasion structures,
numpy's ``residual/loglik.py`` for car1), as ``marginal_op.py`` does for the marginal
density.  A pure PyTensor graph of batched Cholesky factors ran ~100x slower (its
Blockwise nodes fall back to Python without a linked BLAS)."""

from __future__ import annotations

import numpy as np
import pytensor.tensor as pt
from pytensor.graph.basic import Apply

from ..residual.loglik import car1_logp
from ..residual.loglik_kernel import KernelLayout, occasion_logp_kernel
from .value_grad_op import ValueAndGradientsOp

__all__ = ["OccasionLogp", "Car1Logp", "ResidualMarginalLogp"]


class OccasionLogp(ValueAndGradientsOp):
    """log p(resid | Sigma) for Sigma (T x T) over the occasions."""

    __props__ = ("key",)

    def __init__(self, residual):
        self.residual = residual
        self.key = id(residual)
        layout = KernelLayout.of(residual)
        self._layout = (layout.rows, layout.group_start, layout.group_pattern,
                        layout.pattern_pos, layout.pattern_start, layout.pattern_count,
                        layout.max_size)

    def make_node(self, resid, sigma_full):
        resid = pt.as_tensor_variable(resid, dtype="float64")
        sigma_full = pt.as_tensor_variable(sigma_full, dtype="float64")
        return Apply(self, [resid, sigma_full], [pt.dscalar(), pt.dvector(), pt.dmatrix()])

    def perform(self, node, inputs, output_storage):
        resid, sigma_full = inputs
        value, g_e, g_s = occasion_logp_kernel(np.ascontiguousarray(resid, dtype=float),
                                               np.ascontiguousarray(sigma_full, dtype=float),
                                               *self._layout)
        self.store(output_storage, (value, g_e, g_s))


class Car1Logp(ValueAndGradientsOp):
    """log p(resid | sigma, phi) for the continuous-time AR(1) structure."""

    __props__ = ("key",)

    def __init__(self, residual):
        self.residual = residual
        self.key = id(residual)

    def make_node(self, resid, sigma, phi):
        inputs = [pt.as_tensor_variable(v, dtype="float64") for v in (resid, sigma, phi)]
        return Apply(self, inputs, [pt.dscalar(), pt.dvector(), pt.dscalar(), pt.dscalar()])

    def perform(self, node, inputs, output_storage):
        resid, sigma, phi = inputs
        try:
            value, g_e, g_s, g_p = car1_logp(self.residual, resid, float(sigma), float(phi))
        except np.linalg.LinAlgError:
            value, g_e, g_s, g_p = -np.inf, np.zeros_like(resid), 0.0, 0.0
        self.store(output_storage, (value, g_e, g_s, g_p))


class ResidualMarginalLogp(ValueAndGradientsOp):
    """log p(y | Sigma, G) with beta and the residual groups' random effects integrated out
    (``bayes/residual_marginal.py``); G is (q, q), (0, 0) without random effects."""

    __props__ = ("key",)

    def __init__(self, marginal):
        self.marginal = marginal
        self.key = id(marginal)

    def make_node(self, sigma_full, g):
        inputs = [pt.as_tensor_variable(v, dtype="float64") for v in (sigma_full, g)]
        return Apply(self, inputs, [pt.dscalar(), pt.dmatrix(), pt.dmatrix()])

    def perform(self, node, inputs, output_storage):
        self.store(output_storage, self.marginal.logp(*inputs))
