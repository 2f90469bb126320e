"""The marginal sampler with q x q blocks after the largest one (issue 10: every Gaussian
LMM whose dense rest fits), against a dense Gaussian, the numpy reference, finite
differences and REML."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from scipy.stats import multivariate_normal

import bayeslmm
from bayeslmm.bayes.kernel_cfunc import marginal_logp_grad
from bayeslmm.bayes.marginal import MarginalStructure
from bayeslmm.bayes.model import Model

from .conftest import assert_draws_match_reml, central_differences


def _crossed(seed=4) -> pd.DataFrame:
    """Subjects x items with a correlated slope on both (a small kb07), 3 x 3 on items."""
    rng = np.random.default_rng(seed)
    rows = []
    for s in range(14):
        for i in range(9):
            x, z = rng.choice([-1.0, 1.0]), rng.normal()
            rows.append((f"s{s}", f"i{i}", x, z, 1 + 0.5 * x + rng.normal(0, 0.7) * (1 + x)
                         + 0.3 * (i % 3) * z + rng.normal()))
    return pd.DataFrame(rows, columns=["subj", "item", "x", "z", "y"])


FORMULAS = ["y ~ x + (x | subj) + (x | item)",
            "y ~ x + z + (1 | subj) + (1 + x + z | item)",
            "y ~ x + (x | subj) + (1 | item) + (0 + x | item)"]


def _factors(structure, rng, scale):
    chol = np.tril(rng.uniform(0.2, 1.0, (structure.q1, structure.q1))) * scale
    rest = [np.tril(rng.uniform(0.2, 1.0, (q, q))) * scale for q in structure.rest_q]
    return chol, rest


def _packed(rest):
    return np.ascontiguousarray(np.concatenate([f.ravel() for f in rest]))


@pytest.mark.parametrize("formula", FORMULAS)
def test_loglik_matches_dense_gaussian(formula):
    spec = bayeslmm.build_spec(formula, _crossed())
    structure = MarginalStructure(spec)
    assert structure.eligible and any(q > 1 for q in structure.rest_q) or \
        formula.endswith("(0 + x | item)")
    rng = np.random.default_rng(0)
    scale = np.std(spec.y)
    mu0 = rng.normal(size=spec.p) * scale
    s0 = rng.uniform(1, 5, spec.p) * scale
    for _ in range(2):
        chol, rest = _factors(structure, rng, scale / 3)
        sigma = rng.uniform(0.3, 1.0) * scale
        cov = sigma**2 * np.eye(spec.n)
        for block, factor in zip(structure.blocks, [chol, *rest], strict=True):
            z = block.sparse_z().toarray()
            cov += z @ np.kron(np.eye(block.n_levels), factor @ factor.T) @ z.T
        xc = spec.X - structure.center
        cov += xc @ np.diag(s0**2) @ xc.T
        ref = multivariate_normal(xc @ mu0, cov).logpdf(spec.y)
        ours = structure.logp_and_grad(chol, rest, sigma, mu0, 1 / s0)[0]
        constant = 0.5 * spec.p * np.log(2 * np.pi) + np.log(s0).sum()
        assert ours - constant == pytest.approx(ref, abs=1e-8 * abs(ref))


@pytest.mark.parametrize("formula", FORMULAS)
def test_kernel_matches_numpy_reference_and_finite_differences(formula):
    model = Model(formula, _crossed())
    structure, (mu0, inv_scale) = model.marginal_parts()
    rng = np.random.default_rng(1)
    scale = np.std(structure.spec.y)
    chol, rest = _factors(structure, rng, scale)
    sigma = 0.6 * scale
    value, g1, g_rest, g_sigma, beta, b1, _ = structure.logp_and_grad(
        chol, rest, sigma, mu0, inv_scale, modes=True)
    g_chol, g_packed = np.zeros_like(chol), np.zeros(sum(q * q for q in structure.rest_q))
    modes_x, modes_b1 = np.empty(structure.r - 1), np.empty((structure.m1, structure.q1))
    kernel_value, kernel_g_sigma = marginal_logp_grad(
        chol, _packed(rest), sigma, *model.marginal_posterior().kernel_arrays, g_chol, g_packed,
        modes_x, modes_b1)
    assert kernel_value == pytest.approx(value, rel=1e-11)
    np.testing.assert_allclose(g_chol, g1, rtol=1e-8, atol=1e-10 * np.abs(g1).max())
    np.testing.assert_allclose(g_packed, _packed(g_rest), rtol=1e-8,
                               atol=1e-10 * np.abs(g_packed).max())
    assert kernel_g_sigma == pytest.approx(g_sigma, rel=1e-8)
    np.testing.assert_allclose(modes_x[structure.rz:], beta, rtol=1e-9, atol=1e-9 * scale)
    np.testing.assert_allclose(modes_b1, b1, rtol=1e-8, atol=1e-9 * scale)
    # the reference's gradient in the rest factors, by central differences
    step = 1e-6 * scale
    for k, factor in enumerate(rest):
        for a, b in zip(*np.tril_indices(factor.shape[0]), strict=True):
            up = [f.copy() for f in rest]
            down = [f.copy() for f in rest]
            up[k][a, b] += step
            down[k][a, b] -= step
            numeric = (structure.logp_and_grad(chol, up, sigma, mu0, inv_scale)[0]
                       - structure.logp_and_grad(chol, down, sigma, mu0, inv_scale)[0]) / (
                2 * step)
            assert g_rest[k][a, b] == pytest.approx(numeric, rel=1e-5, abs=1e-6)


@pytest.mark.parametrize("formula", FORMULAS)
def test_posterior_gradient_matches_finite_differences(formula):
    post = Model(formula, _crossed()).marginal_posterior()
    rng = np.random.default_rng(2)
    theta = rng.normal(0, 0.4, post.ndim)
    value, grad = post.logp_and_grad(theta)
    assert np.isfinite(value)
    numeric = central_differences(post.logp_and_grad, theta)
    np.testing.assert_allclose(grad, numeric, rtol=1e-5, atol=1e-5 * np.abs(grad).max())


@pytest.mark.parametrize("use_kernel", [False, True])
def test_conditional_means_are_reml_estimates_at_reml_parameters(use_kernel):
    """Flat priors, (G, sigma) at REML: the conditional draws average to the GLS estimate
    and the BLUPs, for q x q blocks after the first too (numpy and the kernel's draw mode)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reml = bayeslmm.fit(FORMULAS[1], _crossed(), method="reml")
    structure = MarginalStructure(reml.spec)
    covs = reml.covariances()
    draws = 4000
    factors = [np.linalg.cholesky(c + 1e-10 * (np.trace(c) + 1) * np.eye(len(c))) for c in covs]
    chol = np.broadcast_to(factors[0], (draws,) + factors[0].shape)
    rest = [np.broadcast_to(f, (draws,) + f.shape) for f in factors[1:]]
    beta, effects = structure.conditional_draws(
        chol, rest, np.full(draws, reml.sigma), np.zeros(reml.spec.p), np.zeros(reml.spec.p),
        np.random.default_rng(0), use_kernel=use_kernel)
    assert_draws_match_reml(beta, effects, reml, draws, atol_floor=1e-9)


@pytest.mark.parametrize("formula", FORMULAS)
def test_kernel_draws_equal_numpy_draws(formula):
    """The kernel's draw mode reads the same normals as the numpy reference: same draws,
    per-draw factors varying, Normal priors on the fixed effects."""
    model = Model(formula, _crossed())
    structure, (mu0, inv_scale) = model.marginal_parts()
    rng = np.random.default_rng(4)
    scale = np.std(structure.spec.y)
    draws = 7
    pairs = [_factors(structure, rng, scale) for _ in range(draws)]
    chol = np.stack([c for c, _ in pairs])
    rest = [np.stack([r[k] for _, r in pairs]) for k in range(len(pairs[0][1]))]
    sigma = rng.uniform(0.4, 0.9, draws) * scale
    ref = structure.conditional_draws(chol, rest, sigma, mu0, inv_scale,
                                      np.random.default_rng(9), use_kernel=False)
    ours = structure.conditional_draws(chol, rest, sigma, mu0, inv_scale,
                                       np.random.default_rng(9), use_kernel=True)
    np.testing.assert_allclose(ours[0], ref[0], rtol=1e-8, atol=1e-9 * scale)
    for mine, theirs in zip(ours[1], ref[1], strict=True):
        np.testing.assert_allclose(mine, theirs, rtol=1e-8, atol=1e-9 * scale)


def test_marginal_sampler_runs_with_slopes_on_both_factors():
    data = _crossed()
    model = Model(FORMULAS[0], data)
    assert model.choose_sampler() == "marginal"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = model.fit(draws=200, tune=200, chains=2, cores=1, random_seed=3,
                        progressbar=False)
    assert fit.sampler == "marginal"
    post = fit.posterior
    assert post["cor_item"].shape[-2:] == (2, 2) and post["r_item"].shape[-2:] == (9, 2)
    assert np.isfinite(post["r_item"].to_numpy()).all()
    with pytest.raises(ValueError, match="nutpie"):
        model.fit(draws=10, tune=10, chains=1, backend="pymc", sampler="marginal")


def test_kernel_draws_say_when_a_draw_fails():
    """A draw whose system does not factor comes back NaN with a warning, never silently."""
    from bayeslmm.bayes.kernel_cfunc import kernel_draws

    model = Model(FORMULAS[0], _crossed())
    structure, (mu0, inv_scale) = model.marginal_parts()
    rng = np.random.default_rng(5)
    scale = np.std(structure.spec.y)
    chol, rest = _factors(structure, rng, scale)
    draws = 3
    chols = np.repeat(chol[None], draws, axis=0)
    chols[1, 0, 0] = np.nan
    packed = np.repeat(_packed(rest)[None], draws, axis=0)
    noise = rng.standard_normal((draws, structure.r - 1 + structure.m1 * structure.q1))
    with pytest.warns(RuntimeWarning, match="1 of 3 draws"):
        x, b1 = kernel_draws(structure.kernel_arrays(mu0, inv_scale), chols, packed,
                             np.full(draws, 0.5 * scale), noise)
    assert np.isnan(x[1]).all() and np.isfinite(x[[0, 2]]).all()
