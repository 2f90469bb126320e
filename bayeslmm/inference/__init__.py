"""Inference on fitted models (issue 12): tests of fixed effects with denominator df,
likelihood-ratio tests, confidence intervals and the parametric bootstrap.  Every tool takes
a fit and works through its deviance object (``varpar.py``); nothing refits from the
formula."""

from .fixed_effects import anova_table, coef_table, linear_test
from .satterthwaite import Satterthwaite

__all__ = ["coef_table", "anova_table", "linear_test", "Satterthwaite"]
