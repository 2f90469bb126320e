"""Bayesian engine: priors, the PyMC model builder, NUTS sampling and ``BayesFit``."""

from .model import Model
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
)
from .result import BayesFit, compare

__all__ = ["Model", "BayesFit", "compare", "Prior", "Normal", "StudentT", "Flat",
           "HalfNormal", "HalfStudentT", "HalfCauchy", "Exponential", "LKJ"]
