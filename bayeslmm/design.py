"""Build a :class:`~bayeslmm.spec.ModelSpec` from a formula and a DataFrame.

Steps: split the formula (``formula.py``), check every column it names, drop (or refuse)
rows with missing values, then let formulae build the fixed design and each random
term's per-row columns, and build the grouping factors' level codes here.

Factor level order follows R: an unordered pandas categorical keeps its category order
(formulae would sort it, so it is handed over as an ordered categorical), unused
categories are dropped, and other non-numeric columns are sorted.
"""

from __future__ import annotations

import difflib
import re
import warnings

import numpy as np
import pandas as pd
from formulae import design_matrices, model_description

from .formula import ParsedFormula, RandomTerm, parse_formula
from .spec import GroupingKey, ModelSpec, RandomBlock, level_text

__all__ = ["build_spec", "offset_values", "prepare_for_formulae", "simple_design"]

_COLUMN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
RANK_TOLERANCE = 1e-7  # lme4's default tolerance for dropping aliased X columns


def _formulae_call(what: str, formula: str, func, *args, **kwargs):
    """Run a formulae function; turn its parse errors into a ValueError naming the formula."""
    try:
        return func(*args, **kwargs)
    except Exception as err:  # formulae's ParseError/ScanError derive from Exception only
        raise ValueError(f"could not parse formula {formula!r} ({what}): {err}") from None


def _variables(expr: str, formula: str) -> set[str]:
    """Column names that a (one-sided) formulae expression reads."""
    description = _formulae_call(expr, formula, model_description, expr)
    names: set[str] = set()
    if getattr(description, "response", None) is not None:
        names |= set(description.response.var_names)
    for term in description.terms:
        names |= set(getattr(term, "var_names", set()))
    names.discard("")
    return names


def _check_columns(names: set[str], data: pd.DataFrame, formula: str) -> None:
    columns = [str(c) for c in data.columns]
    for name in sorted(names):
        if name not in data.columns:
            close = difflib.get_close_matches(name, columns, n=3, cutoff=0.6)
            hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            raise ValueError(
                f"unknown column {name!r} in formula {formula!r}{hint} "
                f"(data has columns: {', '.join(columns)})"
            )


def _drop_missing(
    data: pd.DataFrame, columns: list[str], missing: str
) -> tuple[pd.DataFrame, int, np.ndarray]:
    if missing not in ("drop", "raise"):
        raise ValueError(f"missing must be 'drop' or 'raise', got {missing!r}")
    used = data[columns]
    na_rows = used.isna().any(axis=1).to_numpy()
    n_na = int(na_rows.sum())
    if n_na == 0:
        return used, 0, np.ones(len(data), dtype=bool)
    counts = used.isna().sum()
    detail = ", ".join(f"{col} ({int(k)})" for col, k in counts.items() if k > 0)
    if missing == "raise":
        raise ValueError(
            f"{n_na} of {len(data)} rows have missing values (NaN) in columns used by the "
            f"model: {detail}; drop them first or use missing='drop'"
        )
    if n_na == len(data):
        raise ValueError(
            f"no rows left: all {len(data)} rows have missing values in columns {detail}"
        )
    warnings.warn(
        f"dropped {n_na} of {len(data)} rows with missing values in columns: {detail}",
        UserWarning,
        stacklevel=4,
    )
    return used.iloc[np.flatnonzero(~na_rows)], n_na, ~na_rows


def prepare_for_formulae(frame: pd.DataFrame) -> pd.DataFrame:
    """Keep R's level order: formulae honours category order only for ordered categoricals."""
    frame = frame.copy()
    for col in frame.columns:
        values = frame[col]
        if isinstance(values.dtype, pd.CategoricalDtype):
            values = values.cat.remove_unused_categories()
            frame[col] = values.cat.as_ordered()
        elif values.dtype == bool:
            frame[col] = values.astype(float)
    return frame


def _check_response(parsed: ParsedFormula, frame: pd.DataFrame, names: set[str]) -> None:
    for name in names:
        column = frame[name]
        if not (pd.api.types.is_numeric_dtype(column) or column.dtype == bool):
            raise TypeError(
                f"response {parsed.response!r} must be numeric, but column {name!r} has "
                f"dtype {column.dtype}"
            )


