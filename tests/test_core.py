"""The core: statistics accumulator, covariance protocol, data scaling, deviance object."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from bayeslmm.core.covariance import Diagonal, ThetaLayout, Unstructured
from bayeslmm.core.scaling import DataScaling
from bayeslmm.core.statistics import StatisticsAccumulator, cross_products
from bayeslmm.datasets import load
from bayeslmm.design import build_spec
from bayeslmm.reml import Deviance, fit_reml

from .conftest import GOLDEN


def _spec():
    return build_spec("diameter ~ 1 + (1 | plate) + (1 | sample)", load("penicillin"))


def test_statistics_equal_dense_products_and_chunks_add_up():
    spec = build_spec("y ~ x1 + (0 + z1 + z2 | groups) + (1 | v1)",
                      pd.read_csv(GOLDEN / "data" / "vcomp2.csv"))
    order = spec.block_order()
    blocks = [spec.blocks[k] for k in order]
    z1 = blocks[0].sparse_z().toarray()
    rest = np.column_stack([b.sparse_z().toarray() for b in blocks[1:]] + [spec.X, spec.y])
    whole = cross_products(spec, order)
    np.testing.assert_allclose(whole.cross.toarray(), rest.T @ z1, atol=1e-10)
    np.testing.assert_allclose(whole.rest, rest.T @ rest, atol=1e-9)
    m1, q1 = blocks[0].n_levels, blocks[0].q
    dense_first = (z1.T @ z1).reshape(m1, q1, m1, q1)
    np.testing.assert_allclose(whole.first, np.einsum("jajb->jab", dense_first), atol=1e-10)
    chunked = cross_products(spec, order, chunk_rows=97)
    np.testing.assert_allclose(chunked.rest, whole.rest, atol=1e-9)
    np.testing.assert_allclose(chunked.cross.toarray(), whole.cross.toarray(), atol=1e-10)
    # two "machines", each with half of the rows
    halves = []
    for sl in (slice(0, 300), slice(300, None)):
        acc = StatisticsAccumulator([(b.n_levels, b.q) for b in blocks], spec.p)
        acc.add([b.codes[sl] for b in blocks], [b.columns[sl] for b in blocks], spec.X[sl],
                spec.y[sl])
        halves.append(acc)
    halves[0].merge(halves[1])
    np.testing.assert_allclose(halves[0].result().rest, whole.rest, atol=1e-9)
    assert halves[0].n == spec.n


def test_covariance_structures_round_trip_and_rescale():
    rng = np.random.default_rng(0)
    us = Unstructured(3, ["a", "b", "c"])
    theta = rng.normal(size=us.size)
    lam = us.lambda_of(theta)
    assert np.allclose(np.triu(lam, 1), 0) and np.allclose(us.theta_of(lam), theta)
    assert us.names("g") == ["g.a", "g.b.a", "g.c.a", "g.b", "g.c.b", "g.c"]
    scale = np.array([2.0, 3.0, 0.5])
    assert np.allclose(us.lambda_of(us.rescaled(theta, scale)), scale[:, None] * lam)
    dg = Diagonal(2, ["a", "b"])
    assert np.allclose(dg.lambda_of(np.array([1.0, 2.0])), np.diag([1.0, 2.0]))
    layout = ThetaLayout([us, dg, 1])
    assert layout.size == 6 + 2 + 1
    assert list(layout.lower[:6]) == [0, -np.inf, -np.inf, 0, -np.inf, 0]
    # a diagonal entry on its bound: the column below it may flip sign (same G)
    boundary = np.array([0.0, 0.4, -0.2, 1.0, 0.3, 0.5])
    (flipped,) = us.reflections(boundary, 1e-4)
    g = us.lambda_of(boundary) @ us.lambda_of(boundary).T
    g2 = us.lambda_of(flipped) @ us.lambda_of(flipped).T
    assert np.allclose(g, g2) and not np.allclose(flipped, boundary)


def test_scaling_maps_back_exactly():
    data = load("sleepstudy").assign(Reaction=lambda d: d.Reaction * 1e3 + 5e6,
                                     Days=lambda d: d.Days * 0.01)
    spec = build_spec("Reaction ~ Days + (Days | Subject)", data)
    scaling = DataScaling.of(spec)
    scaled = scaling.scaled
    assert abs(scaled.y.mean()) < 1e-12 and scaled.y.std() == pytest.approx(1.0)
    beta_s = np.array([0.3, -1.2])
    np.testing.assert_allclose(spec.X @ scaling.beta(beta_s),
                               scaling.y_scale * (scaled.X @ beta_s) + scaling.y_shift)


def test_deviance_object_is_lme4s_criterion_at_lme4s_theta():
    from .conftest import load_case

    ref = load_case("penicillin_reml")["tight"]
    dev = Deviance(_spec(), reml=True)
    theta = np.array(list(ref["theta"].values()))
    assert dev(theta) == pytest.approx(ref["criterion"], rel=1e-10)
    est = dev.estimates(theta)
    assert est.sigma == pytest.approx(ref["sigma"], rel=1e-6)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = fit_reml(dev.spec, deviance=dev)
    assert fit.criterion <= ref["criterion"] + 1e-8


@pytest.mark.parametrize("formula", [
    "y ~ x + (1 | g) + (1 | h)",            # q1 = 1, scalar rest: dsyrk + lower triangle
    "y ~ x + (x | g) + (1 | h)",            # q1 = 2: dgemm
    "y ~ x + (1 | g) + (x | h)",            # a q = 2 rest block: both triangles
])
@pytest.mark.parametrize("divisor", [1e9, 4, 1e-9])  # all heavy, split, all light
def test_sparse_schur_split_equals_dense_products(formula, divisor, monkeypatch):
    """S = R'R - C W C' on the sparse path, with the first block's levels split into dense
    (BLAS) and scattered ones (on threads) in any proportion, equals the dense path's numpy
    product."""
    from bayeslmm.core import schur_kernel
    from bayeslmm.core.cholesky import BlockedSystem

    rng = np.random.default_rng(3)
    n = 600
    g = np.minimum(rng.geometric(0.02, n), 150)  # skewed: some levels heavy, some light
    h = rng.integers(0, 50, n)
    data = pd.DataFrame({"y": rng.normal(size=n), "x": rng.normal(size=n),
                         "g": g.astype(str), "h": h.astype(str)})
    spec = build_spec(formula, data)
    dense = BlockedSystem(spec)
    assert dense.use_dense
    monkeypatch.setattr(BlockedSystem, "DENSE_FLOPS", 0.0)
    monkeypatch.setattr(schur_kernel, "DENSE_LEVEL_DIVISOR", divisor)
    monkeypatch.setattr(schur_kernel, "THREADED_WORK", 0)  # threads split the scattered rows
    sparse = BlockedSystem(spec)
    assert not sparse.use_dense
    n_heavy = sparse.sparse_parts.heavy.size
    assert n_heavy == {1e9: sparse.m1, 1e-9: 0}.get(divisor, n_heavy)
    if divisor == 4:
        assert 0 < n_heavy < sparse.m1
    if n_heavy < sparse.m1:
        assert sparse.sparse_parts.row_splits.size > 2
    theta = rng.uniform(0.3, 1.2, sparse.layout.size)
    lam1 = sparse.layout.lambdas(theta)[0]
    weights, _ = sparse._weights_first(lam1)
    want = dense._schur(weights)
    if sparse.rest_perm is not None:  # the sparse path holds rest levels reordered
        want = want[np.ix_(sparse.rest_perm, sparse.rest_perm)]
    want = np.tril(want)
    got = np.tril(sparse._schur(weights))
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-9)
    assert sparse.objective(theta, True) == pytest.approx(dense.objective(theta, True),
                                                          rel=1e-12)
    beta_s, modes_s = sparse.solve(sparse.factorize(theta))  # estimates in engine order
    beta_d, modes_d = dense.solve(dense.factorize(theta))
    np.testing.assert_allclose(beta_s, beta_d, rtol=1e-9)
    for got_k, want_k in zip(modes_s, modes_d, strict=True):
        np.testing.assert_allclose(got_k, want_k, rtol=1e-8, atol=1e-10)
    y_new = rng.normal(size=n)  # the bootstrap's refits swap the response
    assert sparse.with_response(y_new).objective(theta, True) == pytest.approx(
        dense.with_response(y_new).objective(theta, True), rel=1e-12)


@pytest.mark.parametrize("case, dataset", [("penicillin_reml", "penicillin"),
                                           ("radon_reml", "radon")])
def test_moment_start_is_near_lme4s_theta(case, dataset):
    """The approximate-EM start (big scalar-block models start there) lands within 12% of
    lme4's REML theta on crossed and one-way data (lambda = I is 35-130% off)."""
    from bayeslmm.core.moment_start import moment_start

    from .conftest import load_case

    ref = load_case(case)
    dev = Deviance(build_spec(ref["formula"], load(dataset)), reml=True)
    theta = dev.unscaled_theta(moment_start(dev.scaling.scaled, dev.order))
    want = np.array(list(ref["theta"].values()))
    np.testing.assert_allclose(theta, want, rtol=0.12)
    assert moment_start(build_spec("Reaction ~ Days + (Days | Subject)",
                                   load("sleepstudy")), [0]) is None  # q = 2: not scalar
