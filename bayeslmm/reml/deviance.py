"""``Deviance`` lives in ``core/deviance.py`` (the residual structures and the inference tools
use it without the REML fitting stage); this name stays for the public API."""

from ..core.deviance import Deviance, Estimates

__all__ = ["Deviance", "Estimates"]