def _finite_or_raise(values: np.ndarray, names: list[str], what: str) -> None:
    bad = ~np.isfinite(values)
    if bad.any():
        cols = bad.any(axis=0) if values.ndim == 2 else np.array([True])
        which = [n for n, b in zip(names, cols, strict=True) if b]
        raise ValueError(
            f"{what} {', '.join(which)} has {int(bad.sum())} non-finite values (inf or NaN) "
            "after transformation, e.g. log of zero"
        )


def _drop_aliased(X: np.ndarray, names: list[str]) -> tuple[np.ndarray, list[str], list[str]]:
    """Drop columns that are linear combinations of earlier ones (lme4 keeps the first)."""
    if X.shape[1] == 0:
        return X, names, []
    r = np.linalg.qr(X, mode="r")
    scale = np.linalg.norm(X, axis=0)
    diag = np.abs(np.diag(r))[: X.shape[1]]
    if diag.shape[0] < X.shape[1]:
        diag = np.concatenate([diag, np.zeros(X.shape[1] - diag.shape[0])])
    # |R_jj| is the norm of column j's part orthogonal to all earlier columns
    keep = (diag > RANK_TOLERANCE * scale) & (scale > 0)
    if keep.all():
        return X, names, []
    dropped = [n for n, k in zip(names, keep, strict=True) if not k]
    return X[:, keep], [n for n, k in zip(names, keep, strict=True) if k], dropped


