"""R-side structures (``residual="us(visit | id)"``, ``sigma="~ f"``) and generalized least
squares: the residual seam of the core (docs/design.md)."""

from .deviance import StructuredDeviance
from .fit import fit_structured
from .model import ResidualModel, parse_residual
from .structures import STRUCTURES

__all__ = ["StructuredDeviance", "fit_structured", "ResidualModel", "parse_residual",
           "STRUCTURES"]
