"""REML/ML estimates against lme4 1.1-31 (R 4.2.2).

Shared cases (../shared/refs/lme4, copied to tests/golden/lme4): compared with the `tight`
refit (nloptwrap, xtol_rel=1e-12): fixed effects, SDs and sigma within 1e-4 relative,
correlations within 1e-4 absolute, criterion within 1e-6 relative.  Standard errors, the
ML deviance of REML fits and conditional modes come from the same strict refit, made by
tests/golden/scripts/lme4_extra.R (tests/golden/lme4_extra.json), which also fits the
further models in ``test_extra_models``.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import bayeslmm
from bayeslmm.datasets import load

from .conftest import (
    DATASET_OF_CASE,
    assert_rel,
    extra_goldens,
    load_case,
    shared_case_names,
)

RTOL = 1e-4
CRIT_RTOL = 1e-6
CORR_ATOL = 1e-4

_FITS: dict = {}


def _fit(dataset: str, formula: str, method: str):
    key = (dataset, formula, method)
    if key not in _FITS:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # singular-fit warnings are tested elsewhere
            _FITS[key] = bayeslmm.fit(formula, load(dataset), method=method)
    return _FITS[key]


def _split_varcorr(vc_rows):
    """(sds, corrs) from rows with keys grp/var1/var2/sdcor (lme4) or a DataFrame (ours)."""
    sds, corrs = [], []
    for row in vc_rows:
        if row["grp"] == "Residual":
            continue
        target = corrs if row["var2"] is not None else sds
        target.append(row["sdcor"])
    return np.array(sds), np.array(corrs)


def _ours_varcorr(fit):
    rows = [{"grp": r["group"], "var2": None if pd.isna(r["var2"]) else r["var2"],
             "sdcor": r["sdcor"]} for _, r in fit.varcorr.iterrows()]
    return _split_varcorr(rows)


def _lme4_varcorr(rows):
    """lme4's as.data.frame(VarCorr(fit)) rows (a list of dicts in the JSON)."""
    return _split_varcorr(rows)


def _compare_ranef(fit, ranef_ref, case):
    ours = fit.ranef
    for factor, rows in ranef_ref.items():
        key, flip = factor, False
        if key not in ours:  # lme4 names (1|a/b)'s inner factor "b:a"
            key, flip = ":".join(reversed(factor.split(":"))), True
        frame = ours[key]
        values_ref = np.array(
            [[v for k, v in r.items() if k not in ("level", "_row")] for r in rows], dtype=float
        )
        labels = [r["level"] for r in rows]
        if flip:
            labels = [":".join(reversed(lab.split(":"))) for lab in labels]
        got = frame.loc[labels].to_numpy()
        scale = max(np.abs(values_ref).max(), 1e-2 * fit.sigma)
        assert_rel(got, values_ref, 0, f"{case} ranef {factor}", atol=RTOL * scale)


@pytest.mark.parametrize("case", shared_case_names())
def test_shared_reference_case(case):
    ref = load_case(case)
    tight = ref["tight"]
    method = ref["method"].lower()
    fit = _fit(DATASET_OF_CASE[case.rsplit("_", 1)[0].split("_")[0]], ref["formula"], method)

    assert fit.nobs == ref["nobs"]
    assert sorted(fit.ngroups.values()) == sorted(ref["ngrps"].values())
    assert_rel(fit.fixef.to_numpy(), list(tight["fixef"].values()), RTOL, f"{case} fixef")
    assert_rel(fit.sigma, tight["sigma"], RTOL, f"{case} sigma")
    assert_rel(fit.criterion, tight["criterion"], CRIT_RTOL, f"{case} criterion")
    sds_ref, corr_ref = [], []
    for comp in tight["varcomp"].values():
        sds_ref += list(comp["sd"].values())
        corr = np.array(comp["corr"])
        q = corr.shape[0]
        corr_ref += [corr[b, a] for a in range(q) for b in range(a + 1, q)]
    sds, corrs = _ours_varcorr(fit)
    assert_rel(sds, sds_ref, RTOL, f"{case} SDs", atol=1e-6 * tight["sigma"])
    assert np.allclose(corrs, corr_ref, atol=CORR_ATOL), f"{case} correlations {corrs}"
    assert fit.is_singular == tight["isSingular"]
    assert fit.converged

    strict = extra_goldens()["shared"][case]
    assert_rel(fit.se.to_numpy(), list(strict["se"].values()), RTOL, f"{case} SE")
    assert_rel(fit.deviance, strict["deviance_ml"], CRIT_RTOL, f"{case} deviance")
    assert_rel(fit.loglik, strict["logLik"], CRIT_RTOL, f"{case} logLik")
    assert_rel([fit.aic, fit.bic], [strict["AIC"], strict["BIC"]], CRIT_RTOL, f"{case} AIC/BIC")
    _compare_ranef(fit, strict["ranef"], case)


EXTRA = extra_goldens()["extra"]



@pytest.mark.parametrize("case", sorted(EXTRA))
def test_extra_models(case):
    """Models beyond the shared set: a categorical random slope, a 3 x 3 G, crossed factors
    with a slope block after the first, ``||`` with a factor in X, ``a:b``, ``I()``."""
    ref = EXTRA[case]
    method = "reml" if case.endswith("_reml") else "ml"
    fit = _fit(ref["dataset"], ref["formula"], method)
    assert fit.nobs == ref["nobs"]
    assert_rel(fit.fixef.to_numpy(), list(ref["fixef"].values()), RTOL, f"{case} fixef")
    assert_rel(fit.se.to_numpy(), list(ref["se"].values()), RTOL, f"{case} SE")
    assert_rel(fit.sigma, ref["sigma"], RTOL, f"{case} sigma")
    assert_rel(fit.criterion, ref["criterion"], CRIT_RTOL, f"{case} criterion")
    sds, corrs = _ours_varcorr(fit)
    sds_ref, corr_ref = _lme4_varcorr(ref["varcorr"])
    assert_rel(sds, sds_ref, RTOL, f"{case} SDs", atol=1e-6 * ref["sigma"])
    assert np.allclose(corrs, corr_ref, atol=CORR_ATOL), f"{case}: {corrs} vs {corr_ref}"
    assert fit.is_singular == ref["isSingular"]
    _compare_ranef(fit, ref["ranef"], case)
