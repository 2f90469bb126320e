"""The residual marginal sampler (issue 11): its likelihood against a dense multivariate
normal with beta integrated analytically, its gradients against finite differences, its
conditional draws against the exact Gaussian posterior, which models take it, and its
posterior against the full sampler's."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from scipy.stats import multivariate_normal

import bayeslmm
from bayeslmm.datasets import load
from bayeslmm.residual import ResidualModel, parse_residual
from bayeslmm.residual.loglik_kernel import KernelLayout
from bayeslmm.residual.marginal_kernel import gls_conditional_draws, gls_marginal_logp


@pytest.fixture(scope="module")
def orthodont() -> pd.DataFrame:
    d = load("orthodont")
    return d.drop(index=[3, 17, 40, 41, 90]).reset_index(drop=True)  # unbalanced


@pytest.fixture(scope="module")
def problem(orthodont):
    """Random X, Z, y, Sigma, G and prior on orthodont's unbalanced layout, and the dense
    n x n matrices of the same model."""
    d = orthodont
    model = ResidualModel(parse_residual("us(age | Subject)"), d)
    lay = KernelLayout.of(model)
    n = len(d)
    rng = np.random.default_rng(0)
    x = np.column_stack([np.ones(n), d.age - d.age.mean(), rng.normal(size=n)])
    z = np.column_stack([np.ones(n), d.age - 11.0])
    y = rng.normal(size=n)
    a = rng.normal(size=(4, 4))
    cov = a @ a.T + np.eye(4)
    b = rng.normal(size=(2, 2))
    g = b @ b.T + 0.1 * np.eye(2)
    mu0 = np.array([0.3, -0.1, 0.2])
    prec = np.array([0.5, 2.0, 1.0])
    pos = d.age.map({8: 0, 10: 1, 12: 2, 14: 3}).to_numpy()
    same = d.Subject.to_numpy()[:, None] == d.Subject.to_numpy()[None, :]
    v = (cov[np.ix_(pos, pos)] + z @ g @ z.T) * same
    args = (lay.rows, lay.group_start, lay.group_pattern, lay.pattern_pos, lay.pattern_start,
            lay.max_size)
    return dict(x=x, z=z, y=y, cov=cov, g=g, mu0=mu0, prec=prec, v=v, same=same, lay=lay,
                args=args, e0=y - x @ mu0)


def _logp(pr, cov=None, g=None, z=None, prec=None):
    z = pr["z"] if z is None else z
    g = pr["g"] if g is None else g
    return gls_marginal_logp(pr["e0"], pr["x"], z, pr["cov"] if cov is None else cov, g,
                             pr["prec"] if prec is None else prec, *pr["args"])


def test_value_is_the_dense_marginal_normal(problem):
    pr = problem
    k = pr["v"] + pr["x"] @ np.diag(1.0 / pr["prec"]) @ pr["x"].T
    want = multivariate_normal(pr["x"] @ pr["mu0"], k).logpdf(pr["y"])
    assert _logp(pr)[0] == pytest.approx(want, rel=1e-12)
    # without random effects, one flat prior: equal up to the flat prior's constant, so
    # differences between two Sigmas match the dense ones
    z0, g0 = np.zeros((len(pr["y"]), 0)), np.zeros((0, 0))
    prec = pr["prec"].copy()
    prec[1] = 0.0
    cov2 = pr["cov"] + 0.3 * np.eye(4)

    def dense(cov):  # -1/2 (log|V| + log|A| + e'V^-1 e - c'A^-1 c), A = X'V^-1 X + P
        v = _dense_v(pr, cov)
        vi = np.linalg.inv(v)
        a = pr["x"].T @ vi @ pr["x"] + np.diag(prec)
        c = pr["x"].T @ vi @ pr["e0"]
        return -0.5 * (np.linalg.slogdet(v)[1] + np.linalg.slogdet(a)[1]
                       + pr["e0"] @ vi @ pr["e0"] - c @ np.linalg.solve(a, c))

    got = (_logp(pr, cov2, g0, z0, prec)[0] - _logp(pr, pr["cov"], g0, z0, prec)[0])
    assert got == pytest.approx(dense(cov2) - dense(pr["cov"]), rel=1e-9)


def _dense_v(pr, cov):
    ages = pr["x"][:, 1]
    levels = np.unique(np.round(ages, 8))
    pos = np.searchsorted(levels, np.round(ages, 8))
    return cov[np.ix_(pos, pos)] * pr["same"]


@pytest.mark.parametrize("which", ["cov", "g"])
def test_gradient_matches_finite_differences(problem, which):
    pr = problem
    _, grad_cov, grad_g = _logp(pr)
    base = pr[which]
    grad = grad_cov if which == "cov" else grad_g
    h = 1e-6
    for i in range(base.shape[0]):
        for j in range(i + 1):
            up, down = base.copy(), base.copy()
            up[i, j] += h
            down[i, j] -= h
            if i != j:  # the matrix is symmetric: move both entries
                up[j, i] += h
                down[j, i] -= h
            kw = {which: up}
            fd = (_logp(pr, **kw)[0] - _logp(pr, **{which: down})[0]) / (2 * h)
            want = grad[i, j] + (grad[j, i] if i != j else 0.0)
            assert fd == pytest.approx(want, rel=1e-5, abs=1e-6)


def test_not_positive_definite_is_minus_infinity(problem):
    assert _logp(problem, cov=-np.eye(4))[0] == -np.inf


def test_conditional_draws_have_the_exact_posterior_moments(problem):
    """beta | Sigma, G, y and b_i | Sigma, G, y against the dense Gaussian posterior."""
    pr = problem
    n = len(pr["y"])
    lay = pr["lay"]
    n_groups = lay.group_start.size - 1
    draws = 20_000
    rng = np.random.default_rng(1)
    beta, b = gls_conditional_draws(
        pr["e0"], pr["x"], pr["z"], np.repeat(pr["cov"][None], draws, 0),
        np.repeat(pr["g"][None], draws, 0), pr["prec"], *pr["args"],
        rng.standard_normal((draws, 3)), rng.standard_normal((draws, n_groups, 2)),
        rng.standard_normal((draws, n)))
    k = pr["v"] + pr["x"] @ np.diag(1.0 / pr["prec"]) @ pr["x"].T
    ki = np.linalg.inv(k)
    # beta - mu0 and y - X mu0 are jointly normal: Cov(beta, y) = B0 X'
    c_beta = np.diag(1.0 / pr["prec"]) @ pr["x"].T
    mean = c_beta @ ki @ pr["e0"]
    var = np.diag(1.0 / pr["prec"]) - c_beta @ ki @ c_beta.T
    se = np.sqrt(np.diag(var) / draws)
    assert np.all(np.abs(beta.mean(0) - mean) < 4.5 * se)
    np.testing.assert_allclose(np.cov(beta.T), var, rtol=0.05, atol=0.05 * var.max())
    for gi in (0, 7, n_groups - 1):
        rows = lay.rows[lay.group_start[gi]:lay.group_start[gi + 1]]
        zs = np.zeros((n, 2))
        zs[rows] = pr["z"][rows]
        c_b = pr["g"] @ zs.T
        mean_b = c_b @ ki @ pr["e0"]
        var_b = pr["g"] - c_b @ ki @ c_b.T
        se_b = np.sqrt(np.diag(var_b) / draws)
        assert np.all(np.abs(b[:, gi].mean(0) - mean_b) < 4.5 * se_b)
        np.testing.assert_allclose(np.cov(b[:, gi].T), var_b, rtol=0.05,
                                   atol=0.05 * var_b.max())


def test_which_models_take_it(orthodont):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gls = bayeslmm.Model("distance ~ age * Sex", orthodont, residual="us(age | Subject)")
        nested = bayeslmm.Model("distance ~ age + (age | Subject)", orthodont,
                                residual="ar1(age | Subject)")
        car1 = bayeslmm.Model("distance ~ age", orthodont.assign(t=orthodont.age + 0.1),
                              residual="car1(t | Subject)")
        crossed = bayeslmm.Model("distance ~ age + (1 | Sex)", orthodont,
                                 residual="cs(age | Subject)")
        levels = bayeslmm.Model("distance ~ age + (1 | Subject)", orthodont, sigma="~ Sex")
    assert gls.choose_sampler() == "marginal" and nested.choose_sampler() == "marginal"
    for model, pattern in ((car1, "car1"), (crossed, "not the residual structure's group"),
                           (levels, "without a residual structure")):
        assert model.choose_sampler() == "full"
        with pytest.raises(ValueError, match=pattern):
            model.choose_sampler("marginal")


def test_large_gls_without_random_effects_keeps_the_full_sampler():
    rng = np.random.default_rng(0)
    n_id, n_visit = 1000, 10
    data = pd.DataFrame({"id": np.repeat(np.arange(n_id), n_visit),
                         "visit": np.tile(np.arange(n_visit), n_id)})
    for k in range(20):
        data[f"x{k}"] = rng.normal(size=len(data))
    data["y"] = rng.normal(size=len(data))
    formula = "y ~ " + " + ".join(f"x{k}" for k in range(20))
    model = bayeslmm.Model(formula, data, residual="ar1(visit | id)")
    assert model.residual_marginal().reason is None
    assert model.choose_sampler() == "full"          # n p (p + m) = 10,000 x 21 x 31
    assert model.choose_sampler("marginal") == "marginal"


def test_marginal_and_full_samplers_agree(orthodont):
    """Same model, same priors: posterior means of beta, Sigma's parameters and the random
    effects within Monte Carlo error (4 combined MCSEs) of each other."""
    import arviz as az

    formula, residual = "distance ~ age * Sex + (1 | Subject)", "cs(age | Subject)"
    fits = {}
    for sampler in ("marginal", "full"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fits[sampler] = bayeslmm.fit(formula, orthodont, residual=residual,
                                         sampler=sampler, draws=500, tune=500, chains=2,
                                         random_seed=4, progressbar=False)
    assert fits["marginal"].sampler == "marginal"
    post_m, post_f = fits["marginal"].posterior, fits["full"].posterior
    assert post_m["r_Subject"].dims == post_f["r_Subject"].dims
    for name in ("b", "sigma", "rho", "sd_Subject", "r_Subject"):
        m = post_m[name].mean(("chain", "draw")).to_numpy().ravel()
        f = post_f[name].mean(("chain", "draw")).to_numpy().ravel()
        se = np.hypot(az.mcse(post_m[[name]])[name].to_numpy().ravel(),
                      az.mcse(post_f[[name]])[name].to_numpy().ravel())
        assert np.all(np.abs(m - f) < 4 * se + 1e-3), (name, m, f, se)
    with pytest.raises(ValueError, match="residual structures"):
        fits["marginal"].log_marginal_likelihood()


def test_marginal_sampler_on_pymcs_nuts(orthodont):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = bayeslmm.fit("distance ~ age * Sex", orthodont, residual="ar1(age | Subject)",
                           sampler="marginal", backend="pymc", draws=100, tune=100, chains=1,
                           random_seed=2, progressbar=False)
    assert fit.sampler == "marginal"
    assert fit.posterior["b"].shape == (1, 100, 4)
    assert np.isfinite(fit.posterior["b"]).all() and "phi" in fit.posterior
