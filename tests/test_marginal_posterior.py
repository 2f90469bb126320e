"""The numba marginal posterior (nutpie backend) against numpy, scipy and finite differences."""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import bayeslmm
from bayeslmm.bayes import kernel_cfunc, unconstrained
from bayeslmm.bayes.jit import entry
from bayeslmm.bayes.kernel_cfunc import marginal_logp_grad  # the C callback, via ctypes
from bayeslmm.bayes.model import Model
from bayeslmm.datasets import load

from .conftest import central_differences, three_factor_data

# jitted-only ("internal") helpers: the tests call Python-callable twins of them
corr_cholesky = entry(unconstrained.corr_cholesky.py_func)

CASES = [
    ("sleepstudy", "Reaction ~ Days + (Days | Subject)"),
    ("penicillin", "diameter ~ 1 + (1 | plate) + (1 | sample)"),
    ("pastes", "strength ~ 1 + (1 | batch/cask)"),
    ("orthodont", "distance ~ age * Sex + (age | Subject)"),
    ("sleepstudy", "Reaction ~ Days + (Days || Subject)"),
]


def _three_by_three() -> pd.DataFrame:
    rng = np.random.default_rng(2)
    rows = [(f"g{g}", "abc"[k], rng.normal(k, 1.0) + g % 3) for g in range(12)
            for k in range(3) for _ in range(3)]
    return pd.DataFrame(rows, columns=["g", "f", "y"])


def _model(dataset, formula, priors=None) -> Model:
    data = _three_by_three() if dataset == "3x3" else load(dataset)
    return Model(formula, data, priors=priors)


def _pivoted(model: Model):
    """The model's marginal posterior with every other SD on the softplus coordinate
    (pivot = sd(y) / 4), whatever its REML fit says."""
    from bayeslmm.bayes.marginal_posterior import MarginalPosterior

    structure, arrays = model.marginal_parts()
    n_sd = structure.q1 + sum(b.q for b in structure.blocks[1:])
    pivots = np.where(np.arange(n_sd) % 2 == 0, np.std(structure.spec.y) / 4, 0.0)
    post = MarginalPosterior(structure, model.priors, *arrays, pivots)
    assert post.pivot[0] > 0 and post.pivot[-1] == 0
    return post


def _random_theta(post, rng) -> np.ndarray:
    scale = np.log(np.std(post.structure.spec.y))
    theta = rng.normal(0, 0.5, post.ndim)
    sds = np.r_[np.arange(post.q1), post.q1 + post.n_cpc + np.arange(post.n_rest + 1)]
    theta[sds] += scale - 1.0
    return theta


@pytest.mark.parametrize("dataset, formula", [*CASES, ("3x3", "y ~ f + (f | g)")])
def test_kernel_matches_numpy_reference(dataset, formula):
    model = _model(dataset, formula)
    structure, (mu0, inv_scale) = model.marginal_parts()
    rng = np.random.default_rng(0)
    scale = np.std(structure.spec.y)
    for _ in range(3):
        chol = np.tril(rng.uniform(0.2, 1.0, (structure.q1, structure.q1))) * scale
        sd_rest = rng.uniform(0.2, 1.0, len(structure.rest_levels)) * scale
        sigma = rng.uniform(0.3, 1.0) * scale
        ref = structure.logp_and_grad(chol, sd_rest, sigma, mu0, inv_scale)
        g_chol, g_rest = np.zeros_like(chol), np.zeros_like(sd_rest)
        modes_x, modes_b1 = np.empty(structure.r - 1), np.empty((structure.m1, structure.q1))
        value, g_sigma = marginal_logp_grad(
            chol, sd_rest, sigma, *model.marginal_posterior().kernel_arrays, g_chol, g_rest,
            modes_x, modes_b1)
        assert value == pytest.approx(ref[0], rel=1e-11)
        np.testing.assert_allclose(g_chol, ref[1], rtol=1e-8, atol=1e-10 * np.abs(ref[1]).max())
        np.testing.assert_allclose(g_rest, ref[2], rtol=1e-8)
        assert g_sigma == pytest.approx(ref[3], rel=1e-8)
        _, _, _, _, beta, b1, _ = structure.logp_and_grad(chol, sd_rest, sigma, mu0, inv_scale,
                                                       modes=True)
        np.testing.assert_allclose(modes_x[structure.rz:], beta, rtol=1e-9, atol=1e-9 * scale)
        np.testing.assert_allclose(modes_b1, b1, rtol=1e-8, atol=1e-9 * scale)


