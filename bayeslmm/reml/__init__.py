"""REML/ML engine: lme4's profiled deviance over a blocked Cholesky factor."""

from .optimize import fit_reml
from .result import RemlFit
from .system import BlockedSystem

__all__ = ["fit_reml", "RemlFit", "BlockedSystem"]
