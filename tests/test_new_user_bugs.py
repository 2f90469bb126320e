"""What a new-user trial found (issue 10, items 6 and 7): each bug with its test."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import bayeslmm
from bayeslmm.bayes import Model
from bayeslmm.design import build_spec
from bayeslmm.formula import parse_formula


def _reml(formula, data):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return bayeslmm.fit(formula, data, method="reml")


def _small(seed=0, n_groups=6, per=8):
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(n_groups), per)
    x = rng.normal(size=g.size)
    y = 1 + 0.5 * x + rng.normal(size=n_groups)[g] + rng.normal(size=g.size) * 0.5
    return pd.DataFrame({"g": g, "x": x, "y": y})


def test_duplicated_index_labels_do_not_multiply_rows(sleepstudy):
    data = sleepstudy.copy()
    data.index = [0, 0] + list(range(2, len(data)))  # two rows share label 0
    model = Model("Reaction ~ Days + (Days | Subject)", data)
    assert len(model.data_used) == len(data) == model.spec.n


def test_float_grouping_levels_found_by_value_at_predict():
    data = _small().assign(g=lambda d: d.g.map({0: 1.0, 1: 1.5, 2: 2.0, 3: 2.5, 4: 3.0,
                                                 5: 3.5}))
    spec = build_spec("y ~ x + (1 | g)", data)
    block = spec.blocks[0]
    only_integral = data[data.g == 2.0].head(2)   # labels "2" vs "2.0" differed before
    assert (block.grouping.codes_of(only_integral) == block.levels.index("2")).all()
    assert (block.grouping.codes_of(data) == block.codes).all()


def test_bool_grouping_levels_match_at_predict():
    data = _small(n_groups=2, per=20).assign(g=lambda d: d.g.astype(bool))
    spec = build_spec("y ~ x + (1 | g)", data)
    block = spec.blocks[0]
    assert block.levels == ["False", "True"]
    assert (block.grouping.codes_of(data) == block.codes).all()


def test_object_integer_levels_keep_their_order_through_save_and_load(tmp_path):
    data = _small(n_groups=12, per=5)
    data["g"] = pd.Series([int(v) for v in data.g], dtype=object)  # 0 .. 11, not text order
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = bayeslmm.fit("y ~ x + (1 | g)", data, draws=30, tune=30, chains=1, cores=1,
                           random_seed=1, progressbar=False)
    path = fit.to_netcdf(str(tmp_path / "fit.nc"))
    back = bayeslmm.load(path)
    assert back.model.spec.blocks[0].levels == fit.model.spec.blocks[0].levels
    assert back.sampler == fit.sampler == "marginal"
    new = pd.DataFrame({"x": [0.0, 0.0], "g": [10, 2]})
    ours = fit.predict(new, random_seed=0).mean(("chain", "draw")).to_numpy()
    theirs = back.predict(new, random_seed=0).mean(("chain", "draw")).to_numpy()
    np.testing.assert_allclose(ours, theirs)


def test_column_named_intercept_is_refused():
    data = _small().assign(Intercept=lambda d: d.x * 2)
    with pytest.raises(ValueError, match="Intercept"):
        build_spec("y ~ Intercept + (1 | g)", data)


def test_offset_has_lme4_meaning():
    """offset(o) is a known term with coefficient 1: the fit equals that of y - o, and the
    fitted values and predictions include it."""
    data = _small().assign(o=lambda d: np.linspace(-1, 1, len(d)))
    with_offset = _reml("y ~ x + offset(o) + (1 | g)", data)
    shifted = _reml("z ~ x + (1 | g)", data.assign(z=data.y - data.o))
    assert with_offset.fixef.index.tolist() == ["Intercept", "x"]
    np.testing.assert_allclose(with_offset.fixef, shifted.fixef, rtol=1e-10)
    assert with_offset.criterion == pytest.approx(shifted.criterion, rel=1e-12)
    np.testing.assert_allclose(with_offset.fitted - data.o, shifted.fitted, atol=1e-10)
    np.testing.assert_allclose(with_offset.residuals, shifted.residuals, atol=1e-10)


def test_offset_in_bayesian_fitted_and_predictions():
    data = _small().assign(o=lambda d: 3.0 + 0 * d.x)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = bayeslmm.fit("y ~ 0 + x + offset(o) + (1 | g)", data, draws=50, tune=50,
                           chains=1, cores=1, random_seed=2, progressbar=False)
    new = pd.concat([data.head(1)] * 3, ignore_index=True).assign(o=[0.0, 3.0, 10.0])
    mean = fit.predict(new, include_random=False).mean(("chain", "draw")).to_numpy()
    assert mean[2] - mean[1] == pytest.approx(7.0) and mean[1] - mean[0] == pytest.approx(3.0)
    np.testing.assert_allclose(fit.idata.observed_data["y"], data.y)


def test_double_parentheses_and_bare_bars():
    assert parse_formula("y ~ x + ((1 | g))").random[0].group == ("g",)
    with pytest.raises(ValueError, match="outside a random-effects term"):
        parse_formula("y ~ x + z | g + (1 | h)")


def test_repeated_and_collinear_random_terms_are_refused():
    data = _small().assign(x2=lambda d: 2 * d.x)
    with pytest.raises(ValueError, match="more than once"):
        build_spec("y ~ x + (1 | g) + (1 | g)", data)
    with pytest.raises(ValueError, match="collinear"):
        build_spec("y ~ x + (x + x2 | g)", data)
    for method in ("reml", "nuts"):
        with pytest.raises(ValueError, match="more than once"):
            bayeslmm.fit("y ~ x + (1 | g) + (1 | g)", data, method=method)


def test_sampler_arguments_are_checked(sleepstudy):
    model = Model("Reaction ~ Days + (1 | Subject)", sleepstudy)
    with pytest.raises(ValueError, match="cores"):
        model.fit(cores=0)
    with pytest.raises(ValueError, match="tune must be at least 1"):
        model.fit(tune=0)
    with pytest.warns(UserWarning, match="one chain"):
        model.fit(draws=30, tune=30, chains=1, cores=1, progressbar=False, random_seed=1)


def test_formula_cannot_call_arbitrary_functions(tmp_path, sleepstudy):
    target = tmp_path / "out.npy"
    formula = f"Reaction ~ np.save({str(target)!r}, Days) + (1 | Subject)"
    with pytest.raises(ValueError, match="np.save"):
        bayeslmm.fit(formula, sleepstudy, method="reml")
    assert not target.exists()
    for bad in ("y ~ os.system('true') + (1 | g)", "y ~ x.__class__ + (1 | g)",
                "y ~ I(__import__('os')) + (1 | g)"):
        with pytest.raises(ValueError):
            parse_formula(bad)
    assert parse_formula("y ~ np.log(x) + I(x ** 2) + scale(z) + C(f) + (1 | g)").fixed


def test_tampered_fit_file_runs_no_code(tmp_path, sleep_fit):
    import arviz as az

    path = sleep_fit.to_netcdf(str(tmp_path / "fit.nc"))
    target = tmp_path / "pwned.npy"
    idata = az.from_netcdf(path)
    idata.constant_data.attrs["formula"] = (
        f"Reaction ~ np.save({str(target)!r}, Days) + (Days | Subject)")
    tampered = str(tmp_path / "tampered.nc")
    idata.to_netcdf(tampered)
    with pytest.raises(ValueError, match="np.save"):
        bayeslmm.load(tampered)
    assert not target.exists()
    idata.constant_data.attrs["formula"] = sleep_fit.model.formula
    idata.constant_data.attrs["priors"] = '{"sigma": ["Model", {}]}'
    idata.to_netcdf(tampered)
    with pytest.raises(ValueError, match="not a bayeslmm prior"):
        bayeslmm.load(tampered)