@pytest.mark.parametrize("pivoted", [False, True], ids=["log", "softplus"])
@pytest.mark.parametrize("dataset, formula", [*CASES, ("3x3", "y ~ f + (f | g)")])
def test_gradient_matches_finite_differences(dataset, formula, pivoted):
    model = _model(dataset, formula)
    post = _pivoted(model) if pivoted else model.marginal_posterior()
    rng = np.random.default_rng(1)
    for _ in range(2):
        theta = _random_theta(post, rng)
        value, grad = post.logp_and_grad(theta)
        assert np.isfinite(value)
        numeric = central_differences(post.logp_and_grad, theta)
        np.testing.assert_allclose(grad, numeric, rtol=1e-5, atol=1e-5 * np.abs(grad).max())


def _reference_log_posterior(model, post, theta) -> float:
    """numpy likelihood + scipy prior densities + log Jacobians, for a 2 x 2 first block;
    an SD with pivot c is c log(1 + e^u) (Jacobian c e^u / (1 + e^u)), else e^u."""
    structure, (mu0, inv_scale) = model.marginal_parts()
    first = structure.blocks[0]
    u = np.r_[theta[:2], theta[3:3 + post.n_rest]]
    c = post.pivot[:-1]
    soft = c > 0
    sds = np.where(soft, c * np.log1p(np.exp(u)), np.exp(u))
    log_jac = np.where(soft, np.log(np.where(soft, c, 1.0)) + u - np.log1p(np.exp(u)), u)
    sd, sd_rest = sds[:2], sds[2:]
    r = np.tanh(theta[2])
    chol = np.diag(sd) @ np.linalg.cholesky(np.array([[1, r], [r, 1]]))
    sigma = np.exp(theta[-1])
    value = structure.logp_and_grad(chol, sd_rest, sigma, mu0, inv_scale)[0]
    priors = [model.priors.sd[first.factor][t] for t in first.terms]
    priors += [model.priors.sd[b.factor][b.terms[0]] for b in structure.blocks[1:]]
    priors.append(model.priors.sigma)
    scipy_of = {"HalfNormal": lambda p: stats.halfnorm(scale=p.sigma),
                "HalfStudentT": lambda p: stats.t(p.nu, scale=p.sigma),
                "HalfCauchy": lambda p: stats.halfcauchy(scale=p.beta),
                "Exponential": lambda p: stats.expon(scale=1 / p.lam)}
    for prior, s in zip(priors, [*sd, *sd_rest, sigma], strict=True):
        value += scipy_of[type(prior).__name__](prior).logpdf(s)
    value += log_jac.sum() + theta[-1]  # the SDs' and sigma's Jacobians
    eta = model.priors.cor[first.factor].eta
    value += (eta - 1) * np.log1p(-r * r) + np.log1p(-r * r)  # LKJ(eta) on r, dr/dy
    return value


@pytest.mark.parametrize("priors", [
    None,
    {"sd": bayeslmm.HalfNormal(20), "sigma": bayeslmm.Exponential(0.05), "cor": bayeslmm.LKJ(2)},
    {"sd": bayeslmm.HalfCauchy(10), "Days": bayeslmm.Flat()},
])
@pytest.mark.parametrize("pivoted", [False, True], ids=["log", "softplus"])
def test_log_posterior_is_likelihood_plus_priors(priors, pivoted):
    model = _model("sleepstudy", "Reaction ~ Days + (Days | Subject)", priors)
    post = _pivoted(model) if pivoted else model.marginal_posterior()
    rng = np.random.default_rng(2)
    thetas = [_random_theta(post, rng) for _ in range(4)]
    ours = np.array([post.logp_and_grad(t)[0] for t in thetas])
    ref = np.array([_reference_log_posterior(model, post, t) for t in thetas])
    np.testing.assert_allclose(ours - ours[0], ref - ref[0], atol=1e-8)  # same up to a constant


