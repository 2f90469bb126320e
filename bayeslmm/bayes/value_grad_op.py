"""The shape every likelihood Op of the Bayesian engine shares: one ``perform`` computes the
log density and its gradient in each input (outputs ``[value, d/dinput_1, ...]``), and
``grad`` reuses those outputs of the same apply node (PyTensor merges it with the forward
one), so each NUTS step runs the kernel once."""

from __future__ import annotations

import numpy as np
from pytensor.graph.op import Op

__all__ = ["ValueAndGradientsOp"]


class ValueAndGradientsOp(Op):
    """Base of an Op whose outputs are the value and then one gradient per input."""

    @staticmethod
    def store(output_storage, values) -> None:
        """Write ``values`` (value, then the gradients) into ``output_storage``."""
        for k, value in enumerate(values):
            output_storage[k][0] = np.asarray(value, dtype="float64")

    def grad(self, inputs, output_grads):
        _, *gradients = self(*inputs)
        g = output_grads[0]
        return [g * gradient for gradient in gradients]
