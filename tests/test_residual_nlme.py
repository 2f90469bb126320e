"""R-side structures and gls against nlme 3.1-162 (goldens: tests/golden/residual_nlme.json,
made by tests/golden/scripts/residual_nlme.R, which also wrote the Ovary, BodyWeight and
simulated data in tests/golden/data/).

Tolerances are the issue's: logLik within 1e-6 relative, parameters within 1e-4, parameter
counts equal.  nlme's parametrizations differ from ours (corSymm's spherical angles,
varIdent's reference stratum), so parameters are compared as what they mean: the residual
covariance of a group seen at every occasion (getVarCov), per-level SDs, correlations."""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import bayeslmm
from bayeslmm.datasets import load

from .conftest import GOLDEN

NLME = json.loads((GOLDEN / "residual_nlme.json").read_text())
DATA = Path(GOLDEN) / "data"
FULL_SIM = NLME["meta"]["full_group_sim"]


def _orthodont() -> pd.DataFrame:
    d = load("orthodont").copy()
    d["Sex"] = pd.Categorical(d["Sex"].astype(str), categories=["Male", "Female"])
    d["visit"] = (d["age"] - 8) // 2 + 1
    return d


def _csv(name: str, categorical: tuple[str, ...]) -> pd.DataFrame:
    d = pd.read_csv(DATA / name)
    for col in categorical:
        d[col] = pd.Categorical(d[col].astype(str),
                                categories=list(dict.fromkeys(d[col].astype(str))))
    return d


def _sim() -> pd.DataFrame:
    d = _csv("resid_sim.csv", ("id", "arm"))
    d["arm"] = pd.Categorical(d["arm"].astype(str), categories=["pbo", "trt"])
    d["fvisit"] = pd.Categorical(d["fvisit"], categories=[f"V{k}" for k in range(1, 6)])
    return d


ORT_F = "distance ~ age * Sex"
SIM_F = "y ~ fvisit + arm + x + fvisit:arm"
# case -> (data, formula, residual, sigma, group seen at every occasion)
CASES = {
    "orthodont_us": (_orthodont, ORT_F, "us(age | Subject)", None, "M01"),
    "orthodont_cs": (_orthodont, ORT_F, "cs(age | Subject)", None, "M01"),
    "orthodont_csh": (_orthodont, ORT_F, "csh(age | Subject)", None, "M01"),
    "orthodont_diag": (_orthodont, ORT_F, "diag(age | Subject)", None, "M01"),
    "orthodont_ar1": (_orthodont, ORT_F, "ar1(visit | Subject)", None, "M01"),
    "orthodont_toep": (_orthodont, ORT_F, "toep(age | Subject)", None, "M01"),
    # ages 8-14: every lag even, phi's sign not identified (nlme started at 0.5: from its
    # default phi = 0, a stationary point, it stays at logLik -241.78; ours started there too)
    "orthodont_ar1_age": (_orthodont, ORT_F, "ar1(age | Subject)", None, "M01"),
    "orthodont_ols": (_orthodont, ORT_F, None, None, None),
    "orthodont_varident_sex": (_orthodont, ORT_F, None, "~ Sex", None),
    "orthodont_lme_varident": (_orthodont, ORT_F + " + (1 | Subject)", None, "~ Sex", None),
    "orthodont_lme_ar1": (_orthodont, ORT_F + " + (1 | Subject)", "ar1(visit | Subject)", None,
                          "M01"),
    "ovary_ar1": (lambda: _csv("ovary.csv", ("Mare",)), "follicles ~ s + c + (1 + s || Mare)",
                  "ar1(visit | Mare)", None, None),
    "bodyweight_car1": (lambda: _csv("bodyweight.csv", ("Rat", "Diet")),
                        "weight ~ Time * Diet + (Time | Rat)", "car1(Time | Rat)", None, None),
    "sim_us": (_sim, SIM_F, "us(fvisit | id)", None, FULL_SIM),
    "sim_diag": (_sim, SIM_F, "diag(fvisit | id)", None, FULL_SIM),
    "sim_cs": (_sim, SIM_F, "cs(visit | id)", None, FULL_SIM),
    "sim_csh": (_sim, SIM_F, "csh(fvisit | id)", None, FULL_SIM),
    "sim_ar1": (_sim, SIM_F, "ar1(visit | id)", None, FULL_SIM),
    "sim_car1": (_sim, SIM_F, "car1(time | id)", None, None),
    "sim_toep": (_sim, SIM_F, "toep(fvisit | id)", None, FULL_SIM),
    "sim_lme_ar1": (_sim, SIM_F + " + (1 | id)", "ar1(visit | id)", None, FULL_SIM),
}
FACTORS = ("Sex", "fvisit", "arm", "Diet")