@pytest.mark.parametrize("q", [2, 3, 4])
def test_lkj_transform_log_jacobian(q):
    """corr_cholesky's density at eta = 1 (LKJ uniform) is log |d r / d y| of the map from y
    to the correlations' strict lower triangle, checked by finite differences."""
    rng = np.random.default_rng(q)
    k = q * (q - 1) // 2
    lower = np.tril_indices(q, -1)

    def corr(y):
        w = np.zeros((q, q))
        logp = corr_cholesky(y, q, 1.0, w)
        return (w @ w.T)[lower], logp, w

    for _ in range(3):
        y = rng.normal(0, 0.7, k)
        _, logp, w = corr(y)
        np.testing.assert_allclose(np.sum(w**2, axis=1), 1.0)  # unit diagonal
        step = 1e-6
        jac = np.column_stack([(corr(y + step * e)[0] - corr(y - step * e)[0]) / (2 * step)
                               for e in np.eye(k)])
        assert logp == pytest.approx(np.linalg.slogdet(jac)[1], abs=1e-6)


def test_c_callback_matches_its_pieces_called_directly():
    """The callback unpacks its one buffer (``callback_abi.pack``) right and calls the kernel
    callback through its address: same value and gradient as transform + kernel +
    add_priors called from Python on the unpacked arrays."""
    from bayeslmm.bayes import posterior_terms as mp
    from bayeslmm.bayes.marginal_cfunc import LOGP_CFUNC

    post = _pivoted(_model("pastes", "strength ~ 1 + (1 | batch/cask)"))
    data = post.packed()
    theta = _random_theta(post, np.random.default_rng(3))
    grad, logp = np.zeros(post.ndim), np.zeros(1)
    pointer = ctypes.POINTER(ctypes.c_double)
    code = LOGP_CFUNC.ctypes(post.ndim, theta.ctypes.data_as(pointer),
                             grad.ctypes.data_as(pointer), logp.ctypes.data_as(pointer),
                             data.ctypes.data_as(ctypes.c_void_p))
    q1 = post.q1
    n_fac = int(sum(q * q for q in post.rest_q))
    w, chol = np.empty((q1, q1)), np.empty((q1, q1))
    w_rest, chol_rest = np.empty(n_fac), np.empty(n_fac)
    sigma, lkj = entry(mp.transform.py_func)(theta, q1, post.n_cpc, post.eta, post.rest_meta,
                                             post.rest_eta, w, chol, w_rest, chol_rest,
                                             post.pivot)
    g_chol, g_rest = np.zeros((q1, q1)), np.zeros(n_fac)
    structure = post.structure
    value, g_sigma = marginal_logp_grad(chol, chol_rest, sigma, *post.kernel_arrays, g_chol, g_rest,
                                        np.empty(structure.r - 1),
                                        np.empty((structure.m1, q1)))
    ref_grad = np.zeros(post.ndim)
    value += lkj + entry(mp.add_priors.py_func)(theta, ref_grad, q1, post.n_cpc, post.eta, w,
                                                g_chol, post.rest_meta, post.rest_eta, w_rest,
                                                g_rest, g_sigma, post.family, post.param_a,
                                                post.param_b, post.pivot)
    assert code == 0
    assert logp[0] == pytest.approx(value, rel=1e-12)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-12)
    theta[-1] = -800.0  # sigma underflows: a divergence for nutpie, not a crash
    code = LOGP_CFUNC.ctypes(post.ndim, theta.ctypes.data_as(pointer),
                             grad.ctypes.data_as(pointer), logp.ctypes.data_as(pointer),
                             data.ctypes.data_as(ctypes.c_void_p))
    assert code == 4 and logp[0] == -np.inf and not grad.any()
    assert post.logp_and_grad(theta)[0] == -np.inf


