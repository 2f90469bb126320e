"""Inference (issue 12) against lmerTest 3.1-3 and lme4 1.1-31 (goldens:
tests/golden/inference_lmertest.json, made by tests/golden/scripts/inference_lmertest.R):
Satterthwaite df within 1e-4 relative, p within 1e-6 absolute or 1e-4 relative."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import bayeslmm
from bayeslmm.datasets import load

from .conftest import GOLDEN

REF = json.loads((GOLDEN / "inference_lmertest.json").read_text())


def _orthodont():
    d = load("orthodont").copy()
    d["Sex"] = pd.Categorical(d["Sex"].astype(str), categories=["Male", "Female"])
    return d


CASES = {
    "sleepstudy": ("Reaction ~ Days + (Days | Subject)", lambda: load("sleepstudy")),
    "orthodont": ("distance ~ age * Sex + (age | Subject)", _orthodont),
    "ergostool": ("effort ~ Type + (1 | Subject)", lambda: load("ergostool")),
    "crossed": ("rt ~ 1 + spkr + prec + load + (1 + spkr | subj) + (1 | item)",
                lambda: pd.read_csv(Path(GOLDEN) / "data" / "kb07.csv")),
    "nested": ("strength ~ 1 + (1 | batch / cask)", lambda: load("pastes")),
}


@pytest.fixture(scope="module")
def fits():
    out = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, (formula, make) in CASES.items():
            out[name] = bayeslmm.fit(formula, make(), method="reml")
    return out


def _close_p(ours, theirs):
    ours, theirs = np.asarray(ours, float), np.asarray(theirs, float)
    ok = (np.abs(ours - theirs) <= 1e-6) | (np.abs(ours - theirs) <= 1e-4 * np.abs(theirs))
    assert ok.all(), (ours, theirs)


@pytest.mark.parametrize("case", sorted(CASES))
def test_satterthwaite_coef_table(case, fits):
    ref = REF[case]["satterthwaite"]
    table = fits[case].coef_table()
    assert list(table.columns) == ["estimate", "se", "df", "t", "p"]
    np.testing.assert_allclose(table["df"], ref["df"], rtol=1e-4)
    np.testing.assert_allclose(table["se"], ref["se"], rtol=1e-5)
    _close_p(table["p"], ref["p"])


@pytest.mark.parametrize("case", sorted(CASES))
def test_kenward_roger_coef_table(case, fits):
    """pbkrtest 0.5.2's adjusted SEs and df, as lmerTest's summary(ddf = "Kenward-Roger")."""
    ref = REF[case]["kenward_roger"]
    table = fits[case].coef_table(ddf="kenward-roger")
    np.testing.assert_allclose(table["df"], ref["df"], rtol=1e-4)
    np.testing.assert_allclose(table["se"], ref["se"], rtol=1e-5)
    _close_p(table["p"], ref["p"])


@pytest.mark.parametrize("case", ["sleepstudy", "orthodont", "ergostool", "crossed"])
def test_kenward_roger_anova(case, fits):
    ref = REF[case]["anova_kenward_roger"]
    table = fits[case].anova(ddf="kenward-roger")
    np.testing.assert_allclose(table["den_df"], np.atleast_1d(ref["den_df"]), rtol=1e-4)
    np.testing.assert_allclose(table["F"], np.atleast_1d(ref["F"]), rtol=1e-5)
    _close_p(table["p"], np.atleast_1d(ref["p"]))


@pytest.mark.parametrize("case", ["sleepstudy", "orthodont", "ergostool", "crossed"])
def test_type3_anova(case, fits):
    ref = REF[case]["anova_satterthwaite"]
    table = fits[case].anova()
    terms = ref["terms"] if isinstance(ref["terms"], list) else [ref["terms"]]
    assert list(table.index) == terms
    np.testing.assert_array_equal(table["num_df"], np.atleast_1d(ref["num_df"]))
    np.testing.assert_allclose(table["den_df"], np.atleast_1d(ref["den_df"]), rtol=1e-4)
    np.testing.assert_allclose(table["F"], np.atleast_1d(ref["F"]), rtol=1e-5)
    _close_p(table["p"], np.atleast_1d(ref["p"]))


def test_linear_hypotheses(fits):
    fit = fits["orthodont"]
    ref = REF["orthodont"]["contest_satterthwaite"]
    res = fit.test("Sex[Female] = 0, age:Sex[Female] = 0")
    assert res["num_df"] == ref["num_df"]
    assert res["den_df"] == pytest.approx(ref["den_df"], rel=1e-4)
    assert res["F"] == pytest.approx(ref["F"], rel=1e-6)
    _close_p([res["p"]], [ref["p"]])
    L = np.array([[0, 0, 1, 0], [0, 0, 0, 1.0]])
    assert fit.test(L)["F"] == pytest.approx(res["F"], rel=1e-12)
    one = fit.test("age = 0")  # one row: the coefficient's t test
    row = fit.coef_table().loc["age"]
    assert one["t"] == pytest.approx(row["t"]) and one["p"] == pytest.approx(row["p"])
    shifted = fit.test("age = 0.5")
    assert shifted["estimate"] == pytest.approx(row["estimate"] - 0.5)
    both = fit.test("age - 2 * age:Sex[Female] = 0")
    assert np.isfinite(both["p"])


def test_other_ddf_and_errors(fits):
    fit = fits["sleepstudy"]
    z = fit.coef_table(ddf=None)
    assert np.isinf(z["df"]).all()
    res = fit.coef_table(ddf="residual")
    assert (res["df"] == 178).all()
    with pytest.raises(ValueError, match="ddf must be"):
        fit.coef_table(ddf="bogus")
    with pytest.raises(ValueError, match="not a fixed effect"):
        fit.test("Nights = 0")
    with pytest.raises(ValueError, match="one '='"):
        fit.test("Days")
    assert "Pr(>|t|)" in fit.summary()


def test_likelihood_ratio_tests(fits):
    data = load("sleepstudy")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        s0 = bayeslmm.fit("Reaction ~ Days + (1 | Subject)", data, method="reml")
        s2 = bayeslmm.fit("Reaction ~ 1 + (Days | Subject)", data, method="reml")
    s1 = fits["sleepstudy"]
    for key, (a, b), refit in (("lrt_sleepstudy_re", (s0, s1), True),
                               ("lrt_sleepstudy_fixed", (s2, s1), True),
                               ("lrt_sleepstudy_reml", (s0, s1), False)):
        ref = REF[key]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            table = bayeslmm.anova(b, a, refit=refit)   # sorted by npar, as lme4
        assert list(table.columns) == ["npar", "aic", "bic", "loglik", "deviance", "chisq",
                                       "df", "p"]
        np.testing.assert_array_equal(table["npar"], ref["npar"])
        np.testing.assert_allclose(table["deviance"], ref["deviance"], rtol=1e-8)
        np.testing.assert_allclose(table["aic"], ref["aic"], rtol=1e-8)
        assert np.isnan(table["chisq"].iloc[0])
        assert table["chisq"].iloc[1] == pytest.approx(ref["chisq"][1], rel=1e-6)
        _close_p([table["p"].iloc[1]], [ref["p"][1]])
    with pytest.warns(UserWarning, match="boundary"):
        table = bayeslmm.anova(s0, s1)
    assert "mixture" in table.attrs["note"]
    with pytest.raises(ValueError, match="different fixed effects"):
        bayeslmm.anova(s2, s1, refit=False)


@pytest.mark.parametrize("key, case", [("confint_sleepstudy_profile", "sleepstudy"),
                                       ("confint_orthodont_ri_profile", "orthodont_ri")])
def test_profile_intervals_match_lme4(key, case, fits):
    if case == "orthodont_ri":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fit = bayeslmm.fit("distance ~ age * Sex + (1 | Subject)", _orthodont(),
                               method="reml")
    else:
        fit = fits[case]
    ref = REF[key]
    ours = fit.confint("profile")
    lme4_order = ([n for n in ours.index if not n.startswith("b[")]
                  + [n for n in ours.index if n.startswith("b[")])
    np.testing.assert_allclose(ours.loc[lme4_order, "lower"], ref["lower"], rtol=1e-3)
    np.testing.assert_allclose(ours.loc[lme4_order, "upper"], ref["upper"], rtol=1e-3)
    wald = fit.confint("wald")
    assert wald.loc[[n for n in wald.index if not n.startswith("b[")]].isna().all().all()


def test_wald_matches_lme4(fits):
    ref = REF["confint_sleepstudy_wald"]
    wald = fits["sleepstudy"].confint("wald")
    np.testing.assert_allclose(wald.loc[["b[Intercept]", "b[Days]"], "lower"], ref["lower"][4:],
                               rtol=1e-7)


def test_bootstrap_is_reproducible_and_calibrated(fits):
    fit = fits["sleepstudy"]
    reps = fit.bootstrap(n=200, random_seed=7, progressbar=False)
    assert list(reps.columns) == ["b[Intercept]", "b[Days]", "sd_Subject[Intercept]",
                                  "sd_Subject[Days]", "cor_Subject[Intercept, Days]", "sigma"]
    again = fit.bootstrap(n=20, random_seed=7, progressbar=False)
    np.testing.assert_array_equal(again.to_numpy(), reps.head(20).to_numpy())
    # the bootstrap SD of a fixed effect estimates its standard error (within 20% at n=200)
    se = fit.se.to_numpy()
    assert np.all(np.abs(reps[["b[Intercept]", "b[Days]"]].std().to_numpy() / se - 1) < 0.2)
    # and the replicates are centred on the estimates (the simulation truth)
    assert abs(reps["sigma"].mean() - fit.sigma) < 3 * reps["sigma"].std() / np.sqrt(200) + 0.5
    boot = fit.confint("boot", n_boot=100, random_seed=1)
    assert (boot["lower"] < boot["upper"]).all()


BOOT_REF = json.loads((GOLDEN / "bootstrap_lme4.json").read_text())


def test_bootstrap_distribution_matches_lme4_bootmer(fits):
    """4,000 replicates against lme4's bootMer (4,000, its own seed): means within 4.5 Monte
    Carlo SEs, SDs within 6%, quartiles and 2.5/97.5% points within 5 MC SEs of a quantile."""
    from scipy.stats import norm

    ref = BOOT_REF
    reps = fits["sleepstudy"].bootstrap(n=4000, random_seed=2, progressbar=False)[ref["names"]]
    n, n_ref = len(reps), ref["n"]
    mean, sd = reps.mean().to_numpy(), reps.std().to_numpy()
    mc = np.sqrt(sd**2 / n + np.asarray(ref["sd"]) ** 2 / n_ref)
    assert np.all(np.abs(mean - ref["mean"]) < 4.5 * mc), (mean, ref["mean"])
    assert np.all(np.abs(sd / np.asarray(ref["sd"]) - 1) < 0.06)
    probs = np.asarray(ref["probs"])
    quant = reps.quantile(probs).to_numpy().T
    q_se = np.sqrt(probs * (1 - probs) * (1 / n + 1 / n_ref)) / norm.pdf(norm.ppf(probs))
    tol = 5 * np.asarray(ref["sd"])[:, None] * q_se[None, :]
    assert np.all(np.abs(quant - np.asarray(ref["quantiles"])) < tol)


@pytest.mark.parametrize("case", ["sleepstudy-reml", "sleepstudy-ml", "sleepstudy-uncorr",
                                  "dyestuff2", "orthodont"])
def test_compiled_bootstrap_matches_the_general_optimizer(case, fits):
    """The compiled one-block refits (quasi-Newton in numba) reach the optimum the general
    path (BlockedSystem + BOBYQA with probes and reflections) reaches, replicate by
    replicate on the same simulated responses; dyestuff2's fit is singular (sd 0);
    ``(Days || Subject)`` is two blocks on one factor, refitted as one."""
    from bayeslmm.inference.bootstrap import bootstrap

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if case == "sleepstudy-ml":
            fit = bayeslmm.fit(CASES["sleepstudy"][0], load("sleepstudy"), method="ml")
        elif case == "sleepstudy-uncorr":   # (Days || Subject): two blocks, one factor
            fit = bayeslmm.fit("Reaction ~ Days + (Days || Subject)", load("sleepstudy"),
                               method="reml")
        elif case == "dyestuff2":
            fit = bayeslmm.fit("Yield ~ 1 + (1 | Batch)", load("dyestuff2"), method="reml")
        else:
            fit = fits[case.split("-")[0]]
    fast = bootstrap(fit, n=25, random_seed=5, progressbar=False, engine="compiled", cores=2)
    slow = bootstrap(fit, n=25, random_seed=5, progressbar=False, engine="general")
    sigma = slow["sigma"].to_numpy()[:, None]
    for prefix, rtol, atol in [("b[", 1e-6, 0.0), ("sigma", 1e-5, 0.0),
                               ("sd_", 1e-4, 1e-4), ("cor_", 0.0, 1e-3)]:
        cols = [c for c in slow.columns if c.startswith(prefix)]
        a, b = fast[cols].to_numpy(), slow[cols].to_numpy()
        scale = sigma if prefix == "sd_" else 1.0
        ok = np.abs(a - b) <= rtol * np.abs(b) + atol * scale
        if prefix == "cor_":  # a correlation of a near-zero SD is not identified
            sds = slow[[c for c in slow.columns if c.startswith("sd_")]].to_numpy()
            ok |= (sds.min(axis=1, keepdims=True) < 1e-3 * sigma)
        assert ok.all(), (prefix, a[~ok.all(axis=1)], b[~ok.all(axis=1)])


def test_bootstrap_engine_choice_is_checked(fits):
    from bayeslmm.inference.bootstrap import bootstrap

    with pytest.raises(ValueError, match="engine"):
        bootstrap(fits["sleepstudy"], n=2, engine="fast")
    with pytest.raises(ValueError, match="cores must be a positive integer"):
        bootstrap(fits["sleepstudy"], n=2, cores=0)
    with pytest.raises(ValueError, match="one random-effects block"):
        bootstrap(fits["nested"], n=2, engine="compiled")


def test_compare_reml_shows_reml_intervals(fits):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bayes = bayeslmm.fit("Reaction ~ Days + (Days | Subject)", load("sleepstudy"),
                             draws=200, tune=200, chains=2, random_seed=1, progressbar=False)
    table = bayes.compare_reml(fits["sleepstudy"])
    profile = fits["sleepstudy"].confint("profile")
    np.testing.assert_allclose(table["reml lower 95%"], profile.loc[table.index, "lower"])
    assert "reml lower 95%" not in bayes.compare_reml(fits["sleepstudy"], reml_interval=None)
