"""Design matrices of new rows, from the fitted model's own column and level definitions."""

from __future__ import annotations

import numpy as np
import pandas as pd

from .design import _simple_design
from .spec import ModelSpec

__all__ = ["row_labels", "new_data_design"]


def row_labels(frame: pd.DataFrame, names: tuple[str, ...]) -> np.ndarray:
    """Per-row level labels, formatted exactly as ``design._grouping`` formats levels."""
    parts = []
    for name in names:
        column = frame[name]
        if isinstance(column.dtype, pd.CategoricalDtype):
            text = column.astype(str).to_numpy()
        elif pd.api.types.is_float_dtype(column) and np.all(column == np.round(column)):
            text = column.astype(np.int64).astype(str).to_numpy()
        else:
            text = column.astype(str).to_numpy()
        parts.append(np.asarray(text, dtype=object))
    out = parts[0]
    for part in parts[1:]:
        out = out + ":" + part
    return out.astype(str)


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
            simple = _simple_design(block.expr, frame)
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
        index = {label: k for k, label in enumerate(block.levels)}
        codes = np.array([index.get(label, -1) for label in labels], dtype=np.intp)
        groups[block.factor] = (codes, columns, labels)
    return X, groups