def test_sd_coordinates_invert_and_pivots_follow_the_units():
    """u <-> s on both coordinates (large and tiny s / c included), and the pivot rule: an
    SD whose REML estimate is below its noise scale gets PIVOT_FRACTION x that scale, in the
    data's units (y x 1e4: pivots x 1e4)."""
    pivot = np.array([0.0, 2.0, 2.0, 2.0, 1e-3])
    sd = np.array([3.0, 1e-9, 5.0, 500.0, 7.0])
    u = unconstrained.u_from_sd(sd, pivot)
    np.testing.assert_allclose(unconstrained.sd_from_u(u, pivot), sd, rtol=1e-12)
    assert u[0] == pytest.approx(np.log(3.0)) and u[3] == pytest.approx(250.0)
    sd_of = entry(unconstrained.sd_of.py_func)
    jacobian = entry(unconstrained.sd_log_jacobian.py_func)
    for x in (-40.0, -3.0, 0.5, 40.0):
        for c in (0.0, 2.0):
            step = 1e-6 * max(1.0, abs(x))
            slope = (sd_of(x + step, c) - sd_of(x - step, c)) / (2 * step)
            log_jac, d_log_jac, ds_du = jacobian(x, c)
            assert ds_du == pytest.approx(slope, rel=1e-6)
            assert log_jac == pytest.approx(np.log(slope), rel=1e-6, abs=1e-9)
            curve = (np.log(jacobian(x + step, c)[2]) - np.log(jacobian(x - step, c)[2]))
            assert d_log_jac == pytest.approx(curve / (2 * step), rel=1e-5, abs=1e-9)
    data = three_factor_data()
    formula = "y ~ x + z + (1 | g1) + (1 + x | g2) + (1 | g3)"
    pivots = Model(formula, data).marginal_posterior().pivot
    scaled = data.assign(y=data.y * 1e4)
    np.testing.assert_allclose(Model(formula, scaled).marginal_posterior().pivot,
                               pivots * 1e4, rtol=1e-6)
    # only g2's slope: its REML SD (0.154) is just under its noise scale (0.159)
    assert list(pivots > 0) == [False, False, True, False, False]
    assert pivots[2] == pytest.approx(unconstrained.PIVOT_FRACTION * 0.159, rel=0.05)
    np.testing.assert_array_equal(
        unconstrained.sd_pivots(np.array([0.0, 1.0, 3.0, 1.0]), np.array([2.0, 2.0, 2.0, 0.0])),
        [0.5, 0.5, 0.0, 0.0])


PARTIAL_CASES = [
    ("penicillin", "diameter ~ 1 + (1 | plate) + (1 | sample)"),
    # two kept blocks (one a slope: non-unit columns), p = 3, repeated level pairs
    ("three", "y ~ x + z + (1 | g1) + (1 | g2) + (0 + x | g3)"),
]


@pytest.mark.parametrize("case", PARTIAL_CASES, ids=[c[0] for c in PARTIAL_CASES])
@pytest.mark.parametrize("centered, pivoted", [(True, False), (False, False), (True, True)])
def test_partial_posterior_gradient_and_value(centered, pivoted, case):
    """The partial sampler's numba density (which reads statistics, not rows): finite-
    difference gradient, and its value equals the numpy partial likelihood of the adjusted
    rows + the kept effects' Normal prior + the scale priors (up to a constant)."""
    from bayeslmm.bayes.partial_posterior import PartialPosterior

    dataset, formula = case
    model = (Model(formula, three_factor_data()) if dataset == "three"
             else _model(dataset, formula))
    partial = model.partial_structure()
    mu0, inv_scale = model.marginal_parts()[0].prior_arrays(model.priors)
    n_sd = 1 + len(partial.kept)
    pivots = np.where(np.arange(n_sd) % 2 == 0, np.std(model.spec.y) / 4, 0.0) * pivoted
    post = PartialPosterior(partial, model.priors, mu0, inv_scale,
                            {b.factor: centered for b in partial.kept}, pivots)
    rng = np.random.default_rng(4)
    thetas = []
    for _ in range(3):
        theta = rng.normal(0, 0.5, post.ndim)
        theta[:post.ncov] += np.log(np.std(model.spec.y))
        thetas.append(theta)
        value, grad = post.logp_and_grad(theta)
        numeric = central_differences(post.logp_and_grad, theta)
        np.testing.assert_allclose(grad, numeric, rtol=1e-5, atol=1e-5 * np.abs(grad).max())

    def reference(theta):
        sd_first, _, sd_kept, sigma = post.covariance.constrain(theta[:post.ncov])
        effects = post.effects(theta)
        y_adj = model.spec.y.copy()
        for block, r in zip(partial.kept, effects, strict=True):
            y_adj -= r[0, block.codes, 0] * block.columns[:, 0]
        value = partial.logp_and_grad(np.diag(sd_first[0]), sigma[0], y_adj, mu0, inv_scale)[0]
        for k, r in enumerate(effects):  # the kept effects' prior
            value += stats.norm(0, sd_kept[0, k]).logpdf(r[0, :, 0]).sum()
            if not centered:  # density of z = r / sd
                value += r.shape[1] * np.log(sd_kept[0, k])
        priors = [model.priors.sd[b.factor][b.terms[0]] for b in [partial.first, *partial.kept]]
        for prior, s in zip(priors + [model.priors.sigma],
                            [*sd_first[0], *sd_kept[0], sigma[0]], strict=True):
            value += stats.t(prior.nu, scale=prior.sigma).logpdf(s)
        u = theta[[0, *range(1, n_sd), post.ncov - 1]]  # every block here is 1 x 1
        c = np.r_[pivots, 0.0]
        return value + np.where(c > 0, np.log(np.where(c > 0, c, 1.0)) + u - np.log1p(np.exp(u)),
                                u).sum()  # the SDs' Jacobians

    ours = np.array([post.logp_and_grad(t)[0] for t in thetas])
    ref = np.array([reference(t) for t in thetas])
    np.testing.assert_allclose(ours - ours[0], ref - ref[0], atol=1e-8)


