"""REML/ML engine: lme4's profiled deviance (``Deviance``) over the core's blocked Cholesky."""

from ..core.cholesky import BlockedSystem
from .deviance import Deviance
from .optimize import fit_reml
from .result import RemlFit

__all__ = ["fit_reml", "RemlFit", "Deviance", "BlockedSystem"]
