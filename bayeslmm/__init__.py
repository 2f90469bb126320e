"""bayeslmm: Bayesian linear mixed models with lme4-style formulas.

``bayeslmm.fit(formula, data)`` samples the posterior with NUTS (nutpie or PyMC);
``bayeslmm.fit(formula, data, method="reml")`` is a fast REML/ML fit matching lme4.

Every public name is imported on first use, so ``import bayeslmm`` is cheap and REML fits
do not pay for importing ArviZ, nutpie or PyMC.
"""

from importlib import import_module
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # for editors and type checkers; at run time see __getattr__
    from . import datasets, plots
    from .api import fit
    from .bayes import (
        LKJ,
        BayesFit,
        Exponential,
        Flat,
        HalfCauchy,
        HalfNormal,
        HalfStudentT,
        Model,
        Normal,
        StudentT,
        Uniform,
        compare,
    )
    from .bayes.evidence import bayes_factor
    from .design import build_spec
    from .inference.lrt import anova
    from .io import load
    from .reml import RemlFit
    from .spec import ModelSpec, RandomBlock

__version__ = "0.1.0"

# Everything is imported on first use (PEP 562), so that importing a submodule stays
# light: the helper process that compiles the numba kernel on a first fit
# (bayes/kernel_cfunc.py) imports only what the kernel needs, not pandas and formulae.
_LAZY = {
    "fit": "bayeslmm.api", "anova": "bayeslmm.inference.lrt", "build_spec": "bayeslmm.design",
    "RemlFit": "bayeslmm.reml", "bayes_factor": "bayeslmm.bayes.evidence",
    "ModelSpec": "bayeslmm.spec", "RandomBlock": "bayeslmm.spec",
    "datasets": "bayeslmm.datasets", "plots": "bayeslmm.plots", "load": "bayeslmm.io",
    "Model": "bayeslmm.bayes", "BayesFit": "bayeslmm.bayes", "compare": "bayeslmm.bayes",
    "Normal": "bayeslmm.bayes", "StudentT": "bayeslmm.bayes", "Flat": "bayeslmm.bayes",
    "HalfNormal": "bayeslmm.bayes", "HalfStudentT": "bayeslmm.bayes",
    "HalfCauchy": "bayeslmm.bayes", "Exponential": "bayeslmm.bayes", "LKJ": "bayeslmm.bayes",
    "Uniform": "bayeslmm.bayes",
}
_MODULES = {"datasets", "plots"}

__all__ = [
    "fit", "anova", "bayes_factor", "build_spec", "RemlFit", "ModelSpec", "RandomBlock",
    "datasets", "plots", "load",
    "Model", "BayesFit", "compare", "Normal", "StudentT", "Flat", "HalfNormal",
    "HalfStudentT", "HalfCauchy", "Exponential", "LKJ", "Uniform",
]


def __getattr__(name: str):
    if name in _LAZY:
        module = import_module(_LAZY[name])
        return module if name in _MODULES else getattr(module, name)
    raise AttributeError(f"module 'bayeslmm' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