@pytest.mark.parametrize("centered", [True, False])
def test_partial_posterior_with_a_correlated_kept_block(centered):
    """q x q kept blocks: finite-difference gradient, and the value equals the numpy partial
    likelihood of the adjusted rows + the kept effects' multivariate Normal prior (+ the
    non-centered Jacobian) + the covariance priors, taken as the marginal posterior's density
    minus its numpy marginal likelihood (same layout, same priors)."""
    from bayeslmm.bayes.partial_posterior import PartialPosterior

    model = Model("y ~ x + z + (1 | g1) + (1 + x | g2) + (1 | g3)", three_factor_data())
    partial = model.partial_structure()
    assert [b.q for b in partial.kept] == [2, 1] and partial.first.factor == "g1"
    mu0, inv_scale = model.marginal_parts()[0].prior_arrays(model.priors)
    marginal = model.marginal_posterior()
    post = PartialPosterior(partial, model.priors, mu0, inv_scale,
                            {b.factor: centered for b in partial.kept}, marginal.pivot[:-1])
    structure = marginal.structure
    assert marginal.ndim == post.ncov
    rng = np.random.default_rng(5)
    thetas = []
    for _ in range(3):
        theta = rng.normal(0, 0.5, post.ndim)
        theta[:post.ncov] += np.r_[np.full(post.ncov - 1, 0.0), np.log(np.std(model.spec.y))]
        thetas.append(theta)
        value, grad = post.logp_and_grad(theta)
        assert np.isfinite(value)
        numeric = central_differences(post.logp_and_grad, theta)
        np.testing.assert_allclose(grad, numeric, rtol=1e-5, atol=1e-5 * np.abs(grad).max())

    def reference(theta):
        blocks, sigma = post.covariance.constrain_blocks(theta[:post.ncov])
        factors = [sd[0][:, None] * corr[0] for sd, corr in blocks]
        effects = [e[0] for e in post.effects(theta)]
        y_adj = model.spec.y - sum(b.z_times(e) for b, e in zip(partial.kept, effects,
                                                                 strict=True))
        value = partial.logp_and_grad(factors[0], sigma[0], y_adj, mu0, inv_scale)[0]
        for factor, r in zip(factors[1:], effects, strict=True):
            value += stats.multivariate_normal(np.zeros(len(factor)),
                                               factor @ factor.T).logpdf(r).sum()
            if not centered:  # density of z = L^-1 r
                value += r.shape[0] * np.log(np.diag(factor)).sum()
        prior = (marginal.logp_and_grad(theta[:post.ncov])[0]
                 - structure.logp_and_grad(factors[0], factors[1:], sigma[0], mu0,
                                           inv_scale)[0])
        return value + prior

    ours = np.array([post.logp_and_grad(t)[0] for t in thetas])
    ref = np.array([reference(t) for t in thetas])
    np.testing.assert_allclose(ours - ours[0], ref - ref[0], atol=1e-7)
    # effects_theta inverts effects
    effects = post.effects(thetas[1])
    np.testing.assert_allclose(post.effects_theta([e[0] for e in effects],
                                                  thetas[1][:post.ncov]),
                               thetas[1][post.ncov:], atol=1e-10)


