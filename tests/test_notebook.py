"""Notebook-facing pieces: plots, printing, save/load, CLI."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

import bayeslmm  # noqa: E402
from bayeslmm import plots  # noqa: E402
from bayeslmm.__main__ import main  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def test_caterpillar_sorted_with_intervals(sleep_fit):
    ax = plots.caterpillar(sleep_fit, factor="Subject", term="Days")
    xs = ax.lines[0].get_xdata()
    assert len(xs) == 18 and np.all(np.diff(xs) >= 0)
    assert ax.collections  # interval lines
    reml_ax = plots.caterpillar(sleep_fit.model.fit_reml(), "Subject", "Intercept")
    assert len(reml_ax.lines[0].get_xdata()) == 18
    with pytest.raises(ValueError, match="no term 'Dayz'"):
        plots.caterpillar(sleep_fit, "Subject", "Dayz")


def test_shrinkage_moves_toward_population(sleep_fit):
    _, ax = plt.subplots()
    assert plots.shrinkage(sleep_fit, ax=ax) is ax
    ols = ax.lines[0].get_xydata()
    blup = ax.lines[1].get_xydata()
    center = blup.mean(axis=0)
    # BLUP-based coefficients are closer to the population than the per-subject fits
    assert np.linalg.norm(blup - center, axis=1).mean() < np.linalg.norm(
        ols - center, axis=1).mean()


def test_varcomp_and_ppc(sleep_fit):
    axes = plots.varcomp(sleep_fit)
    assert [a.get_title() for a in axes[:4]] == [
        "sd_Subject[Intercept]", "sd_Subject[Days]", "cor_Subject[Intercept, Days]", "sigma"]
    assert plots.ppc(sleep_fit, num_pp_samples=20) is not None
    assert "posterior_predictive" in sleep_fit.idata.groups()


def test_save_and_load_round_trip(sleep_fit, tmp_path):
    path = sleep_fit.to_netcdf(str(tmp_path / "fit.nc"))
    loaded = bayeslmm.load(path)
    np.testing.assert_array_equal(loaded.posterior["b"].values, sleep_fit.posterior["b"].values)
    new = pd.DataFrame({"Days": [3, 4], "Subject": ["308", "372"]})
    np.testing.assert_allclose(loaded.predict(new).values, sleep_fit.predict(new).values)
    assert loaded.model.formula == sleep_fit.model.formula
    assert list(loaded.model.spec.blocks[0].levels) == list(sleep_fit.model.spec.blocks[0].levels)


def test_load_rejects_other_files(tmp_path, sleep_fit):
    path = str(tmp_path / "plain.nc")
    sleep_fit.idata.posterior.to_netcdf(path)
    with pytest.raises(ValueError, match="not a bayeslmm fit"):
        bayeslmm.load(path)


def test_reprs(sleep_fit, sleepstudy):
    model = bayeslmm.Model("Reaction ~ Days + (Days | Subject)", sleepstudy)
    text = repr(model)
    assert "rows: 180" in text and "Subject (18 levels" in text and "LKJ" in text
    assert "<table" in model._repr_html_() and "sampler: marginal" in model._repr_html_()
    reml = bayeslmm.fit("Reaction ~ Days + (Days | Subject)", sleepstudy, method="reml")
    text = repr(reml)
    assert text.startswith("RemlFit REML: Reaction ~ Days + (Days | Subject)")
    assert "levels: Subject 18" in text and "converged" in text and "Residual" in text
    assert "<table" in reml._repr_html_()
    assert "divergences" in repr(sleep_fit) and "marginal sampler" in repr(sleep_fit)


def test_cli_fit_and_errors(tmp_path, capsys, sleepstudy):
    csv = tmp_path / "sleep.csv"
    sleepstudy.to_csv(csv, index=False)
    assert main(["fit", str(csv), "Reaction ~ Days + (Days | Subject)", "--method", "reml"]) == 0
    assert "REML criterion at convergence: 1743.6" in capsys.readouterr().out
    assert main(["fit", str(csv), "Reaction ~ Dayz + (1 | Subject)"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: unknown column 'Dayz'") and err.count("\n") == 1
