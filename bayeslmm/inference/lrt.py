"""Likelihood-ratio tests between nested fits: ``bayeslmm.anova(fit1, fit2, ...)`` as lme4's
``anova()``.

REML fits are refitted by ML first (``refit=True``, lme4's default: REML criteria of models
with different fixed effects are not comparable); the refit reuses each fit's spec and
residual model, never the formula.  Models are ordered by parameter count; each row after the
first tests it against the row above: chisq = deviance difference, df = parameter-count
difference, p = P(chi2_df > chisq).

A variance tested on its boundary (the smaller model is the larger one with some random-effect
variances at 0) makes the chi2 reference conservative: the null distribution is a mixture,
e.g. 0.5 chi2_0 + 0.5 chi2_1 for one variance (Self & Liang 1987; Stram & Lee 1994), so the
p-value halves.  The table says so in ``attrs["note"]`` and a warning.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from scipy import stats

__all__ = ["anova"]


def _ml(fit):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fit.refit(reml=False)


def anova(*fits, refit: bool = True, names: list[str] | None = None) -> pd.DataFrame:
    """Likelihood-ratio tests of nested REML/ML fits of the same rows.

    Parameters
    ----------
    *fits : RemlFit
        Two or more fits of the same data (same rows).
    refit : bool
        Refit REML fits by ML (lme4's default).  ``refit=False`` compares REML criteria,
        valid only for models with the same fixed effects.
    names : list of str, optional
        Row labels (default: each fit's formula).

    Returns
    -------
    pandas.DataFrame
        Columns ``npar, aic, bic, loglik, deviance, chisq, df, p`` (NaN in the first row).
    """
    if len(fits) < 2:
        raise ValueError("anova() compares two or more fits")
    for fit in fits:
        if not hasattr(fit, "refit") or not hasattr(fit, "deviance_object"):
            raise TypeError(f"anova() takes REML/ML fits (bayeslmm.fit(..., method='reml')), "
                            f"got {type(fit).__name__}; for Bayesian fits see bayes_factor")
    n = {fit.nobs for fit in fits}
    if len(n) > 1:
        raise ValueError(f"the fits use different numbers of rows ({sorted(n)}): models must "
                         "be fitted to the same data")
    labels = list(names) if names is not None else [f.spec.formula for f in fits]
    if refit:
        used = [_ml(f) for f in fits]
    else:
        used = list(fits)
        if len({tuple(f.spec.x_names) for f in fits}) > 1 and any(
                f.method == "REML" for f in fits):
            raise ValueError("REML fits with different fixed effects cannot be compared "
                             "(refit=True refits them by ML)")
    order = sorted(range(len(used)), key=lambda k: used[k].n_params)
    rows = []
    previous = None
    boundary = False
    for k in order:
        fit = used[k]
        dev = -2.0 * fit.loglik
        row = {"npar": fit.n_params, "aic": fit.aic, "bic": fit.bic, "loglik": fit.loglik,
               "deviance": dev, "chisq": np.nan, "df": np.nan, "p": np.nan}
        if previous is not None:
            chisq = max(previous[1] - dev, 0.0)
            df = fit.n_params - previous[0].n_params
            row.update(chisq=chisq, df=df,
                       p=float(stats.chi2.sf(chisq, df)) if df > 0 else np.nan)
            same_fixed = fit.spec.x_names == previous[0].spec.x_names
            if same_fixed and fit.theta.size > previous[0].theta.size:
                boundary = True
        rows.append(row)
        previous = (fit, dev)
    table = pd.DataFrame(rows, index=pd.Index([labels[k] for k in order], name="model"))
    table["df"] = table["df"].astype("Int64") if table["df"].notna().any() else table["df"]
    if boundary:
        note = ("a random-effect variance is tested on its boundary (0): the chi2 p-value is "
                "conservative; the null is a chi2 mixture (for one variance 0.5 chi2_0 + 0.5 "
                "chi2_1: halve p). See docs/inference.md")
        table.attrs["note"] = note
        warnings.warn(note, UserWarning, stacklevel=2)
    return table
