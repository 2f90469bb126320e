"""Bad input: every case raises a clear error that names the problem."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import bayeslmm
from bayeslmm import build_spec


def test_unknown_column_lists_close_matches(sleepstudy):
    with pytest.raises(ValueError, match=r"unknown column 'Dayz'.*did you mean 'Days'"):
        build_spec("Reaction ~ Dayz + (1 | Subject)", sleepstudy)


def test_unknown_grouping_column(sleepstudy):
    with pytest.raises(ValueError, match=r"unknown column 'Subj'.*'Subject'"):
        build_spec("Reaction ~ Days + (1 | Subj)", sleepstudy)


@pytest.mark.parametrize(
    "formula",
    ["Reaction ~ Days + (1 | Subject", "Reaction Days", "~ Days + (1|Subject)",
     "Reaction ~ Days + ( | Subject)", "Reaction ~ Days +* (1|Subject)"],
)
def test_formula_that_does_not_parse_is_shown(sleepstudy, formula):
    with pytest.raises(ValueError, match="could not parse formula") as info:
        build_spec(formula, sleepstudy)
    assert repr(formula) in str(info.value)


def test_non_numeric_response(sleepstudy):
    with pytest.raises(TypeError, match=r"response 'Subject' must be numeric"):
        build_spec("Subject ~ Days + (1 | Subject)", sleepstudy)


def test_grouping_factor_with_one_level(sleepstudy):
    data = sleepstudy.assign(one="a")
    with pytest.raises(ValueError, match=r"grouping factor 'one'.*has 1 level"):
        build_spec("Reaction ~ Days + (1 | one)", data)


def test_as_many_random_effects_as_observations(sleepstudy):
    small = sleepstudy[sleepstudy.Days < 2].copy()  # 36 rows, 18 subjects x 2 terms
    with pytest.raises(ValueError, match=r"number of observations \(36\) is not more than "
                                         r"the number of random effects \(36"):
        build_spec("Reaction ~ Days + (Days | Subject)", small)


def test_factor_with_as_many_levels_as_rows(sleepstudy):
    data = sleepstudy.assign(row=np.arange(len(sleepstudy)))
    with pytest.raises(ValueError, match=r"'row'.*180 levels for 180 observations"):
        build_spec("Reaction ~ Days + (1 | row)", data)


def test_missing_rows_dropped_with_count(sleepstudy):
    data = sleepstudy.copy()
    data.loc[[0, 5, 7], "Reaction"] = np.nan
    data.loc[[9], "Days"] = np.nan
    with pytest.warns(UserWarning, match=r"dropped 4 of 180 rows .*Reaction \(3\), Days \(1\)"):
        spec = build_spec("Reaction ~ Days + (1 | Subject)", data)
    assert spec.n == 176 and spec.n_dropped == 4


def test_fit_reports_dropped_rows(sleepstudy):
    data = sleepstudy.copy()
    data.loc[[0, 1], "Days"] = np.nan
    with pytest.warns(UserWarning, match="dropped 2 of 180 rows"):
        fit = bayeslmm.fit("Reaction ~ Days + (1 | Subject)", data, method="reml")
    assert fit.nobs == 178
    assert "2 rows dropped" in fit.summary()
    assert 0 not in fit.fitted.index and 2 in fit.fitted.index


def test_missing_raise(sleepstudy):
    data = sleepstudy.copy()
    data.loc[3, "Subject"] = np.nan
    with pytest.raises(ValueError, match=r"1 of 180 rows have missing values.*Subject \(1\)"):
        build_spec("Reaction ~ Days + (1 | Subject)", data, missing="raise")


def test_missing_in_unused_column_is_ignored(sleepstudy):
    data = sleepstudy.assign(other=np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert build_spec("Reaction ~ Days + (1 | Subject)", data).n == 180


def test_no_rows_left(sleepstudy):
    data = sleepstudy.assign(Reaction=np.nan)
    with pytest.raises(ValueError, match="no rows left"):
        build_spec("Reaction ~ Days + (1 | Subject)", data)


def test_rank_deficient_x_drops_named_columns(sleepstudy):
    data = sleepstudy.assign(Days2=2 * sleepstudy.Days + 1)
    with pytest.warns(UserWarning, match=r"rank deficient so dropping 1 column.*: Days2"):
        spec = build_spec("Reaction ~ Days + Days2 + (1 | Subject)", data)
    assert spec.x_names == ["Intercept", "Days"]
    assert spec.dropped_columns == ["Days2"]
    with pytest.warns(UserWarning, match="Days2"):
        fit = bayeslmm.fit("Reaction ~ Days + Days2 + (1 | Subject)", data, method="reml")
    assert list(fit.fixef.index) == ["Intercept", "Days"]


def test_non_finite_after_transformation(sleepstudy):
    with pytest.raises(ValueError, match=r"np.log\(Days\).*non-finite"):
        build_spec("Reaction ~ np.log(Days) + (1 | Subject)", sleepstudy)


def test_no_random_effects_fits_least_squares(sleepstudy):
    """Issue 11: a formula without random terms is ordinary least squares (REML sigma is
    lm's residual SE, numpy's lstsq gives the coefficients); the Bayesian engine refuses."""
    fit = bayeslmm.fit("Reaction ~ Days", sleepstudy, method="reml")
    X = np.column_stack([np.ones(len(sleepstudy)), sleepstudy["Days"]])
    beta, rss, *_ = np.linalg.lstsq(X, sleepstudy["Reaction"], rcond=None)
    np.testing.assert_allclose(fit.fixef.to_numpy(), beta, rtol=1e-10)
    assert fit.sigma == pytest.approx(np.sqrt(rss[0] / (len(X) - 2)), rel=1e-10)
    with pytest.raises(ValueError, match="no random-effects terms"):
        bayeslmm.Model("Reaction ~ Days", sleepstudy)


def test_unknown_method(sleepstudy):
    with pytest.raises(ValueError, match="method must be one of"):
        bayeslmm.fit("Reaction ~ Days + (1|Subject)", sleepstudy, method="mcmc")


def test_data_must_be_dataframe():
    with pytest.raises(TypeError, match="data must be a pandas DataFrame"):
        build_spec("y ~ x + (1|g)", {"y": [1.0]})


def test_bad_missing_option(sleepstudy):
    with pytest.raises(ValueError, match="missing must be 'drop' or 'raise'"):
        build_spec("Reaction ~ Days + (1 | Subject)", sleepstudy, missing="ignore")


def test_grouping_by_expression_is_rejected(sleepstudy):
    with pytest.raises(ValueError, match="grouping factor 'np.log"):
        build_spec("Reaction ~ Days + (1 | np.log(Days))", sleepstudy)


def test_object_response_column():
    data = pd.DataFrame({"y": ["a", "b"] * 10, "g": list("abcde") * 4})
    with pytest.raises(TypeError, match="must be numeric"):
        build_spec("y ~ 1 + (1|g)", data)
