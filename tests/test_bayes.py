"""Bayesian path: model layout, priors, sampling, results.

Sampling tests use few draws; the statistical checks against brms are in
test_bayes_slow.py (marked slow).
"""

from __future__ import annotations

import warnings

import arviz as az
import numpy as np
import pandas as pd
import pytest

import bayeslmm
from bayeslmm.bayes import LKJ, Exponential, HalfNormal, Model, Normal, StudentT
from bayeslmm.datasets import load

FORMULA = "Reaction ~ Days + (Days | Subject)"


# -- priors ------------------------------------------------------------------------------
def test_default_priors_scale_with_data(sleepstudy):
    model = Model(FORMULA, sleepstudy)
    y_sd = sleepstudy.Reaction.std()
    days = model.priors.fixed["Days"]
    assert isinstance(days, Normal) and days.sigma == pytest.approx(
        2.5 * y_sd / sleepstudy.Days.std())
    assert model.priors.fixed["Intercept"].mu == pytest.approx(sleepstudy.Reaction.mean())
    assert model.priors.sd["Subject"]["Intercept"].sigma == pytest.approx(y_sd)
    assert model.priors.cor["Subject"] == LKJ(1.0)
    text = str(model.priors)
    assert "sd" in text and "Subject[Days]" in text and "LKJ(eta=1)" in text


def test_user_priors_by_name_class_and_factor(sleepstudy):
    priors = {"Days": Normal(0, 10), "sd": HalfNormal(50), "sd_Subject[Days]": HalfNormal(5),
              "cor": LKJ(2), "sigma": Exponential(0.1)}
    model = Model(FORMULA, sleepstudy, priors=priors)
    assert model.priors.fixed["Days"] == Normal(0, 10)
    assert model.priors.sd["Subject"]["Intercept"] == HalfNormal(50)
    assert model.priors.sd["Subject"]["Days"] == HalfNormal(5)
    assert model.priors.cor["Subject"].eta == 2
    assert model.priors.sigma == Exponential(0.1)


def test_unknown_prior_name_lists_valid_names(sleepstudy):
    with pytest.raises(ValueError, match=r"unknown prior name\(s\) 'Dayz'.*valid names:.*Days"):
        Model(FORMULA, sleepstudy, priors={"Dayz": Normal(0, 1)})


