"""The marginal sampler's pieces against dense brute force and REML."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import multivariate_normal

import bayeslmm
from bayeslmm.bayes.marginal import MarginalStructure
from bayeslmm.datasets import load

from .conftest import assert_draws_match_reml

CASES = [
    ("sleepstudy", "Reaction ~ Days + (Days | Subject)"),
    ("penicillin", "diameter ~ 1 + (1 | plate) + (1 | sample)"),
    ("pastes", "strength ~ 1 + (1 | batch/cask)"),
    ("orthodont", "distance ~ age * Sex + (age | Subject)"),
    ("ergostool", "effort ~ Type + (1 | Subject)"),
]


def _dense_loglik(spec, structure, chol_first, sd_rest, sigma, mu0, s0):
    """log N(y | X mu0, sigma^2 I + Z G Z' + X Sigma0 X') by brute force (centered X)."""
    cov = sigma**2 * np.eye(spec.n)
    for k, block in enumerate(structure.blocks):
        z = block.sparse_z().toarray()
        g = chol_first @ chol_first.T if k == 0 else np.array([[sd_rest[k - 1] ** 2]])
        cov += z @ np.kron(np.eye(block.n_levels), g) @ z.T
    xc = spec.X - structure.center
    cov += xc @ np.diag(s0**2) @ xc.T
    return multivariate_normal(xc @ mu0, cov).logpdf(spec.y)


@pytest.mark.parametrize("dataset, formula", CASES)
def test_marginal_loglik_matches_dense_gaussian(dataset, formula):
    import pytensor
    import pytensor.tensor as pt

    spec = bayeslmm.build_spec(formula, load(dataset))
    structure = MarginalStructure(spec)
    assert structure.eligible
    rng = np.random.default_rng(3)
    scale = np.std(spec.y)
    lam = pt.matrix("lam")
    sd_rest = pt.vector("sd_rest")
    sigma_t = pt.scalar("sigma")
    mu0 = rng.normal(size=spec.p) * scale
    s0 = rng.uniform(1, 5, spec.p) * scale
    expr = structure.logp(lam, [sd_rest[k] for k in range(len(structure.rest_levels))],
                          sigma_t, mu0, 1 / s0)
    fn = pytensor.function([lam, sd_rest, sigma_t], expr, on_unused_input="ignore")
    # the dropped constant: p/2 log(2 pi) + sum log s0
    constant = 0.5 * spec.p * np.log(2 * np.pi) + np.log(s0).sum()
    for _ in range(3):
        chol = np.tril(rng.uniform(0.2, 1.5, (structure.q1, structure.q1))) * scale / 3
        sds = rng.uniform(0.2, 1.5, len(structure.rest_levels)) * scale / 3
        sigma = rng.uniform(0.3, 1.0) * scale
        ours = fn(chol / sigma, sds, sigma)
        ref = _dense_loglik(spec, structure, chol, sds, sigma, mu0, s0)
        assert ours - constant == pytest.approx(ref, abs=1e-7 * abs(ref))


@pytest.mark.parametrize("use_kernel", [False, True])
def test_conditional_means_are_reml_estimates_at_reml_parameters(use_kernel):
    """With flat priors and (G, sigma) at the REML estimates, E[beta | G, sigma, y] is the
    GLS estimate and E[b | G, sigma, y] the BLUPs: the conditional draws' averages match."""
    for dataset, formula in [("sleepstudy", "Reaction ~ Days + (Days | Subject)"),
                             ("penicillin", "diameter ~ 1 + (1 | plate) + (1 | sample)")]:
        data = load(dataset)
        reml = bayeslmm.fit(formula, data, method="reml")
        structure = MarginalStructure(reml.spec)
        covs = reml.covariances()
        draws = 4000
        chol = np.broadcast_to(np.linalg.cholesky(covs[0]), (draws,) + covs[0].shape)
        sd_rest = np.tile([np.sqrt(c[0, 0]) for c in covs[1:]], (draws, 1))
        sigma = np.full(draws, reml.sigma)
        beta, effects = structure.conditional_draws(
            chol, sd_rest, sigma, np.zeros(reml.spec.p), np.zeros(reml.spec.p),
            np.random.default_rng(0), use_kernel=use_kernel)
        assert_draws_match_reml(beta, effects, reml, draws)


def test_partial_logp_gradient_matches_finite_differences():
    from bayeslmm.bayes.partial import PartialStructure

    spec = bayeslmm.build_spec("diameter ~ 1 + (1 | plate) + (1 | sample)", load("penicillin"))
    partial = PartialStructure(spec)
    assert partial.eligible and partial.first.factor == "plate"
    rng = np.random.default_rng(0)
    y_adj = spec.y - rng.normal(size=spec.n)
    chol, sigma = np.array([[0.8]]), 0.6
    mu0, inv_scale = np.array([20.0]), np.array([0.1])
    value, g_chol, g_sigma, g_y, _ = partial.logp_and_grad(chol, sigma, y_adj, mu0, inv_scale)

    def f(c=chol, s=sigma, y=y_adj):
        return partial.logp_and_grad(c, s, y, mu0, inv_scale)[0]

    eps = 1e-5  # central differences of a value ~ -300: noise ~ 1e-13 * 300 / eps = 3e-6
    for i in range(0, spec.n, 37):
        step = np.zeros(spec.n)
        step[i] = eps
        assert (f(y=y_adj + step) - f(y=y_adj - step)) / (2 * eps) == pytest.approx(
            g_y[i], rel=1e-4, abs=1e-5)
    assert (f(s=sigma + eps) - f(s=sigma - eps)) / (2 * eps) == pytest.approx(g_sigma, rel=1e-4)
    assert (f(c=chol + eps) - f(c=chol - eps)) / (2 * eps) == pytest.approx(g_chol[0, 0],
                                                                            rel=1e-4)
    # with y_adj = y and the kept effects at zero, the partial density is the marginal
    # density of the single-factor model
    single = partial.single
    assert value == pytest.approx(single.logp_and_grad(
        chol, np.zeros(0), sigma, mu0, inv_scale,
        *[a[0] for a in single.statistics_of(y_adj[None])])[0])
