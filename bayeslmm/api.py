"""``bayeslmm.fit``: one entry point for REML, ML and Bayesian fits."""

from __future__ import annotations

import pandas as pd

from .design import build_spec
from .reml import fit_reml
from .residual import ResidualModel, fit_structured, parse_residual

__all__ = ["fit"]

METHODS = ("nuts", "reml", "ml")


def fit(
    formula: str,
    data: pd.DataFrame,
    method: str = "nuts",
    *,
    missing: str = "drop",
    residual: str | None = None,
    sigma: str | None = None,
    **kwargs,
):
    """Fit a linear mixed model written as an lme4/brms-style formula.

    Parameters
    ----------
    formula : str
        E.g. ``"Reaction ~ Days + (Days | Subject)"``.  Random terms: ``(e | g)``,
        ``(e || g)`` (independent), ``(e | a/b)`` (nested), ``(e | a:b)``.
    data : pandas.DataFrame
    method : {"nuts", "reml", "ml"}
        ``"nuts"`` (default): Bayesian fit sampled with NUTS.  ``"reml"``/``"ml"``: lme4's
        profiled-deviance fit by restricted or full maximum likelihood.
    missing : {"drop", "raise"}
        What to do with rows that have missing values in used columns.
    residual : str, optional
        An R-side structure of the residuals within a group, ``"STRUCT(occasion | group)"``
        with STRUCT one of ``us, diag, cs, csh, ar1, car1, toep`` (docs/residuals.md).
        Default: independent residuals, sigma^2 I.  A formula without random terms is then
        fitted by generalized least squares (nlme's ``gls``).
    sigma : str, optional
        ``"~ f"``: a residual SD per level of f (nlme's ``varIdent``, brms's ``sigma ~ f``).
    **kwargs
        Passed to the engine (for REML/ML: ``start``, ``max_evals``; for NUTS: ``priors``,
        ``centered`` (see :class:`bayeslmm.Model`) and :meth:`bayeslmm.Model.fit`'s
        arguments).

    Returns
    -------
    RemlFit or BayesFit
    """
    key = str(method).lower()
    if key not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}; got {method!r}")
    term = parse_residual(residual, sigma)
    if key in ("reml", "ml"):
        spec = build_spec(formula, data, missing=missing, extra_columns=tuple(term.columns))
        if term.kind == "iid" and not term.variance_by and spec.blocks:
            return fit_reml(spec, reml=key == "reml", **kwargs)
        rows = data.iloc[spec.row_positions] if spec.row_positions is not None else data
        model = ResidualModel(term, rows.reset_index(drop=True))
        return fit_structured(spec, model, reml=key == "reml", **kwargs)
    from .bayes import Model  # ArviZ is imported when sampling starts, PyMC only if needed

    model = Model(formula, data, missing=missing, priors=kwargs.pop("priors", None),
                  centered=kwargs.pop("centered", None), residual=residual, sigma=sigma)
    return model.fit(**kwargs)

