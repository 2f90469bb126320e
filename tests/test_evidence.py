"""log marginal likelihood and Bayes factors (issue 12): the normalized density against a
dense multivariate normal with scipy's normalized priors, the importance-sampling integral
against 2-D quadrature on a two-parameter model."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy import special, stats
from scipy.special import logsumexp

import bayeslmm
from bayeslmm.bayes import Flat, Normal
from bayeslmm.bayes.evidence import normalizing_constant
from bayeslmm.datasets import load

FAST = dict(draws=500, tune=500, chains=2, random_seed=1, progressbar=False)


def test_normalized_density_matches_dense_normal():
    data = load("sleepstudy")
    model = bayeslmm.Model("Reaction ~ Days + (Days | Subject)", data,
                           priors={"Intercept": Normal(250, 50), "Days": Normal(0, 20)})
    post = model.marginal_posterior()
    constant = normalizing_constant(model)
    spec = model.spec
    X = spec.X.copy()
    X[:, 1] -= X[:, 1].mean()           # the priors are on centered predictors
    block = spec.blocks[0]
    Z = block.sparse_z().toarray()
    mu0, s0 = np.array([250.0, 0.0]), np.array([50.0, 20.0])
    rng = np.random.default_rng(1)
    for _ in range(3):
        theta = np.array([np.log(25), np.log(6), 0.3, np.log(25)]) + rng.normal(0, 0.2, 4)
        sd, z, sigma = np.exp(theta[:2]), np.tanh(theta[2]), np.exp(theta[3])
        G = np.outer(sd, sd) * np.array([[1, z], [z, 1]])
        V = (sigma**2 * np.eye(spec.n) + Z @ np.kron(np.eye(block.n_levels), G) @ Z.T
             + X @ np.diag(s0**2) @ X.T)
        want = stats.multivariate_normal(X @ mu0, V).logpdf(spec.y)
        for term, s in zip(block.terms, sd, strict=True):
            prior = model.priors.sd["Subject"][term]
            want += stats.t.logpdf(s, prior.nu, scale=prior.sigma) + np.log(2) + np.log(s)
        prior = model.priors.sigma
        want += stats.t.logpdf(sigma, prior.nu, scale=prior.sigma) + np.log(2) + np.log(sigma)
        want += np.log(1 - z * z) - special.betaln(1.0, 1.0) - np.log(2)   # LKJ(1), q = 2
        assert post.logp_and_grad(theta)[0] + constant == pytest.approx(want, abs=1e-8)


def test_importance_sampling_matches_quadrature():
    """y ~ 1 + (1 | Batch) on dyestuff: two covariance parameters, integrated on a grid."""
    data = load("dyestuff")
    priors = {"Intercept": Normal(1500, 200)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = bayeslmm.fit("Yield ~ 1 + (1 | Batch)", data, priors=priors, **FAST)
    value, mcse = fit.log_marginal_likelihood()
    assert mcse < 0.05
    post = fit.model.marginal_posterior()
    constant = normalizing_constant(fit.model)
    grid_sd = np.linspace(np.log(1.0), np.log(400.0), 300)
    grid_sigma = np.linspace(np.log(20.0), np.log(150.0), 300)
    cells = np.array([[post.logp_and_grad(np.array([a, b]))[0] for b in grid_sigma]
                      for a in grid_sd]) + constant
    step = (grid_sd[1] - grid_sd[0]) * (grid_sigma[1] - grid_sigma[0])
    quadrature = logsumexp(cells) + np.log(step)
    assert value == pytest.approx(quadrature, abs=max(4 * mcse, 0.02))


def test_bayes_factor_prefers_the_random_slope():
    data = load("sleepstudy")
    priors = {"Intercept": Normal(250, 50), "Days": Normal(0, 20)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        slope = bayeslmm.fit("Reaction ~ Days + (Days | Subject)", data, priors=priors, **FAST)
        intercept = bayeslmm.fit("Reaction ~ Days + (1 | Subject)", data, priors=priors, **FAST)
    log_bf, mcse = bayeslmm.bayes_factor(slope, intercept)
    assert log_bf > 10 and mcse < 0.05
    again = slope.log_marginal_likelihood(random_seed=0)
    assert again == slope.log_marginal_likelihood(random_seed=0)   # reproducible


def test_improper_priors_are_refused():
    data = load("dyestuff")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = bayeslmm.fit("Yield ~ 1 + (1 | Batch)", data, priors={"Intercept": Flat()},
                           **FAST)
    with pytest.raises(ValueError, match="proper"):
        fit.log_marginal_likelihood()


def test_matches_bridgesampling_on_brms():
    """brms 2.18 + bridgesampling 1.1 on the same model and priors (goldens:
    tests/golden/evidence_bridgesampling.json, tests/golden/scripts/evidence_bridgesampling.R):
    4 x 10,000 Stan draws and 5 bridge repetitions there, seconds here."""
    import json

    from bayeslmm.bayes import LKJ, HalfStudentT

    from .conftest import GOLDEN

    ref = json.loads((GOLDEN / "evidence_bridgesampling.json").read_text())
    priors = {"Intercept": Normal(250, 50), "Days": Normal(0, 20), "sd": HalfStudentT(3, 30),
              "sigma": HalfStudentT(3, 30), "cor": LKJ(1)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = bayeslmm.fit("Reaction ~ Days + (Days | Subject)", load("sleepstudy"),
                           priors=priors, draws=1000, tune=1000, chains=4, random_seed=1,
                           progressbar=False)
    value, mcse = fit.log_marginal_likelihood()
    tolerance = 3 * np.hypot(mcse, ref["logml_sd"]) + 0.01
    assert abs(value - ref["logml_median"]) < tolerance, (value, ref["logml_median"])
