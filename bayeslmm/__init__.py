"""bayeslmm: Bayesian linear mixed models with lme4-style formulas.

``bayeslmm.fit(formula, data)`` samples the posterior with NUTS (nutpie or PyMC);
``bayeslmm.fit(formula, data, method="reml")`` is a fast REML/ML fit matching lme4.

The Bayesian names (``Model``, ``BayesFit``, ``compare``, ``load`` and the priors
``Normal``, ``HalfNormal``, ...) are imported on first use, so ``import bayeslmm`` and REML
fits do not pay for importing PyMC.
"""

from importlib import import_module

from . import datasets
from .api import fit
from .design import build_spec
from .reml import RemlFit
from .spec import ModelSpec, RandomBlock

__version__ = "0.1.0"

_LAZY = {
    "Model": "bayeslmm.bayes", "BayesFit": "bayeslmm.bayes", "compare": "bayeslmm.bayes",
    "Normal": "bayeslmm.bayes", "StudentT": "bayeslmm.bayes", "Flat": "bayeslmm.bayes",
    "HalfNormal": "bayeslmm.bayes", "HalfStudentT": "bayeslmm.bayes",
    "HalfCauchy": "bayeslmm.bayes", "Exponential": "bayeslmm.bayes", "LKJ": "bayeslmm.bayes",
    "load": "bayeslmm.io", "plots": "bayeslmm.plots",
}

__all__ = ["fit", "build_spec", "datasets", "ModelSpec", "RandomBlock", "RemlFit", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        module = import_module(_LAZY[name])
        return module if name == "plots" else getattr(module, name)
    raise AttributeError(f"module 'bayeslmm' has no attribute {name!r}")
