"""Inference (issue 12) against lmerTest 3.1-3 and lme4 1.1-31 (goldens:
tests/golden/inference_lmertest.json, made by tests/golden/scripts/inference_lmertest.R):
Satterthwaite df within 1e-4 relative, p within 1e-6 absolute or 1e-4 relative."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import bayeslmm
from bayeslmm.datasets import load

from .conftest import GOLDEN

REF = json.loads((GOLDEN / "inference_lmertest.json").read_text())


def _orthodont():
    d = load("orthodont").copy()
    d["Sex"] = pd.Categorical(d["Sex"].astype(str), categories=["Male", "Female"])
    return d


CASES = {
    "sleepstudy": ("Reaction ~ Days + (Days | Subject)", lambda: load("sleepstudy")),
    "orthodont": ("distance ~ age * Sex + (age | Subject)", _orthodont),
    "ergostool": ("effort ~ Type + (1 | Subject)", lambda: load("ergostool")),
    "crossed": ("rt ~ 1 + spkr + prec + load + (1 + spkr | subj) + (1 | item)",
                lambda: pd.read_csv(Path(GOLDEN) / "data" / "kb07.csv")),
    "nested": ("strength ~ 1 + (1 | batch / cask)", lambda: load("pastes")),
}


@pytest.fixture(scope="module")
def fits():
    out = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, (formula, make) in CASES.items():
            out[name] = bayeslmm.fit(formula, make(), method="reml")
    return out


def _close_p(ours, theirs):
    ours, theirs = np.asarray(ours, float), np.asarray(theirs, float)
    ok = (np.abs(ours - theirs) <= 1e-6) | (np.abs(ours - theirs) <= 1e-4 * np.abs(theirs))
    assert ok.all(), (ours, theirs)


@pytest.mark.parametrize("case", sorted(CASES))
def test_satterthwaite_coef_table(case, fits):
    ref = REF[case]["satterthwaite"]
    table = fits[case].coef_table()
    assert list(table.columns) == ["estimate", "se", "df", "t", "p"]
    np.testing.assert_allclose(table["df"], ref["df"], rtol=1e-4)
    np.testing.assert_allclose(table["se"], ref["se"], rtol=1e-5)
    _close_p(table["p"], ref["p"])


@pytest.mark.parametrize("case", ["sleepstudy", "orthodont", "ergostool", "crossed"])
def test_type3_anova(case, fits):
    ref = REF[case]["anova_satterthwaite"]
    table = fits[case].anova()
    terms = ref["terms"] if isinstance(ref["terms"], list) else [ref["terms"]]
    assert list(table.index) == terms
    np.testing.assert_array_equal(table["num_df"], np.atleast_1d(ref["num_df"]))
    np.testing.assert_allclose(table["den_df"], np.atleast_1d(ref["den_df"]), rtol=1e-4)
    np.testing.assert_allclose(table["F"], np.atleast_1d(ref["F"]), rtol=1e-5)
    _close_p(table["p"], np.atleast_1d(ref["p"]))


def test_linear_hypotheses(fits):
    fit = fits["orthodont"]
    ref = REF["orthodont"]["contest_satterthwaite"]
    res = fit.test("Sex[Female] = 0, age:Sex[Female] = 0")
    assert res["num_df"] == ref["num_df"]
    assert res["den_df"] == pytest.approx(ref["den_df"], rel=1e-4)
    assert res["F"] == pytest.approx(ref["F"], rel=1e-6)
    _close_p([res["p"]], [ref["p"]])
    L = np.array([[0, 0, 1, 0], [0, 0, 0, 1.0]])
    assert fit.test(L)["F"] == pytest.approx(res["F"], rel=1e-12)
    one = fit.test("age = 0")  # one row: the coefficient's t test
    row = fit.coef_table().loc["age"]
    assert one["t"] == pytest.approx(row["t"]) and one["p"] == pytest.approx(row["p"])
    shifted = fit.test("age = 0.5")
    assert shifted["estimate"] == pytest.approx(row["estimate"] - 0.5)
    both = fit.test("age - 2 * age:Sex[Female] = 0")
    assert np.isfinite(both["p"])


def test_other_ddf_and_errors(fits):
    fit = fits["sleepstudy"]
    z = fit.coef_table(ddf=None)
    assert np.isinf(z["df"]).all()
    res = fit.coef_table(ddf="residual")
    assert (res["df"] == 178).all()
    with pytest.raises(NotImplementedError, match="kenward-roger"):
        fit.coef_table(ddf="kenward-roger")
    with pytest.raises(ValueError, match="ddf must be"):
        fit.coef_table(ddf="bogus")
    with pytest.raises(ValueError, match="not a fixed effect"):
        fit.test("Nights = 0")
    with pytest.raises(ValueError, match="one '='"):
        fit.test("Days")
    assert "Pr(>|t|)" in fit.summary()
