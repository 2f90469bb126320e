"""The model description: formula syntax with lme4's meaning, no dense Z."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bayeslmm import build_spec
from bayeslmm.datasets import load, names
from bayeslmm.formula import parse_formula


def _blocks(spec):
    return [(b.factor, b.terms, b.correlated) for b in spec.blocks]


def test_correlated_slope_is_one_block(sleepstudy):
    spec = build_spec("Reaction ~ Days + (Days | Subject)", sleepstudy)
    assert _blocks(spec) == [("Subject", ["Intercept", "Days"], True)]
    block = spec.blocks[0]
    assert block.n_levels == 18 and block.columns.shape == (180, 2)
    assert block.levels[:3] == ["308", "309", "310"]
    np.testing.assert_array_equal(block.columns[:, 1], sleepstudy.Days)


def test_double_bar_splits_into_independent_blocks(sleepstudy):
    spec = build_spec("Reaction ~ Days + (Days || Subject)", sleepstudy)
    assert _blocks(spec) == [("Subject", ["Intercept"], False), ("Subject", ["Days"], False)]


def test_zero_plus_slope_only(sleepstudy):
    spec = build_spec("Reaction ~ Days + (0 + Days | Subject)", sleepstudy)
    assert _blocks(spec) == [("Subject", ["Days"], True)]
    spec = build_spec("Reaction ~ Days + (1 | Subject) + (0 + Days | Subject)", sleepstudy)
    assert [b.terms for b in spec.blocks] == [["Intercept"], ["Days"]]


def test_nested_slash_expands_to_factor_and_interaction():
    spec = build_spec("strength ~ 1 + (1 | batch/cask)", load("pastes"))
    assert [(b.factor, b.n_levels) for b in spec.blocks] == [("batch", 10), ("batch:cask", 30)]
    assert spec.blocks[1].levels[:2] == ["A:a", "A:b"]


def test_interaction_grouping_matches_sample_column():
    pastes = load("pastes")
    spec = build_spec("strength ~ 1 + (1 | batch:cask)", pastes)
    block = spec.blocks[0]
    labels = np.array(block.levels)[block.codes]
    np.testing.assert_array_equal(labels, pastes["sample"].astype(str))


def test_categorical_random_slopes():
    insteval = load("insteval").iloc[:5000]
    spec = build_spec("y ~ 1 + (0 + studage | dept)", insteval)
    assert spec.blocks[0].terms == ["studage[2]", "studage[4]", "studage[6]", "studage[8]"]
    np.testing.assert_array_equal(spec.blocks[0].columns.sum(axis=1), 1.0)
    spec = build_spec("y ~ service + (service | dept)", insteval)
    assert spec.blocks[0].terms == ["Intercept", "service[1]"]


def test_double_bar_with_factor_follows_lme4():
    """lme4 expands (f || g) to (1 | g) + (0 + f | g): the factor's columns stay one block.
    The full dummy coding beside the intercept makes the two blocks' columns dependent (the
    intercept variance and the dummies' covariance trade off), which lme4 fits silently and
    we warn about."""
    insteval = load("insteval").iloc[:5000]
    with pytest.warns(UserWarning, match="linearly dependent within every level of 'dept'"):
        spec = build_spec("y ~ 1 + (studage || dept)", insteval)
    assert [b.terms for b in spec.blocks] == [
        ["Intercept"], ["studage[2]", "studage[4]", "studage[6]", "studage[8]"]]


def test_numeric_grouping_column_is_a_factor(sleepstudy):
    data = sleepstudy.assign(subj=sleepstudy.Subject.astype(int))
    spec = build_spec("Reaction ~ Days + (1 | subj)", data)
    assert spec.blocks[0].levels[:2] == ["308", "309"] and spec.blocks[0].n_levels == 18


def test_fixed_part_transformations(sleepstudy):
    data = sleepstudy.assign(logD=np.log1p(sleepstudy.Days), grp=sleepstudy.Days % 3)
    spec = build_spec("Reaction ~ scale(Days) + I(Days**2) + np.log1p(Days) + C(grp) + "
                      "(1 | Subject)", data)
    assert spec.x_names[0] == "Intercept" and len(spec.x_names) == 6
    np.testing.assert_allclose(spec.X[:, 3], data.logD)
    np.testing.assert_allclose(spec.X[:, 1].mean(), 0, atol=1e-12)
    spec0 = build_spec("Reaction ~ 0 + Days + (1 | Subject)", sleepstudy)
    assert spec0.x_names == ["Days"]
    spec1 = build_spec("Reaction ~ Days - 1 + (1 | Subject)", sleepstudy)
    assert spec1.x_names == ["Days"]


def test_interactions_and_reference_level():
    spec = build_spec("distance ~ age * Sex + (age | Subject)", load("orthodont"))
    assert spec.x_names == ["Intercept", "age", "Sex[Female]", "age:Sex[Female]"]


def test_random_only_formula_has_intercept(sleepstudy):
    spec = build_spec("Reaction ~ (1 | Subject)", sleepstudy)
    assert spec.x_names == ["Intercept"]


def test_z_is_never_dense():
    insteval = load("insteval")
    spec = build_spec("y ~ 1 + service + (1|s) + (1|d) + (1|dept:service)", insteval)
    for block in spec.blocks:
        assert block.columns.shape == (73421, 1)
    z = spec.blocks[0].sparse_z()
    assert z.shape == (73421, 2972) and z.nnz == 73421


def test_parse_formula_keeps_function_calls_with_bars():
    parsed = parse_formula("y ~ I(a | b) + (1 | g)")
    assert parsed.fixed == "I(a | b)" and len(parsed.random) == 1


def test_three_level_nesting():
    parsed = parse_formula("y ~ x + (1 | a/b/c)")
    assert [t.group for t in parsed.random] == [("a",), ("a", "b"), ("a", "b", "c")]


@pytest.mark.parametrize("name", names())
def test_datasets_load_with_factors(name):
    frame = load(name)
    assert len(frame) > 0
    assert any(isinstance(t, pd.CategoricalDtype) for t in frame.dtypes)


def test_orthodont_sex_reference_is_male():
    assert list(load("orthodont").Sex.cat.categories) == ["Male", "Female"]
    assert load("insteval").shape == (73421, 7)


def test_unknown_dataset():
    with pytest.raises(ValueError, match="unknown data set 'nope'"):
        load("nope")


def test_import_is_light_and_every_public_name_resolves():
    """``import bayeslmm`` loads nothing heavy (the kernel's compile helper relies on it);
    every name in ``__all__`` is there on first use."""
    import subprocess
    import sys

    code = """
import sys, bayeslmm
heavy = {"pandas", "scipy", "formulae", "numba", "arviz", "nutpie", "pymc"} & set(sys.modules)
assert not heavy, heavy
missing = [n for n in bayeslmm.__all__ if getattr(bayeslmm, n, None) is None]
assert not missing, missing
assert set(bayeslmm.__all__) <= set(dir(bayeslmm))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]


def _crossed_items(between_item: bool) -> pd.DataFrame:
    subj, item = np.meshgrid(np.arange(12), np.arange(8), indexing="ij")
    subj, item = subj.ravel(), item.ravel()
    x = np.where((item % 2 if between_item else (item + subj) % 2) == 0, 1.0, -1.0)
    rng = np.random.default_rng(0)
    return pd.DataFrame({"subj": subj, "item": item, "x": x, "y": rng.normal(size=subj.size)})


@pytest.mark.parametrize("term", ["(1 + x | item)", "(1 + x || item)",
                                  "(1 | item) + (0 + x | item)"])
def test_slope_constant_within_every_level_warns(sleepstudy, term):
    """A by-item slope on a between-item predictor: G of item is only partly identified
    (the kb07-shaped data had one until round 2 session 6); the warning names the term,
    also when the factor's columns are split over uncorrelated blocks."""
    formula = f"y ~ x + (1 | subj) + {term}"
    with pytest.warns(UserWarning, match=r"\['x'\] take one value within every level of 'item'"):
        build_spec(formula, _crossed_items(between_item=True))
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        build_spec(formula, _crossed_items(between_item=False))
        build_spec("Reaction ~ Days + (Days | Subject)", sleepstudy)
