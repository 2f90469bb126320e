"""bayeslmm: Bayesian linear mixed models with lme4-style formulas.

``bayeslmm.fit(formula, data)`` samples the posterior with NUTS (PyMC);
``bayeslmm.fit(formula, data, method="reml")`` is a fast REML/ML fit matching lme4.
"""

from . import datasets
from .api import fit
from .design import build_spec
from .reml import RemlFit
from .spec import ModelSpec, RandomBlock

__version__ = "0.1.0"

__all__ = ["fit", "build_spec", "datasets", "ModelSpec", "RandomBlock", "RemlFit"]
