"""The full sampler on nutpie (bayes/full_nutpie.py): the same log density as PyMC's (at
random points), the same posterior layout as ``pm.sample``, the same posterior (against
PyMC's NUTS on the same model), reproducible with a seed; an extended PyMC model stays on
``pm.sample``."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import bayeslmm
from bayeslmm.bayes.full_nutpie import CompiledDensity
from bayeslmm.datasets import load

DRAWS = dict(draws=300, tune=300, chains=2, random_seed=4, progressbar=False)
FORMULA = "distance ~ age * Sex"


@pytest.fixture(scope="module")
def model():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return bayeslmm.Model(FORMULA, load("orthodont"), residual="cs(age | Subject)")


def test_density_is_pymcs(model):
    pm_model = model.pymc_model
    density = CompiledDensity(pm_model)
    logp = pm_model.compile_logp()
    dlogp = pm_model.compile_dlogp()
    rng = np.random.default_rng(0)
    logp_fn = density.logp_factory()()
    for _ in range(3):
        x = rng.normal(scale=0.5, size=density.ndim)
        point = dict(zip([v.name for v in density.value_vars], density.unflatten(x),
                         strict=True))
        value, grad = logp_fn(x)
        assert value == pytest.approx(float(logp(point)), rel=1e-10)
        np.testing.assert_allclose(grad, dlogp(point), rtol=1e-8, atol=1e-8)


def test_layout_and_posterior_match_pm_sample(model):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours = model.fit(sampler="full", **DRAWS)
        theirs = model.fit(sampler="full", backend="pymc", **DRAWS)
    assert ours.sampler == theirs.sampler == "full"
    assert set(ours.posterior.data_vars) == set(theirs.posterior.data_vars)
    for name in ours.posterior.data_vars:
        assert ours.posterior[name].dims == theirs.posterior[name].dims
        a, b = ours.posterior[name], theirs.posterior[name]
        sd = np.sqrt((a.var(("chain", "draw")) + b.var(("chain", "draw"))) / 2) + 1e-12
        z = np.abs(a.mean(("chain", "draw")) - b.mean(("chain", "draw"))) / sd
        assert float(z.max()) < 0.5, name        # means within half a posterior SD
    assert ours.diagnostics()["divergences"] <= 5
    assert "tree_depth" in ours.idata.sample_stats


def test_reproducible_with_a_seed(model):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = model.fit(**DRAWS)
        b = model.fit(**DRAWS)
    np.testing.assert_array_equal(a.posterior["b"].to_numpy(), b.posterior["b"].to_numpy())


def test_extended_model_stays_on_pymc():
    import pymc as pm

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = bayeslmm.Model(FORMULA, load("orthodont"), residual="cs(age | Subject)")
        with m.pymc_model:
            pm.Normal("extra", 0.0, 1.0)
        with pytest.raises(ValueError, match="backend='nutpie'"):
            m.fit(backend="nutpie", **DRAWS)
