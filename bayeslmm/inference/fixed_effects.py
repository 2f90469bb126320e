"""Tests of fixed effects on a REML/ML fit: coefficient tables with denominator df and
p-values, type III F tests by formula term, and linear hypotheses (lmerTest's ``summary``,
``anova`` and ``contest``).

``ddf``: ``"satterthwaite"`` (lmerTest's default; ``satterthwaite.py``), ``"kenward-roger"``
(pbkrtest's adjusted covariance and df; ``kenward_roger.py``; it also adjusts ``se``),
``"residual"`` (n - p, as a linear model), ``None`` (z tests: infinite df, statsmodels'
MixedLM).
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
from scipy import stats

from .satterthwaite import Satterthwaite

__all__ = ["coef_table", "anova_table", "linear_test", "parse_hypotheses", "DDF_METHODS"]

DDF_METHODS = ("satterthwaite", "kenward-roger", "residual", None)


def _method(ddf) -> str | None:
    key = None if ddf is None else str(ddf).lower().replace("_", "-").replace(" ", "-")
    if key in ("kr", "kenward", "kenwardroger"):
        key = "kenward-roger"
    if key not in DDF_METHODS:
        raise ValueError(f"ddf must be 'satterthwaite', 'kenward-roger', 'residual' or None, "
                         f"got {ddf!r}")
    return key


def _kenward_roger(fit):
    from .kenward_roger import KenwardRoger

    cached = getattr(fit, "_kenward_roger", None)
    if cached is None:
        cached = KenwardRoger(fit)
        fit._kenward_roger = cached
    return cached


def _satterthwaite(fit) -> Satterthwaite:
    cached = getattr(fit, "_satterthwaite", None)
    if cached is None:
        cached = Satterthwaite(fit)
        fit._satterthwaite = cached
    return cached


def _df(fit, method, contrast) -> float:
    if method is None:
        return np.inf
    if method == "residual":
        return float(fit.spec.n - fit.spec.p)
    if method == "kenward-roger":
        return _kenward_roger(fit).ddf(contrast)
    return _satterthwaite(fit).ddf(contrast)


def coef_table(fit, ddf="satterthwaite") -> pd.DataFrame:
    """``estimate, se, df, t, p`` per fixed effect (two-sided p of the t statistic)."""
    method = _method(ddf)
    p = fit.spec.p
    eye = np.eye(p)
    df = np.array([_df(fit, method, eye[j]) for j in range(p)])
    vcov = _kenward_roger(fit).vcov_adjusted if method == "kenward-roger" else fit.vcov_beta
    se = np.sqrt(np.diag(vcov))
    t = fit.beta / se
    pval = 2.0 * stats.t.sf(np.abs(t), df) if method else 2.0 * stats.norm.sf(np.abs(t))
    return pd.DataFrame({"estimate": fit.beta, "se": se, "df": df, "t": t, "p": pval},
                        index=pd.Index(fit.spec.x_names, name="coef"))


def _f_row(fit, method, L: np.ndarray, rhs: np.ndarray | None = None) -> dict:
    L = np.atleast_2d(L)
    if method == "satterthwaite":
        res = _satterthwaite(fit).f_test(L, rhs)
    elif method == "kenward-roger":
        res = _kenward_roger(fit).test(L, rhs)
    else:
        vc = L @ fit.vcov_beta @ L.T
        est = L @ fit.beta - (0 if rhs is None else rhs)
        q = np.linalg.matrix_rank(vc)
        res = {"num_df": q, "F": float(est @ np.linalg.pinv(vc) @ est / q),
               "den_df": np.inf if method is None else float(fit.spec.n - fit.spec.p)}
    den = res["den_df"]
    res["p"] = float(stats.f.sf(res["F"], res["num_df"], den) if np.isfinite(den) else
                     stats.chi2.sf(res["F"] * res["num_df"], res["num_df"]))
    return res


def anova_table(fit, ddf="satterthwaite") -> pd.DataFrame:
    """Type III F tests by formula term: ``num_df, den_df, F, p`` (lmerTest's ``anova``,
    its type III contrasts: ``type3.py``)."""
    from .type3 import type3_contrasts

    method = _method(ddf)
    rows = {}
    for term, L in type3_contrasts(fit.spec).items():
        rows[term] = _f_row(fit, method, L)
    return pd.DataFrame(rows).T[["num_df", "den_df", "F", "p"]].astype(
        {"num_df": int, "den_df": float, "F": float, "p": float})


def _side(text: str, names: list[str]) -> tuple[np.ndarray, float]:
    """A linear expression in the coefficients: (weights over names, constant)."""
    weights = np.zeros(len(names))
    constant = 0.0
    # split on + and - that are not inside brackets (names like age:Sex[Female])
    tokens = re.findall(r"[+-]?[^+-]+", text.replace(" ", ""))
    if not tokens:
        raise ValueError(f"empty side in hypothesis {text!r}")
    for token in tokens:
        sign = -1.0 if token.startswith("-") else 1.0
        token = token.lstrip("+-")
        coef = 1.0
        if "*" in token:
            left, right = token.split("*", 1)
            try:
                coef, token = float(left), right
            except ValueError:
                coef, token = float(right), left
        try:
            constant += sign * coef * float(token)
            continue
        except ValueError:
            pass
        if token not in names:
            raise ValueError(f"hypothesis names {token!r}, which is not a fixed effect; "
                             f"fixed effects: {', '.join(names)}")
        weights[names.index(token)] += sign * coef
    return weights, constant


def parse_hypotheses(hypotheses, names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """``"Days = 0"``, ``"a - b = 0, c = 2"`` or a list of such strings -> (L, rhs)."""
    if isinstance(hypotheses, str):
        hypotheses = [h for h in hypotheses.split(",") if h.strip()]
    rows, rhs = [], []
    for text in hypotheses:
        if text.count("=") != 1:
            raise ValueError(f"a hypothesis needs one '=', as in 'Days = 0'; got {text!r}")
        left, right = text.split("=")
        wl, cl = _side(left, names)
        wr, cr = _side(right, names)
        rows.append(wl - wr)
        rhs.append(cr - cl)
    L = np.array(rows)
    if np.any(np.all(L == 0, axis=1)):
        raise ValueError(f"hypothesis {hypotheses!r} does not involve any fixed effect")
    return L, np.array(rhs)


def linear_test(fit, hypothesis, rhs=None, ddf="satterthwaite") -> pd.Series:
    """Test L beta = rhs: a hypothesis string (``"Days = 0"``) or a contrast matrix.
    Returns ``num_df, den_df, F, p`` (and ``estimate, se, t`` for one row)."""
    method = _method(ddf)
    if isinstance(hypothesis, str | list | tuple) and (
            isinstance(hypothesis, str) or isinstance(hypothesis[0], str)):
        L, c = parse_hypotheses(hypothesis, fit.spec.x_names)
    else:
        L = np.atleast_2d(np.asarray(hypothesis, dtype=float))
        if L.shape[1] != fit.spec.p:
            raise ValueError(f"the contrast matrix needs {fit.spec.p} columns (one per fixed "
                             f"effect: {', '.join(fit.spec.x_names)}), got {L.shape[1]}")
        c = np.zeros(L.shape[0]) if rhs is None else np.asarray(rhs, dtype=float).reshape(-1)
    res = _f_row(fit, method, L, c)
    out = {"num_df": res["num_df"], "den_df": res["den_df"], "F": res["F"], "p": res["p"]}
    if L.shape[0] == 1:
        est = float(L[0] @ fit.beta - c[0])
        vcov = _kenward_roger(fit).vcov_adjusted if method == "kenward-roger" else fit.vcov_beta
        se = float(np.sqrt(L[0] @ vcov @ L[0]))
        out = {"estimate": est, "se": se, "t": est / se, **out}
    return pd.Series(out, name="test")
