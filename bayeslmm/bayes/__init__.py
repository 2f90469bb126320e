"""Bayesian engine: priors, the PyMC model builder, NUTS sampling and ``BayesFit``.

``Model``, ``BayesFit`` and ``compare`` are imported on first use (the model's modules import
pandas and scipy, ``BayesFit``'s ArviZ), so importing a submodule such as the numba kernels
stays light.
"""

from importlib import import_module

from .priors import (
    LKJ,
    Exponential,
    Flat,
    HalfCauchy,
    HalfNormal,
    HalfStudentT,
    Normal,
    Prior,
    StudentT,
    Uniform,
)

_LAZY = {"Model": ".model", "BayesFit": ".result", "compare": ".result"}

__all__ = ["Model", "BayesFit", "compare", "Prior", "Normal", "StudentT", "Flat",
           "HalfNormal", "HalfStudentT", "HalfCauchy", "Exponential", "LKJ", "Uniform"]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module 'bayeslmm.bayes' has no attribute {name!r}")