def _our_name(r_name: str) -> str:
    """R's coefficient name -> formulae's (``fvisitV2:armtrt`` -> ``fvisit[V2]:arm[trt]``)."""
    if r_name == "(Intercept)":
        return "Intercept"
    parts = []
    for token in r_name.split(":"):
        for factor in FACTORS:
            if token.startswith(factor) and token != factor:
                token = f"{factor}[{token[len(factor):]}]"
                break
        parts.append(token)
    return ":".join(parts)


def _fit(case: str, method: str):
    make, formula, residual, sigma, _full = CASES[case]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return bayeslmm.fit(formula, make(), method=method, residual=residual, sigma=sigma)


def _level_sds(fit, ref: dict, by: str) -> tuple[dict, dict]:
    """Per-level residual SDs of a varIdent fit, ours and nlme's."""
    ours = fit.residual_structure["estimate"]
    levels = fit.residual_model.variance_labels
    mine = {levels[0]: fit.sigma} | {lab: fit.sigma * ours[f"sd_ratio[{lab}]"]
                                    for lab in levels[1:]}
    theirs = {lab: ref["sigma"] * ref["var"].get(lab, 1.0) for lab in levels}
    return mine, theirs


@pytest.mark.parametrize("method", ["reml", "ml"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_matches_nlme(case, method):
    ref = NLME[f"{case}_{method}"]
    fit = _fit(case, method)
    assert fit.converged
    assert fit.nobs == ref["nobs"]
    assert fit.n_params == ref["df"], (fit.n_params, ref["df"])
    assert abs(fit.loglik - ref["logLik"]) <= 1e-6 * abs(ref["logLik"]), (fit.loglik,
                                                                           ref["logLik"])
    names = [_our_name(n) for n in ref["fixef"]]
    beta = fit.fixef[names].to_numpy()
    want = np.array(list(ref["fixef"].values()))
    scale = np.abs(want).max()
    np.testing.assert_allclose(beta, want, rtol=1e-4, atol=1e-4 * scale)
    se = np.asarray(ref["se"])
    if method == "ml" and not fit.spec.blocks:
        # nlme's gls ML vcov uses sigma^2 RSS/(N - p), lme4's convention (ours) RSS/N
        se = se * np.sqrt((fit.nobs - fit.spec.p) / fit.nobs)
    np.testing.assert_allclose(fit.se[names].to_numpy(), se, rtol=1e-4)
    structure = fit.residual_structure["estimate"]
    if ref["var"] and CASES[case][3]:              # sigma="~ f": SD per level of f
        mine, theirs = _level_sds(fit, ref, CASES[case][3])
        for lab in mine:
            assert mine[lab] == pytest.approx(theirs[lab], rel=1e-4)
    elif ref["var"]:                               # per-occasion SDs (diag/csh/us)
        labels = fit.residual_model.structure.labels
        sds = np.array([ref["sigma"] * ref["var"].get(lab,
                                                      1.0) for lab in labels])
        ours = np.array([structure[f"sd[{lab}]"] for lab in labels])
        np.testing.assert_allclose(ours, sds, rtol=1e-4)
    else:
        assert fit.sigma == pytest.approx(ref["sigma"], rel=1e-4)
    if ref["cov"] is not None:
        cov = np.asarray(ref["cov"])
        ours = fit.residual_cov().to_numpy()
        if ours.shape == cov.shape:
            np.testing.assert_allclose(ours, cov, rtol=1e-4, atol=1e-4 * np.abs(cov).max())
    kind = (CASES[case][2] or "").split("(")[0]
    if kind in ("ar1", "car1"):
        assert structure["phi"] == pytest.approx(ref["cor"], abs=1e-4)
    if kind in ("cs", "csh"):
        assert structure["rho"] == pytest.approx(ref["cor"], abs=1e-4)


def test_ar1_on_even_gaps_warns():
    with pytest.warns(UserWarning, match="multiple of 2.*sign of phi is not identified"):
        bayeslmm.fit(ORT_F, _orthodont(), method="reml", residual="ar1(age | Subject)")


def test_us_correlations_match_nlme_order():
    """corSymm's correlations are (1,2), (1,3), ..., (2,3), ...: ours in the same order."""
    fit = _fit("sim_us", "reml")
    cors = [v for k, v in fit.residual_structure["estimate"].items() if re.match(r"cor\[", k)]
    np.testing.assert_allclose(cors, NLME["sim_us_reml"]["cor"], atol=1e-4)


def test_normalized_residuals_are_whitened():
    """nlme's normalized residuals: within a group, L^-1 e / sigma; their covariance across
    groups is near I, and for sigma^2 I they are raw / sigma."""
    fit = _fit("orthodont_us", "reml")
    z = fit.resid("normalized")
    assert z.shape == (108,)
    assert abs(z.std() - 1.0) < 0.1
    ols = _fit("orthodont_ols", "reml")
    np.testing.assert_allclose(ols.resid("normalized"), ols.resid("raw") / ols.sigma)


def test_predict_and_population_level():
    fit = _fit("orthodont_lme_ar1", "reml")
    data = _orthodont()
    np.testing.assert_allclose(fit.predict(data), fit.fitted)
    new = data.head(4).copy()
    new["Subject"] = "someone new"
    np.testing.assert_allclose(fit.predict(new), fit.predict(new, include_random=False))
    with pytest.raises(ValueError, match="not seen in fitting"):
        fit.predict(new, new_levels="error")
    gls = _fit("orthodont_us", "reml")
    np.testing.assert_allclose(gls.predict(data), gls.spec.X @ gls.beta)


@pytest.mark.parametrize("residual, sigma, message", [
    ("foo(age | Subject)", None, "unknown residual structure"),
    ("us(age Subject)", None, "could not read the occasion"),
    ("us age", None, "could not read residual"),
    ("car1(Sex | Subject)", None, "needs numeric times"),
    ("us(Sex | Subject)", None, "more than once"),
    ("ar1(age | nothere)", None, "nothere"),
    (None, "~ 2 * Sex", "could not read the variance function"),
])
def test_bad_residual_arguments(residual, sigma, message):
    with pytest.raises((ValueError, TypeError), match=message):
        bayeslmm.fit(ORT_F, _orthodont(), method="reml", residual=residual, sigma=sigma)


def test_residual_groups_must_nest_in_random_factors():
    data = _orthodont()
    data["t"] = np.arange(len(data), dtype=float)
    data["pair"] = data["Subject"].cat.codes // 2   # two subjects in each residual group
    with pytest.raises(ValueError, match="nested in every random-effects grouping factor"):
        bayeslmm.fit(ORT_F + " + (1 | Subject)", data, method="reml", residual="car1(t | pair)")


def test_missing_occasions_are_dropped_and_counted():
    data = _orthodont()
    data.loc[[0, 5], "age"] = np.nan
    with pytest.warns(UserWarning, match="dropped 2 of 108 rows"):
        fit = bayeslmm.fit(ORT_F, data, method="reml", residual="cs(age | Subject)")
    assert fit.nobs == 106 and fit.spec.n_dropped == 2


def test_unbounded_likelihood_is_reported_not_raised():
    """A line per child fits two of its four points exactly, so a variance per age runs to 0
    (the likelihood is unbounded): a degenerate-structure warning, not a LinAlgError from
    the rounded cross products of the whitened rows (OpenBLAS's Haswell kernel raised one)."""
    with pytest.warns(UserWarning, match="degenerate"):
        fit = bayeslmm.fit("distance ~ 0 + Subject + Subject:age", _orthodont(), method="ml",
                           residual="diag(age | Subject)")
    assert not fit.converged