@pytest.mark.parametrize("make, message", [
    (lambda: Normal(0, -1), "sigma must be positive"),
    (lambda: HalfNormal(float("nan")), "must be a finite number"),
    (lambda: LKJ(0), "eta must be positive"),
    (lambda: StudentT(nu=0), "nu must be positive"),
])
def test_invalid_prior_parameters(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_prior_of_wrong_kind(sleepstudy):
    with pytest.raises(ValueError, match="prior for 'sigma' must be HalfNormal"):
        Model(FORMULA, sleepstudy, priors={"sigma": Normal(0, 1)})
    with pytest.raises(TypeError, match="must be a bayeslmm prior"):
        Model(FORMULA, sleepstudy, priors={"Days": 3.0})


# -- model structure ---------------------------------------------------------------------
def test_pymc_model_layout_for_double_bar_and_crossed():
    model = Model("diameter ~ 1 + (1 | plate) + (1 | sample)", load("penicillin"))
    pm_model = model.pymc_model
    names = {v.name for v in pm_model.deterministics}
    assert {"b", "sd_plate", "sd_sample", "r_plate", "r_sample"} <= names
    assert pm_model.named_vars_to_dims["r_plate"] == ("plate", "plate_term")
    model2 = Model("Reaction ~ Days + (Days || Subject)", load("sleepstudy"))
    dims = model2.pymc_model.named_vars_to_dims
    assert dims["r_Subject"] == ("Subject", "Subject_term")
    assert model2.pymc_model.coords["Subject_term"] == ("Intercept", "Days")
    assert "cor_Subject" not in dims


def test_centered_option_and_unknown_factor(sleepstudy):
    model = Model(FORMULA, sleepstudy, centered={"Subject": True})
    assert "r_Subject_centered" in {v.name for v in model.pymc_model.free_RVs}
    with pytest.raises(ValueError, match="centered= names unknown grouping factor"):
        Model(FORMULA, sleepstudy, centered={"Subj": True})


def test_bad_input_same_errors_as_reml(sleepstudy):
    with pytest.raises(ValueError, match="unknown column 'Dayz'"):
        bayeslmm.fit("Reaction ~ Dayz + (1 | Subject)", sleepstudy)
    with pytest.raises(ValueError, match="draws must be a positive integer"):
        Model(FORMULA, sleepstudy).fit(draws=0)


def test_initial_points_are_near_reml(sleepstudy):
    model = Model(FORMULA, sleepstudy)
    points = model.initial_points(3, np.random.default_rng(0))
    reml = model.fit_reml()
    assert len(points) == 3
    assert not np.allclose(points[0]["sigma"], points[1]["sigma"])
    for point in points:
        assert point["sigma"] == pytest.approx(reml.sigma, rel=0.15)
        assert point["b_slopes"][0] == pytest.approx(reml.fixef["Days"], abs=0.2 * 1.6)


# -- sampling ------------------------------------------------------------------------------
def test_posterior_layout(sleep_fit):
    post = sleep_fit.posterior
    assert set(post.data_vars) == {"b", "sd_Subject", "cor_Subject", "r_Subject", "sigma"}
    assert list(post["b"].coef.values) == ["Intercept", "Days"]
    assert post["r_Subject"].dims == ("chain", "draw", "Subject", "Subject_term")
    assert post["r_Subject"].sel(Subject="308").shape == (2, 150, 2)
    assert post["cor_Subject"].sel(Subject_term="Intercept", Subject_term_2="Days").shape == (
        2, 150)
    assert {"posterior", "sample_stats", "observed_data", "log_likelihood"} <= set(
        sleep_fit.idata.groups())


def test_estimates_agree_with_reml(sleep_fit):
    table = sleep_fit.compare_reml()
    assert list(table["class"]) == ["fixed", "fixed", "sd", "sd", "cor", "sigma"]
    fixed = table[table["class"] == "fixed"]
    assert (np.abs(fixed["mean"] - fixed["reml"]) < 1.0 * fixed["sd"]).all()
    assert not table.loc[["b[Intercept]", "b[Days]", "sigma"], "outside"].any()


def test_summary_and_loo(sleep_fit):
    table = sleep_fit.summary()
    assert {"mean", "sd", "r_hat", "ess_bulk", "ess_tail"} <= set(table.columns)
    assert "cor_Subject[Intercept, Days]" in table.index
    assert "cor_Subject[Days, Intercept]" not in table.index
    assert not any(i.startswith("r_") for i in table.index)
    loo = az.loo(sleep_fit.idata)
    assert np.isfinite(loo.elpd_loo) and -1000 < loo.elpd_loo < -800
    assert "BayesFit" in repr(sleep_fit) and "<table" in sleep_fit._repr_html_()


def test_posterior_predictive_and_predict(sleep_fit, sleepstudy):
    idata = sleep_fit.posterior_predictive(random_seed=1)
    y_rep = idata.posterior_predictive["y"]
    assert y_rep.shape == (2, 150, 180)
    assert abs(float(y_rep.mean()) - sleepstudy.Reaction.mean()) < 5
    new = pd.DataFrame({"Days": [0, 9, 5], "Subject": ["308", "308", "999"]})
    mean = sleep_fit.predict(new, random_seed=1)
    assert mean.dims == ("chain", "draw", "row") and mean.shape == (2, 150, 3)
    fitted_308 = sleep_fit.posterior["b"].sel(coef="Days") + sleep_fit.posterior[
        "r_Subject"].sel(Subject="308", Subject_term="Days")
    slope = (mean.isel(row=1) - mean.isel(row=0)) / 9
    np.testing.assert_allclose(slope, fitted_308, rtol=1e-8)
    zero = sleep_fit.predict(new, new_levels="zero")
    pop = sleep_fit.predict(new, include_random=False)
    np.testing.assert_allclose(zero.isel(row=2), pop.isel(row=2))
    sampled = sleep_fit.predict(new, new_levels="sample", random_seed=2)
    assert float(sampled.isel(row=2).std()) > float(zero.isel(row=2).std()) + 10
    with pytest.raises(ValueError, match="levels of 'Subject' not seen in fitting: \\['999'\\]"):
        sleep_fit.predict(new, new_levels="error")
    response = sleep_fit.predict(new.iloc[:1], kind="response", random_seed=3)
    assert float(response.std()) > float(mean.isel(row=0).std())


@pytest.mark.parametrize("sampler", ["marginal", "full"])
def test_same_seed_same_draws(sleepstudy, sampler):
    kwargs = dict(draws=30, tune=30, chains=1, cores=1, random_seed=11, progressbar=False,
                  sampler=sampler)
    model = Model("Reaction ~ Days + (1 | Subject)", sleepstudy)
    first = model.fit(**kwargs)
    second = model.fit(**kwargs)
    assert first.sampler == sampler
    np.testing.assert_array_equal(first.posterior["b"].values, second.posterior["b"].values)
    np.testing.assert_array_equal(first.posterior["r_Subject"].values,
                                  second.posterior["r_Subject"].values)
    assert set(first.posterior.data_vars) == {"b", "sd_Subject", "r_Subject", "sigma"}


def test_marginal_sampler_on_pymc_and_nutpie_give_the_same_layout(sleepstudy):
    model = Model(FORMULA, sleepstudy)
    kwargs = dict(draws=40, tune=40, chains=2, cores=1, random_seed=3, progressbar=False)
    nutpie_fit = model.fit(**kwargs)
    pymc_fit = model.fit(backend="pymc", **kwargs)
    for fit in (nutpie_fit, pymc_fit):
        assert fit.sampler == "marginal"
        assert set(fit.posterior.data_vars) == {"b", "sd_Subject", "cor_Subject", "r_Subject",
                                                "sigma"}
        assert fit.posterior["cor_Subject"].dims[2:] == ("Subject_term", "Subject_term_2")
        assert {"diverging", "tree_depth", "n_steps"} <= set(fit.idata.sample_stats)
        assert fit.idata.log_likelihood["y"].shape == (2, 40, sleepstudy.shape[0])
    with pytest.raises(ValueError, match="backend must be 'auto', 'nutpie' or 'pymc'"):
        model.fit(backend="stan", **kwargs)
    # a Student t prior on beta: the full sampler, on nutpie too (bayes/full_nutpie.py)
    heavy_tailed = Model(FORMULA, sleepstudy, priors={"Intercept": StudentT(3, 250, 50)})
    full = heavy_tailed.fit(backend="nutpie", **kwargs)
    assert full.sampler == "full" and {"diverging", "tree_depth"} <= set(full.idata.sample_stats)


def test_auto_sampler_choice(sleepstudy):
    model = Model(FORMULA, sleepstudy)
    assert model.choose_sampler() == "marginal" and model.choose_sampler("full") == "full"
    heavy_tailed = Model(FORMULA, sleepstudy, priors={"Intercept": StudentT(3, 250, 50)})
    assert heavy_tailed.choose_sampler() == "full"
    with pytest.raises(ValueError, match="sampler='marginal' is not available.*Normal or Flat"):
        heavy_tailed.choose_sampler("marginal")
    with pytest.raises(ValueError, match="sampler must be 'auto', 'marginal', 'partial' or"):
        model.choose_sampler("gibbs")
    with pytest.raises(ValueError, match="sampler='partial' is not available.*second random"):
        model.choose_sampler("partial")
    insteval = Model("y ~ 1 + service + (1 | s) + (1 | d) + (1 | dept:service)",
                     load("insteval"))
    assert "add up to at most a few hundred" in insteval.marginal_unavailable()
    assert insteval.choose_sampler() == "partial"
    assert insteval.partial_centered() == {"s": True, "d": True, "dept:service": True}


def test_partial_sampler_with_a_correlated_kept_block_runs_on_nutpie(monkeypatch):
    """A 2 x 2 kept block (issue 10: never PyMC's Python loop for the partial sampler):
    the default backend samples it with nutpie, and the kept factor's draws come back with
    both terms."""
    import pymc as pm

    from .conftest import three_factor_data

    def no_pymc(*args, **kwargs):
        raise AssertionError("pm.sample called")

    monkeypatch.setattr(pm, "sample", no_pymc)
    model = Model("y ~ x + (1 | g1) + (1 + x | g2) + (1 | g3)", three_factor_data())
    fit = model.fit(sampler="partial", draws=30, tune=30, chains=1, random_seed=2,
                    progressbar=False)
    assert fit.sampler == "partial"
    assert fit.posterior["r_g2"].shape == (1, 30, 8, 2)
    assert fit.posterior["cor_g2"].shape == (1, 30, 2, 2)
    assert fit.posterior["r_g1"].shape == (1, 30, 40, 1)


@pytest.mark.parametrize("backend", ["nutpie", "pymc"])
def test_partial_sampler_integrates_small_blocks(backend, monkeypatch):
    """Where the other blocks do not all fit the dense rest (MAX_REST patched down to 20),
    the default is the partial sampler, with h (which g2 is nested in) integrated out with
    the first: NUTS keeps g2 only, and h's effects, g1's and beta are drawn from their
    exact conditional; both backends give every variable, and the draws of h's effects are
    near its REML modes (3 levels of ~100 rows: the conditional mean follows)."""
    from bayeslmm.bayes import marginal as marginal_module

    from .conftest import nested_factor_data

    monkeypatch.setattr(marginal_module, "MAX_REST", 20)
    model = Model("y ~ x + (1 | g1) + (1 + x | g2) + (1 | h)", nested_factor_data())
    assert model.choose_sampler() == "partial"
    assert [b.factor for b in model.partial_structure().integrated] == ["h"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = model.fit(draws=100, tune=150, chains=2, random_seed=3, progressbar=False,
                        backend=backend)
    assert fit.sampler == "partial"
    post = fit.posterior
    assert post["r_g2"].shape == (2, 100, 8, 2) and post["r_h"].shape == (2, 100, 3, 1)
    assert post["r_g1"].shape == (2, 100, 40, 1) and post["sd_h"].shape[:2] == (2, 100)
    reml = model.fit_reml()
    modes = dict(zip([b.factor for b in reml.blocks], reml.effects, strict=True))["h"]
    np.testing.assert_allclose(post["r_h"].mean(("chain", "draw")).to_numpy(), modes,
                               atol=0.15)


def test_user_extended_model_is_sampled_in_full(sleepstudy):
    import pymc as pm

    model = Model(FORMULA, sleepstudy)
    with model.pymc_model:
        pm.Deterministic("days_times_two", 2 * model.pymc_model["b"][1])
    assert model.choose_sampler() == "full"


def test_factor_named_like_a_variable_gets_its_own_level_dim():
    rng = np.random.default_rng(0)
    data = pd.DataFrame({"y": rng.normal(size=120), "b": np.repeat(np.arange(12), 10)})
    fit = bayeslmm.fit("y ~ 1 + (1 | b)", data, draws=40, tune=40, chains=1, cores=1,
                       progressbar=False, random_seed=1)
    assert fit.posterior["r_b"].dims == ("chain", "draw", "b_level", "b_term")
    assert fit.posterior["b"].dims == ("chain", "draw", "coef")
