"""Design matrices of new rows, from the fitted model's own column and level definitions."""

from __future__ import annotations

import numpy as np
import pandas as pd

from .design import offset_values, prepare_for_formulae, simple_design
from .spec import ModelSpec, level_text

__all__ = ["row_labels", "new_data_design", "new_data_offset"]


def row_labels(frame: pd.DataFrame, names: tuple[str, ...]) -> np.ndarray:
    """Per-row level text (values joined by ``:``), as ``design._grouping`` writes levels;
    used to tell unseen levels apart (seen ones are found by value: ``GroupingKey``)."""
    parts = []
    for name in names:
        column = frame[name]
        values = (column.astype(str) if isinstance(column.dtype, pd.CategoricalDtype)
                  else column).to_numpy()
        parts.append(np.asarray(level_text(values), dtype=object))
    out = parts[0]
    for part in parts[1:]:
        out = out + ":" + part
    return out.astype(str)


def new_data_offset(spec: ModelSpec, newdata: pd.DataFrame) -> np.ndarray:
    """The model's offset evaluated on new rows (zeros without one)."""
    if not spec.offset_exprs:
        return np.zeros(len(newdata))

    missing = [c for c in spec.columns if c not in newdata and c != spec.response]
    if missing:
        raise ValueError(f"newdata lacks column(s) {missing} used by {spec.formula!r}")
    values = offset_values(spec.offset_exprs, prepare_for_formulae(newdata), spec.formula)
    if not np.isfinite(values).all():
        raise ValueError("newdata has missing or non-finite values in the offset")
    return values


def new_data_design(spec: ModelSpec, newdata: pd.DataFrame, include_random: bool = True):
    """X of the new rows and, per grouping factor, (codes, columns, labels).

    ``codes`` is -1 for levels not seen in fitting.  Raises ValueError for missing values.
    """
    if not isinstance(newdata, pd.DataFrame):
        raise TypeError(f"newdata must be a pandas DataFrame, got {type(newdata).__name__}")
    frame = newdata.copy()
    for col in frame.columns:
        if isinstance(frame[col].dtype, pd.CategoricalDtype):
            frame[col] = frame[col].astype(str)
    if spec.p:
        try:
            table = spec.fixed_design.evaluate_new_data(frame).as_dataframe()
        except (KeyError, ValueError) as err:
            raise ValueError(f"newdata cannot be used with {spec.formula!r}: {err}") from None
        X = table[spec.x_names].to_numpy(dtype=float)
    else:
        X = np.empty((len(frame), 0))
    if not np.isfinite(X).all():
        raise ValueError("newdata has missing or non-finite values in fixed-effect columns")
    groups: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    if not include_random:
        return X, groups
    for block in spec.blocks:
        missing = [c for c in block.group_columns if c not in frame]
        if missing:
            raise ValueError(f"newdata lacks grouping column(s) {missing} of {block.factor!r}")
        if block.design is None:
            simple = simple_design(block.expr, frame)
            if simple is None:
                raise ValueError(f"newdata lacks the columns of random term {block.expr!r}")
            columns = simple[0]
        else:
            columns = np.asarray(block.design.evaluate_new_data(frame).design_matrix,
                                 dtype=float)
        if frame[list(block.group_columns)].isna().any().any() or not np.isfinite(columns).all():
            raise ValueError(f"newdata has missing values in the columns of {block.factor!r}")
        if block.factor in groups:
            codes, previous, labels = groups[block.factor]
            groups[block.factor] = (codes, np.column_stack([previous, columns]), labels)
            continue
        labels = row_labels(frame, block.group_columns)
        codes = block.grouping.codes_of(newdata)  # by value, as in fitting
        groups[block.factor] = (codes, columns, labels)
    return X, groups
