"""Bayesian fits with residual structures (issue 11): the likelihood against a dense
multivariate normal, posterior means against REML on the same data under the default weak
priors, the posterior layout, priors by name, LOO by group, PPC, save/load."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from scipy.stats import multivariate_normal

import bayeslmm
from bayeslmm.datasets import load
from bayeslmm.residual import ResidualModel, parse_residual
from bayeslmm.residual.loglik import car1_logp, occasion_logp

DRAWS = dict(draws=250, tune=250, chains=2, random_seed=3, progressbar=False)


@pytest.fixture(scope="module")
def orthodont() -> pd.DataFrame:
    d = load("orthodont")
    rng = np.random.default_rng(5)
    d = d.drop(index=[3, 17, 40, 41, 90]).reset_index(drop=True)  # unbalanced
    d["t"] = d["age"] + rng.uniform(-0.4, 0.4, len(d))
    return d


def test_likelihood_matches_dense_normal(orthodont):
    rng = np.random.default_rng(0)
    a = rng.normal(size=(4, 4))
    sigma_full = a @ a.T + np.eye(4)
    e = rng.normal(size=len(orthodont))
    model = ResidualModel(parse_residual("us(age | Subject)"), orthodont)
    ages = {8: 0, 10: 1, 12: 2, 14: 3}
    want = sum(multivariate_normal(np.zeros(len(r)), sigma_full[np.ix_(
        [ages[v] for v in r.age], [ages[v] for v in r.age])]).logpdf(e[r.index])
        for _, r in orthodont.groupby("Subject", observed=True))
    value, grad_e, grad_s = occasion_logp(model, e, sigma_full)
    assert value == pytest.approx(want, rel=1e-12)
    h = 1e-6
    for i in range(5):
        up, down = e.copy(), e.copy()
        up[i] += h
        down[i] -= h
        fd = (occasion_logp(model, up, sigma_full)[0] - occasion_logp(model, down,
                                                                        sigma_full)[0]) / (2 * h)
        assert fd == pytest.approx(grad_e[i], abs=1e-6)
    car = ResidualModel(parse_residual("car1(t | Subject)"), orthodont)
    want = sum(multivariate_normal(np.zeros(len(r)), 1.7**2 * 0.55 ** np.abs(
        np.subtract.outer(r.t.to_numpy(), r.t.to_numpy()))).logpdf(e[r.index])
        for _, r in orthodont.groupby("Subject", observed=True))
    value, _g, g_sigma, g_phi = car1_logp(car, e, 1.7, 0.55)
    assert value == pytest.approx(want, rel=1e-12)
    fd = (car1_logp(car, e, 1.7, 0.55 + h)[0] - car1_logp(car, e, 1.7, 0.55 - h)[0]) / (2 * h)
    assert fd == pytest.approx(g_phi, rel=1e-6)


CASES = {
    "ar1": ("distance ~ age * Sex", "ar1(age | Subject)", None),
    "us": ("distance ~ age * Sex", "us(age | Subject)", None),
    "cs_re": ("distance ~ age * Sex + (1 | Subject)", "cs(age | Subject)", None),
    "car1": ("distance ~ age * Sex", "car1(t | Subject)", None),
    "varident": ("distance ~ age * Sex + (1 | Subject)", None, "~ Sex"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_posterior_agrees_with_reml(case, orthodont):
    formula, residual, sigma = CASES[case]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = bayeslmm.fit(formula, orthodont, residual=residual, sigma=sigma, **DRAWS)
    table = fit.compare_reml()
    assert (table["class"] == "residual").any() or sigma is not None
    # fixed effects: REML within 3 posterior SDs of the posterior mean
    fixed = table[table["class"] == "fixed"]
    assert ((fixed["mean"] - fixed["reml"]).abs() < 3 * fixed["sd"]).all(), fixed
    residual_rows = table[table["class"] == "residual"]
    assert ((residual_rows["mean"] - residual_rows["reml"]).abs()
            < 3 * residual_rows["sd"]).all(), residual_rows
    assert fit.diagnostics()["divergences"] <= 5


def test_layout_priors_loo_ppc_and_save(orthodont, tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = bayeslmm.Model("distance ~ age * Sex", orthodont, residual="us(age | Subject)",
                               priors={"cor_residual": bayeslmm.LKJ(2.0)})
        assert "cor_residual" in str(model.priors) and "eta=2" in str(model.priors)
        fit = model.fit(**DRAWS)
    post = fit.posterior
    assert post["sigma"].dims == ("chain", "draw", "occasion")
    assert list(post["sigma"].occasion.values) == ["8", "10", "12", "14"]
    assert post["cor_residual"].shape[-2:] == (4, 4)
    assert fit.idata.log_likelihood["y"].dims == ("chain", "draw", "group")
    assert fit.residual_cov().shape == (4, 4)
    idata = fit.posterior_predictive(random_seed=1)
    y_rep = idata.posterior_predictive["y"].to_numpy()
    assert y_rep.shape[-1] == len(orthodont)
    # replicated data vary like the data: SD within a factor 1.5
    assert 0.67 < y_rep.std(axis=-1).mean() / orthodont.distance.std() < 1.5
    path = fit.to_netcdf(tmp_path / "fit.nc")
    again = bayeslmm.load(path)
    assert again.model.residual_model.term.kind == "us"
    np.testing.assert_allclose(again.residual_cov(), fit.residual_cov())


def test_priors_for_residual_parameters_are_checked(orthodont):
    with pytest.raises(ValueError, match="must lie within"):
        bayeslmm.Model("distance ~ age", orthodont, residual="ar1(age | Subject)",
                       priors={"phi": bayeslmm.Uniform(-2.0, 1.0)})
    with pytest.raises(ValueError, match="must be Uniform"):
        bayeslmm.Model("distance ~ age", orthodont, residual="ar1(age | Subject)",
                       priors={"phi": bayeslmm.Normal(0, 1)})
    with pytest.raises(ValueError, match="unknown prior name"):
        bayeslmm.Model("distance ~ age", orthodont, residual="ar1(age | Subject)",
                       priors={"rho": bayeslmm.Uniform(0, 1)})


def test_numba_kernel_matches_numpy(orthodont):
    from bayeslmm.residual.loglik_kernel import KernelLayout, occasion_logp_kernel

    model = ResidualModel(parse_residual("toep(age | Subject)"), orthodont)
    layout = KernelLayout.of(model)
    rng = np.random.default_rng(2)
    a = rng.normal(size=(4, 4))
    sigma_full = a @ a.T + 0.5 * np.eye(4)
    e = rng.normal(size=len(orthodont))
    want = occasion_logp(model, e, sigma_full)
    got = occasion_logp_kernel(e, sigma_full, layout.rows, layout.group_start,
                               layout.group_pattern, layout.pattern_pos, layout.pattern_start,
                               layout.pattern_count, layout.max_size)
    assert got[0] == pytest.approx(want[0], rel=1e-12)
    np.testing.assert_allclose(got[1], want[1], atol=1e-12)
    np.testing.assert_allclose(got[2], want[2], atol=1e-12)
    bad = -np.eye(4)
    assert occasion_logp_kernel(e, bad, layout.rows, layout.group_start, layout.group_pattern,
                                layout.pattern_pos, layout.pattern_start, layout.pattern_count,
                                layout.max_size)[0] == -np.inf


@pytest.mark.parametrize("residual", ["us(age | Subject)", "diag(age | Subject)",
                                      "ar1(visit | Subject)", "toep(age | Subject)"])
def test_pointwise_loglik_kernel_matches_whitening(residual, orthodont, monkeypatch):
    """The numba per-group log likelihood (all draws at once) equals the per-draw whitening
    loop it replaces for the likelihood Op's structures."""
    from bayeslmm.bayes.result import BayesFit

    data = orthodont.assign(visit=(orthodont["age"] - 8) // 2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = bayeslmm.fit("distance ~ age * Sex", data, residual=residual,
                           draws=30, tune=50, chains=1, random_seed=1, progressbar=False)
    fast = fit._structured_loglik()["y"].to_numpy()
    monkeypatch.setattr(BayesFit, "_occasion_covariances", lambda self: None)
    slow = fit._structured_loglik()["y"].to_numpy()
    np.testing.assert_allclose(fast, slow, rtol=1e-10, atol=1e-10)
