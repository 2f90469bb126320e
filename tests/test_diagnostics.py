"""bayes/diagnostics.py against ArviZ: the same R-hat and bulk/tail ESS, per parameter."""

from __future__ import annotations

import warnings

import arviz as az
import numpy as np
import pytest
import xarray as xr

from bayeslmm.bayes import diagnostics
from bayeslmm.bayes.diagnostics import rhat_and_ess


def _ar1(rng, phi, chains, draws, k):
    x = np.zeros((chains, draws, k))
    noise = rng.normal(size=(chains, draws, k))
    for t in range(1, draws):
        x[:, t] = phi * x[:, t - 1] + noise[:, t]
    return x


def _cases():
    rng = np.random.default_rng(1)
    alternating = np.tile([1.0, -1.0], (2, 20))[:, :, None] + 1e-3 * rng.normal(size=(2, 40, 2))
    return {
        "iid": rng.normal(size=(4, 100, 5)),
        "autocorrelated": _ar1(rng, 0.9, 4, 200, 5),
        "anticorrelated, odd draws": _ar1(rng, -0.7, 4, 201, 5),
        "nearly stuck": _ar1(rng, 0.99, 3, 150, 4),
        "one chain apart": rng.normal(size=(4, 50, 3)) + np.array([0, 0, 0, 5])[:, None, None],
        "ties": rng.integers(0, 3, size=(4, 60, 4)).astype(float),
        "constant": np.ones((4, 30, 2)),
        "one chain": _ar1(rng, 0.5, 1, 80, 3),
        "five draws": rng.normal(size=(2, 5, 3)),
        "alternating": alternating,
        "folds to a constant": np.tile([1.0, -1.0], (2, 20))[:, :, None],
    }


@pytest.mark.parametrize("name", list(_cases()))
def test_same_numbers_as_arviz(name, monkeypatch):
    monkeypatch.setattr(diagnostics, "CHUNK", 2)  # rhat_and_ess: several chunks per case
    x = _cases()[name]
    posterior = xr.Dataset({"v": (("chain", "draw", "k"), x)})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = [az.rhat(posterior)["v"].to_numpy(),
                    az.ess(posterior, method="bulk")["v"].to_numpy(),
                    az.ess(posterior, method="tail")["v"].to_numpy()]
        ours = rhat_and_ess(x)
    for want, got in zip(expected, ours, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-9, equal_nan=True)


def test_fit_diagnostics_match_arviz(sleep_fit):
    """BayesFit.diagnostics over every public variable, random effects included."""
    from bayeslmm.bayes.builder import public_names

    fit = sleep_fit
    posterior = fit.posterior[public_names(fit.spec)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rhat_ref = max(float(v.max()) for v in az.rhat(posterior).data_vars.values())
        bulk_ref = min(float(v.min()) for v in az.ess(posterior, method="bulk").data_vars.values())
        tail_ref = min(float(v.min()) for v in az.ess(posterior, method="tail").data_vars.values())
    diag = fit.diagnostics()
    assert diag["max_rhat"] == pytest.approx(rhat_ref, rel=1e-9)
    assert diag["min_ess_bulk"] == pytest.approx(bulk_ref, rel=1e-9)
    assert diag["min_ess_tail"] == pytest.approx(tail_ref, rel=1e-9)