@pytest.mark.parametrize("centered", [True, False])
def test_partial_posterior_with_an_integrated_small_block(centered):
    """g2 is nested in h: the partial sampler integrates h out with the first block (g1)
    and keeps g2 (2 x 2): finite-difference gradient, and the value equals a dense Gaussian
    log density of y - Z_2 r_2 (covariance sigma^2 I + Z_1 G_1 Z_1' + Z_h G_h Z_h' + X S0 X',
    never the package's statistics) + the kept effects' prior + the covariance priors (the
    marginal posterior's density minus its numpy likelihood, its theta permuted to this
    layout)."""
    from bayeslmm.bayes.partial_posterior import PartialPosterior

    from .conftest import nested_factor_data

    model = Model("y ~ x + z + (1 | g1) + (1 + x | g2) + (1 | h)", nested_factor_data())
    marginal = model.marginal_posterior()   # layout g1, g2 (2 + 1), h
    partial = model.partial_structure()
    assert ([b.factor for b in partial.integrated], [b.factor for b in partial.kept]) == (
        ["h"], ["g2"])
    mu0, inv_scale = model.marginal_parts()[0].prior_arrays(model.priors)
    # partial theta: g1 sd, h sd, g2 sds, g2 cpc, sigma; marginal: g1, g2 (sds, cpc), h
    to_marginal = [0, 2, 3, 4, 1, 5]
    post = PartialPosterior(partial, model.priors, mu0, inv_scale, {"g2": centered},
                            marginal.pivot[[0, 3, 1, 2]])
    assert post.ncov == 6 and post.ndim == 6 + 16
    rng = np.random.default_rng(6)
    thetas = []
    for _ in range(3):
        theta = rng.normal(0, 0.5, post.ndim)
        theta[post.ncov - 1] += np.log(np.std(model.spec.y))
        thetas.append(theta)
        value, grad = post.logp_and_grad(theta)
        assert np.isfinite(value)
        numeric = central_differences(post.logp_and_grad, theta)
        np.testing.assert_allclose(grad, numeric, rtol=1e-5, atol=1e-5 * np.abs(grad).max())
    blocks = {b.factor: b for b in model.spec.blocks}
    xc = partial.single.xc

    def reference(theta):
        (sd1, _), (sd3, _), (sd2, corr2) = post.covariance.constrain_blocks(
            theta[:post.ncov])[0]
        sigma = post.covariance.constrain_blocks(theta[:post.ncov])[1][0]
        r2 = post.effects(theta)[0][0]
        y_adj = model.spec.y - blocks["g2"].z_times(r2)
        z1 = blocks["g1"].sparse_z().toarray()
        z3 = blocks["h"].sparse_z().toarray()
        cov = (sigma**2 * np.eye(model.spec.n) + sd1[0, 0] ** 2 * z1 @ z1.T
               + sd3[0, 0] ** 2 * z3 @ z3.T + xc @ np.diag(1 / inv_scale**2) @ xc.T)
        value = stats.multivariate_normal(xc @ mu0, cov).logpdf(y_adj)
        chol2 = sd2[0][:, None] * corr2[0]
        value += stats.multivariate_normal(np.zeros(2), chol2 @ chol2.T).logpdf(r2).sum()
        if not centered:  # density of z = L^-1 r
            value += r2.shape[0] * np.log(np.diag(chol2)).sum()
        theta_m = theta[:post.ncov][to_marginal]
        factors = [sd[0][:, None] * corr[0]
                   for sd, corr in marginal.constrain_blocks(theta_m[None])[0]]
        prior = (marginal.logp_and_grad(theta_m)[0] - marginal.structure.logp_and_grad(
            factors[0], factors[1:], sigma, mu0, inv_scale)[0])
        return value + prior

    ours = np.array([post.logp_and_grad(t)[0] for t in thetas])
    ref = np.array([reference(t) for t in thetas])
    np.testing.assert_allclose(ours - ours[0], ref - ref[0], atol=1e-7)
    # the numpy reference of the partial likelihood (the PyMC backend's) agrees
    g_first, g_int = None, None
    for theta in thetas[:1]:
        blocks_t, sigma = post.covariance.constrain_blocks(theta[:post.ncov])
        factors = [sd[0][:, None] * corr[0] for sd, corr in blocks_t]
        y_adj = model.spec.y - blocks["g2"].z_times(post.effects(theta)[0][0])
        value, g_first, g_sigma, g_y, g_int = partial.logp_and_grad(
            factors[0], sigma[0], y_adj, mu0, inv_scale, [factors[1]])
        assert len(g_int) == 1 and g_int[0].shape == (1, 1)
        eps = 1e-6
        bumped = partial.logp_and_grad(factors[0], sigma[0], y_adj, mu0, inv_scale,
                                       [factors[1] + eps])[0]
        lowered = partial.logp_and_grad(factors[0], sigma[0], y_adj, mu0, inv_scale,
                                        [factors[1] - eps])[0]
        assert (bumped - lowered) / (2 * eps) == pytest.approx(g_int[0][0, 0], rel=1e-5)