def _sorted_codes(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``np.unique(values, return_inverse=True)``, by hashing first: only the distinct
    values are sorted (a million string labels: ~0.1 s instead of ~1.5 s)."""
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    if codes.size and codes.min() < 0:  # missing labels: np.unique's own handling
        return np.unique(values, return_inverse=True)
    uniques, inverse = np.unique(np.asarray(uniques), return_inverse=True)
    return uniques, inverse[codes]


def _grouping(frame: pd.DataFrame, names: tuple[str, ...]
              ) -> tuple[np.ndarray, list[str], GroupingKey]:
    """Level codes, labels and the by-value key of the (interaction of the) grouping
    columns; ``frame`` holds the columns as given (bools still bool)."""
    parts_codes, parts_labels, parts_index = [], [], []
    for name in names:
        column = frame[name]
        if isinstance(column.dtype, pd.CategoricalDtype):
            column = column.cat.remove_unused_categories()
            codes = column.cat.codes.to_numpy()
            labels = [str(c) for c in column.cat.categories]
            index = pd.Index(labels, dtype=object)
        else:
            uniques, codes = _sorted_codes(column.to_numpy())
            labels = level_text(uniques)
            index = pd.Index(uniques)
        parts_codes.append(np.asarray(codes, dtype=np.int64))
        parts_labels.append(labels)
        parts_index.append(index)
    if len(names) == 1:  # every level is present
        key = GroupingKey(tuple(names), parts_index, parts_labels,
                          np.arange(len(parts_labels[0]), dtype=np.int64))
        return parts_codes[0].astype(np.intp), parts_labels[0], key
    combined = np.zeros(len(frame), dtype=np.int64)
    for codes, labels in zip(parts_codes, parts_labels, strict=True):
        combined = combined * len(labels) + codes
    # interaction: combinations present, ordered with the first factor varying slowest
    present, codes = np.unique(combined, return_inverse=True)
    key = GroupingKey(tuple(names), parts_index, parts_labels, present)
    labels = []
    for value in present:
        pieces = []
        for part in reversed(parts_labels):
            value, rem = divmod(int(value), len(part))
            pieces.append(part[rem])
        labels.append(":".join(reversed(pieces)))
    return codes.astype(np.intp), labels, key


def simple_design(expr: str, frame: pd.DataFrame) -> tuple[np.ndarray, list[str]] | None:
    """Fast path for the common ``1``, ``x``, ``1 + x``, ``0 + x + z`` with numeric columns:
    the same columns and names formulae would give, without its parse/evaluate cost."""
    intercept, names = True, []
    for token in (t.strip() for t in expr.split("+")):
        if token == "1":
            continue
        if token in ("0", "-1"):
            intercept = False
        elif token.startswith("-1") or not _COLUMN.match(token) or token not in frame:
            return None
        elif not pd.api.types.is_numeric_dtype(frame[token]) or token in names:
            return None
        else:
            names.append(token)
    columns = [frame[name].to_numpy(dtype=float) for name in names]
    if intercept:
        columns.insert(0, np.ones(len(frame)))
        names.insert(0, "Intercept")
    return np.column_stack(columns) if columns else np.empty((len(frame), 0)), names


def _design(expr: str, frame: pd.DataFrame, formula: str):
    """Columns, names and formulae's design object (None on the fast path) of ``expr``."""
    simple = simple_design(expr, frame)
    if simple is not None:
        return (*simple, None)
    matrices = _formulae_call(expr, formula, design_matrices, expr, frame, na_action="error")
    common = matrices.common
    if common is None:
        return np.empty((len(frame), 0)), [], None
    table = common.as_dataframe()
    return np.asarray(table, dtype=float), [str(c) for c in table.columns], common


def _random_blocks(
    term: RandomTerm, frame: pd.DataFrame, formula: str, n: int, raw: pd.DataFrame
) -> list[RandomBlock]:
    codes, levels, key = _grouping(raw, term.group)
    factor = term.factor_name
    if len(levels) < 2:
        raise ValueError(
            f"grouping factor {factor!r} in {term.source!r} has {len(levels)} level"
            f"{'s' if len(levels) != 1 else ''}; a random effect needs at least 2 levels"
        )
    if len(levels) >= n:
        raise ValueError(
            f"grouping factor {factor!r} in {term.source!r} has {len(levels)} levels for "
            f"{n} observations; the number of levels must be less than the number of "
            "observations (lme4's check), or the random effect is confounded with the residual"
        )
    if term.independent:
        description = _formulae_call(term.expr, formula, model_description, term.expr)
        pieces = []
        for sub in description.terms:
            expr = "1" if type(sub).__name__ == "Intercept" else f"0 + {sub.name}"
            pieces.append((expr, *_design(expr, frame, formula)))
    else:
        pieces = [(term.expr, *_design(term.expr, frame, formula))]
    blocks = []
    for expr, columns, names, design in pieces:
        if columns.shape[1] == 0:
            continue
        _finite_or_raise(columns, names, f"random-effects column(s) of {term.source!r}:")
        block = RandomBlock(
            factor, codes, levels, columns, names,
            correlated=not term.independent and term.structure != "diag",
            group_columns=term.group, expr=expr, design=design, grouping=key,
            structure=term.structure,
        )
        if term.structure in ("cs", "ar1") and block.q < 2:
            raise ValueError(f"{term.source!r} has {block.q} random-effects term; {term.structure}"
                             "() needs at least 2 (e.g. ar1(0 + time | g) with a factor time)")
        if block.n_effects >= n:
            raise ValueError(
                f"the number of observations ({n}) is not more than the number of random "
                f"effects ({block.n_effects} = {block.n_levels} levels x {block.q} terms) for "
                f"term {term.source!r}; the random-effects parameters and the residual variance "
                "are probably unidentifiable (lme4's check)"
            )
        blocks.append(block)
    if not blocks:
        raise ValueError(f"random-effects term {term.source!r} has no columns")
    return blocks


def build_spec(formula: str, data: pd.DataFrame, missing: str = "drop",
               extra_columns: tuple[str, ...] = ()) -> ModelSpec:
    """Turn an lme4-style formula and a DataFrame into a :class:`ModelSpec`.

    Parameters
    ----------
    formula : str
        ``"y ~ x + (x | g)"``; fixed part in formulae syntax (``C()``, ``scale()``,
        ``center()``, ``I()``, ``np.log(x)``, interactions, ``0 +``), random terms
        ``(e | g)``, ``(e || g)``, ``(e | a/b)``, ``(e | a:b)``.
    data : pandas.DataFrame
    missing : {"drop", "raise"}
        Rows with a missing value in any used column are dropped with a warning that
        counts them (default) or make this function raise.
    extra_columns : tuple of str
        Further columns the model uses (a residual structure's occasion and group): checked
        and their missing values dropped like the formula's.

    Returns
    -------
    ModelSpec

    Raises
    ------
    ValueError
        Unknown column, unparsable formula, grouping factor with fewer than 2 levels or
        as many levels as rows, too many random effects, no rows left, non-finite values.
    TypeError
        Non-numeric response, ``data`` not a DataFrame.

    Notes
    -----
    A rank-deficient X is not an error: as lme4 does, the aliased columns (each a linear
    combination of earlier ones) are dropped with a warning that names them.
    """
    if not isinstance(data, pd.DataFrame):
        raise TypeError(f"data must be a pandas DataFrame, got {type(data).__name__}")
    parsed = parse_formula(formula)
    fixed_formula = f"{parsed.response} ~ {parsed.fixed}"
    response_vars = _variables(parsed.response, formula)
    fixed_vars = _variables(parsed.fixed, formula) if parsed.fixed not in ("0", "1") else set()
    offset_vars: set[str] = set()
    for expr in parsed.offsets:
        offset_vars |= _variables(expr, formula)
    used = set(response_vars) | fixed_vars | offset_vars
    for term in parsed.random:
        used |= _variables(term.expr, formula) if term.expr not in ("0", "1") else set()
        used |= set(term.group)
    used |= set(extra_columns)
    _check_columns(used, data, formula)
    if "Intercept" in used:
        raise ValueError(
            f"formula {formula!r} uses a data column named 'Intercept', which is also the "
            "name of the intercept's coefficient; rename the column")
    columns = [c for c in data.columns if c in used]
    positions = np.arange(len(data))
    raw, n_dropped, kept = _drop_missing(data, columns, missing)
    positions = positions[kept]
    _check_response(parsed, raw, response_vars)
    frame = prepare_for_formulae(raw)

    matrices = _formulae_call("fixed part", formula, design_matrices, fixed_formula, frame,
                              na_action="error")
    y = np.asarray(matrices.response.design_matrix, dtype=float).reshape(-1)
    _finite_or_raise(y, [parsed.response], "response")
    offset = None
    if parsed.offsets:
        offset = offset_values(parsed.offsets, frame, formula)
        _finite_or_raise(offset, ["offset"], "offset")
    if np.ptp(y if offset is None else y - offset) == 0:
        raise ValueError(f"the response {parsed.response!r} is constant "
                         f"({y[0]:.6g} in every used row): there is nothing to fit")
    if matrices.common is None:
        X, x_names = np.empty((len(frame), 0)), []
    else:
        table = matrices.common.as_dataframe()
        X, x_names = np.asarray(table, dtype=float), [str(c) for c in table.columns]
    _finite_or_raise(X, x_names, "fixed-effect column(s)")
    X, x_names, dropped = _drop_aliased(X, x_names)
    if dropped:
        warnings.warn(
            f"fixed-effect model matrix is rank deficient so dropping {len(dropped)} "
            f"column{'s' if len(dropped) > 1 else ''} / coefficient"
            f"{'s' if len(dropped) > 1 else ''}: {', '.join(dropped)}",
            UserWarning,
            stacklevel=2,
        )
    n = len(frame)
    if n <= X.shape[1]:
        raise ValueError(f"{n} observations are not enough for {X.shape[1]} fixed effects")
    blocks: list[RandomBlock] = []
    for term in parsed.random:
        blocks.extend(_random_blocks(term, frame, formula, n, raw))
    _check_identified(blocks, formula)
    return ModelSpec(
        formula=formula,
        response=parsed.response,
        y=y if offset is None else y - offset,
        X=X,
        x_names=x_names,
        blocks=blocks,
        row_index=frame.index,
        n_dropped=n_dropped,
        dropped_columns=dropped,
        fixed_design=matrices.common,
        columns=columns,
        row_positions=positions,
        offset=offset,
        offset_exprs=parsed.offsets,
    )


def offset_values(exprs: tuple[str, ...], frame: pd.DataFrame, formula: str) -> np.ndarray:
    """The sum of the ``offset(expr)`` terms, evaluated on ``frame``."""
    total = np.zeros(len(frame))
    for expr in exprs:
        if _COLUMN.match(expr) and expr in frame:
            total += frame[expr].to_numpy(dtype=float)
            continue
        columns = _design(f"0 + I({expr})", frame, formula)[0]
        total += columns[:, 0]
    return total


def _check_identified(blocks: list[RandomBlock], formula: str) -> None:
    """Refuse random-effects columns that are not identified: the same term twice on one
    factor (``(1 | g) + (1 | g)``) or collinear columns within a term
    (``(x + I(2 * x) | g)``).  Their
    SDs would be arbitrary (REML) or not identified (Bayes)."""
    by_factor: dict[str, list[RandomBlock]] = {}
    for block in blocks:
        by_factor.setdefault(block.factor, []).append(block)
    for factor, group in by_factor.items():
        names = [t for b in group for t in b.terms]
        repeated = sorted({t for t in names if names.count(t) > 1})
        if repeated:
            raise ValueError(
                f"formula {formula!r} has the random-effects term(s) {repeated} of "
                f"{factor!r} more than once; their variances are not identified")
        for block in group:  # within one block (across blocks lme4 allows (f || g))
            columns = block.columns
            scale = np.linalg.norm(columns, axis=0)
            if columns.shape[1] < 2 and (scale > 0).all():
                continue
            r = np.linalg.qr(columns / np.where(scale > 0, scale, 1.0), mode="r")
            diag = np.abs(np.diagonal(r))
            if diag.size < columns.shape[1] or (diag < 1e-10).any() or (scale == 0).any():
                raise ValueError(
                    f"the random-effects columns of {factor!r} ({', '.join(block.terms)}) "
                    f"in formula {formula!r} are collinear (or zero): their variances are "
                    "not identified; drop one")
        _warn_dependent_within_levels(group)


def _warn_dependent_within_levels(group: list[RandomBlock]) -> None:
    """Warn when one factor's random-effect columns (its blocks together: ``(1 + x || g)``
    is two blocks) are linearly dependent inside every level, typically a slope on a
    predictor that never varies within a level (a between-item factor with a by-item slope):
    G is then only partly identified, the REML fit lands anywhere on a ridge and the
    posterior follows the prior along it."""
    block = group[0]
    terms = [t for b in group for t in b.terms]
    raw = np.column_stack([b.columns for b in group])
    q = raw.shape[1]
    if q < 2:
        return
    columns = raw / np.maximum(np.linalg.norm(raw, axis=0), 1e-300)
    m = len(block.levels)
    gram = np.empty((m, q, q))
    for a in range(q):  # per-level Z_j'Z_j without an n x q x q temporary
        for b in range(a + 1):
            gram[:, a, b] = gram[:, b, a] = np.bincount(
                block.codes, weights=columns[:, a] * columns[:, b], minlength=m)
    eig = np.linalg.eigvalsh(gram)
    if not (eig[:, 0] <= 1e-10 * np.maximum(eig[:, -1], 1e-300)).all():
        return
    counts = np.maximum(np.bincount(block.codes, minlength=m), 1)
    means = np.stack([np.bincount(block.codes, weights=columns[:, a], minlength=m)
                      for a in range(q)], axis=1) / counts[:, None]
    spread = np.abs(columns - means[block.codes]).max(axis=0)
    constant = [t for t, s, c in zip(terms, spread, raw.T, strict=True)
                if s <= 1e-12 and t != "Intercept" and np.ptp(c) > 0]
    what = (f"the term(s) {constant} take one value within every level of {block.factor!r} "
            "(between-level predictors)" if constant else
            f"the columns ({', '.join(terms)}) are linearly dependent within every "
            f"level of {block.factor!r}")
    bar = "|" if len(group) == 1 else "||"
    warnings.warn(
        f"In ({' + '.join(terms)} {bar} {block.factor}) {what}: their variances and "
        "correlations are only partly identified (REML may stop anywhere on a ridge; the "
        "posterior follows the prior along it). Consider dropping those terms from the "
        f"random part of {block.factor!r}.", UserWarning, stacklevel=4)
