"""Covariance patterns of G in the formula - diag(), cs(), ar1(), us() - against glmmTMB 1.1.5
(goldens: tests/golden/gpatterns_glmmtmb.json, made with the data by
tests/golden/scripts/gpatterns_glmmtmb.R).  logLik within 1e-6 relative, G and sigma within
1e-4, parameter counts equal."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import bayeslmm

from .conftest import GOLDEN

TMB = json.loads((GOLDEN / "gpatterns_glmmtmb.json").read_text())
FORMULAS = {
    "cs": "y ~ x1 + x2 + cs(1 + x1 + x2 | g)",
    "diag": "y ~ x1 + x2 + diag(1 + x1 + x2 | g)",
    "us": "y ~ x1 + x2 + us(1 + x1 + x2 | g)",
    "ar1": "y ~ x1 + x2 + ar1(0 + ft | g)",
    "cs_ar1": "y ~ x1 + x2 + cs(1 + x1 + x2 | g) + ar1(0 + ft | g)",
}


@pytest.fixture(scope="module")
def data() -> pd.DataFrame:
    d = pd.read_csv(Path(GOLDEN) / "data" / "gpatterns.csv")
    d["ft"] = pd.Categorical(d["ft"], ["T1", "T2", "T3", "T4"])
    return d


def _fit(formula, data, method):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return bayeslmm.fit(formula, data, method=method)


@pytest.mark.parametrize("method", ["reml", "ml"])
@pytest.mark.parametrize("case", sorted(FORMULAS))
def test_matches_glmmtmb(case, method, data):
    ref = TMB[f"{case}_{method}"]
    fit = _fit(FORMULAS[case], data, method)
    assert fit.converged
    assert fit.n_params == ref["df"]
    assert abs(fit.loglik - ref["logLik"]) <= 1e-6 * abs(ref["logLik"])
    assert fit.sigma == pytest.approx(ref["sigma"], rel=1e-4)
    for cov, want in zip(fit.covariances(), ref["covs"].values(), strict=True):
        want = np.asarray(want)
        np.testing.assert_allclose(cov, want, atol=1e-4 * np.abs(want).max())
    beta = np.array(list(ref["fixef"].values()))
    np.testing.assert_allclose(fit.fixef.to_numpy(), beta, rtol=1e-4, atol=1e-5)


def test_patterns_have_their_shape(data):
    """cs: one correlation; ar1: one SD and correlations phi^lag; diag: no correlation."""
    cs = _fit(FORMULAS["cs"], data, "reml").covariances()[0]
    sd = np.sqrt(np.diag(cs))
    corr = cs / np.outer(sd, sd)
    off = corr[np.triu_indices(3, 1)]
    assert np.ptp(off) < 1e-12
    ar1 = _fit(FORMULAS["ar1"], data, "reml")
    g = ar1.covariances()[0]
    assert np.ptp(np.diag(g)) < 1e-10
    phi = g[0, 1] / g[0, 0]
    np.testing.assert_allclose(g / g[0, 0], phi ** np.abs(np.subtract.outer(range(4), range(4))),
                               atol=1e-12)
    assert list(ar1.theta_named.index) == ["g.sd", "g.ar1_phi"]
    diag = _fit(FORMULAS["diag"], data, "reml").covariances()[0]
    assert np.count_nonzero(diag - np.diag(np.diag(diag))) == 0


def test_diag_is_double_bar_and_us_is_plain(data):
    diag = _fit(FORMULAS["diag"], data, "reml")
    bars = _fit("y ~ x1 + x2 + (1 + x1 + x2 || g)", data, "reml")
    assert diag.loglik == pytest.approx(bars.loglik, abs=1e-7)
    us = _fit(FORMULAS["us"], data, "reml")
    plain = _fit("y ~ x1 + x2 + (1 + x1 + x2 | g)", data, "reml")
    assert us.loglik == pytest.approx(plain.loglik, abs=1e-9)


def test_pattern_errors(data):
    with pytest.raises(ValueError, match="needs at least 2"):
        _fit("y ~ x1 + ar1(1 | g)", data, "reml")
    with pytest.raises(ValueError, match="combines a covariance pattern with '||'"):
        _fit("y ~ x1 + cs(1 + x1 || g)", data, "reml")


@pytest.mark.parametrize("case", ["cs", "ar1"])
def test_bayesian_patterns_agree_with_reml(case, data):
    """The full sampler with a cs() / ar1() G: posterior means of every SD, correlation,
    fixed effect and sigma within 3 posterior SDs of REML on the same data."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = bayeslmm.fit(FORMULAS[case], data, draws=250, tune=250, chains=2, random_seed=2,
                           progressbar=False)
    assert fit.sampler == "full"
    table = fit.compare_reml(reml_interval=None)
    assert ((table["mean"] - table["reml"]).abs() < 3 * table["sd"]).all(), table
    cor = fit.posterior["cor_g"].mean(("chain", "draw")).to_numpy()
    off = cor[np.triu_indices(cor.shape[0], 1)]
    if case == "cs":
        assert np.ptp(off) < 1e-10          # one correlation everywhere
    else:
        phi = cor[0, 1]
        assert abs(cor[0, 2] - phi**2) < 0.1  # phi^lag (of the posterior mean: roughly)