@pytest.mark.parametrize("nested", [False, True])
def test_kept_statistics_equal_the_adjusted_rows_statistics(nested):
    """``KeptStatistics.adjusted`` (no pass over the rows) equals the statistics recomputed
    from y - Z_K r itself, kept blocks of any shape, with and without an integrated block
    (h, which g2 is nested in; not g3, which nothing is nested in)."""
    from .conftest import nested_factor_data

    formula = "y ~ x + z + (1 | g1) + (1 + x | g2) + (0 + z | g3)"
    model = (Model(formula + " + (1 | h)", nested_factor_data()) if nested
             else Model(formula, three_factor_data()))
    partial = model.partial_structure()
    assert [b.factor for b in partial.integrated] == (["h"] if nested else [])
    assert [b.factor for b in partial.kept] == ["g2", "g3"]
    single = partial.single
    rng = np.random.default_rng(2)
    effects = [rng.normal(size=(3, b.n_levels, b.q)) for b in partial.kept]
    y_adj = np.array([model.spec.y - sum(b.z_times(e[d]) for b, e in
                                         zip(partial.kept, effects, strict=True))
                      for d in range(3)])
    stacked = np.concatenate([e.reshape(3, -1) for e in effects], axis=1)
    cross, cross_rest = partial.kept_statistics.adjusted(single, stacked)
    ref_cross, ref_rest = single.statistics_of(y_adj)
    np.testing.assert_allclose(cross, ref_cross, rtol=1e-12, atol=1e-10)
    np.testing.assert_allclose(cross_rest, ref_rest, rtol=1e-12, atol=1e-9)
    if nested:  # the integrated block's rows of the core's statistics, recomputed from y_adj
        z3 = partial.integrated[0].sparse_z()
        np.testing.assert_allclose(cross_rest[:, -1, :3], (z3.T @ y_adj.T).T, rtol=1e-12,
                                   atol=1e-9)


def test_nutpie_failure_is_a_clear_error():
    from bayeslmm.bayes.nutpie_backend import sample_flat

    with pytest.raises(RuntimeError, match="nutpie sampling failed: All initialization points"):
        sample_flat(lambda x: (-np.inf, np.zeros(2)), 2, lambda rng: np.ones(2), draws=10,
                    tune=10, chains=1, cores=1, seed=1, progressbar=False)


@pytest.mark.slow
@pytest.mark.skipif(kernel_cfunc._usable_cpus() < 2, reason="the helper needs a second CPU")
def test_first_fit_compiles_the_kernel_in_a_helper_process(tmp_path):
    """With an empty numba cache the kernel is compiled by a helper process, and this
    process loads what it wrote; with the cache filled no helper starts."""
    first = """
from bayeslmm.bayes import kernel_cfunc as kc
assert kc.compile_in_background() and kc._helper is not None
assert kc.kernel_callback().cache_hits == 1, "not loaded from the helper's cache"
"""
    again = """
from bayeslmm.bayes import kernel_cfunc as kc
assert not kc.compile_in_background() and kc._helper is None
"""
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path))
    for code in (first, again):
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                             text=True, timeout=600)
        assert out.returncode == 0, out.stderr[-2000:]


def test_kernel_call_is_checked_against_the_c_signature():
    """A wrong argument to the kernel's address call is a typing error when the caller
    compiles (not a read of the wrong memory): count, array dtype, layout."""
    from numba import njit
    from numba.core.errors import TypingError

    from bayeslmm.bayes.callback_abi import call_kernel

    def caller(address, rest_levels, chol):
        d = np.zeros(1)
        return call_kernel(address, (1, 1, 1, 0, 0, 1.0, d, d, d, rest_levels, d, d, chol, d,
                                     1.0, d, d, d, d, d, 0, d))

    good_chol = np.eye(1)
    with pytest.raises(TypingError, match="argument 9: a C-contiguous int64 array"):
        njit(caller)(0, np.zeros(1), good_chol)          # float where int64 is needed
    with pytest.raises(TypingError, match="argument 12: a C-contiguous float64 array"):
        njit(caller)(0, np.zeros(1, np.int64), np.eye(2)[:, :1])   # a strided view
    with pytest.raises(TypingError, match="22 arguments needed"):
        njit(lambda address: call_kernel(address, (1, 2)))(0)
