"""The engine-independent model description: ``ModelSpec`` and its ``RandomBlock`` list.

Both the REML engine and the PyMC builder read a ``ModelSpec``; neither knows about
formulas.  A model is

    y = X beta + sum_k Z_k b_k + e,   e ~ N(0, sigma^2 I),

and block k's random effects ``b_k`` are ``n_levels x q`` (one row of q effects per level
of its grouping factor, rows independent with covariance G_k).  Its design ``Z_k`` is
never stored densely: row i of ``Z_k`` has the q numbers ``columns[i]`` in the q slots of
level ``codes[i]`` and zeros elsewhere.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import scipy.sparse as sp

__all__ = ["GroupingKey", "RandomBlock", "ModelSpec", "level_text", "sparse_design"]


def sparse_design(codes: np.ndarray, columns: np.ndarray, n_levels: int,
                  fmt: str = "csr") -> sp.spmatrix:
    """A random-effects design Z as a sparse rows x (n_levels * q) matrix in format ``fmt``:
    row i holds its q ``columns`` at its level's place, columns level-major (level j's q
    columns are ``j*q .. j*q + q - 1``).  Never dense."""
    columns = np.asarray(columns, dtype=float)
    n, q = columns.shape
    rows = np.repeat(np.arange(n), q)
    cols = (np.asarray(codes)[:, None] * q + np.arange(q)[None, :]).ravel()
    return sp.coo_matrix((columns.ravel(), (rows, cols)),
                         shape=(n, n_levels * q)).asformat(fmt)


@dataclass
class GroupingKey:
    """How rows map to the levels of a grouping factor, by value (not by text).

    ``parts[i]`` is a pandas Index of grouping column i's distinct values in code order
    (category labels for a categorical), ``labels[i]`` their text, and ``present`` the
    combined keys (``sum code_i * prod sizes after i``) of the levels, in level order.
    """

    columns: tuple[str, ...]
    parts: list[pd.Index]
    labels: list[list[str]]
    present: np.ndarray

    def codes_of(self, frame: pd.DataFrame) -> np.ndarray:
        """Level code of every row of ``frame`` (-1 for a level not seen in fitting)."""
        combined = np.zeros(len(frame), dtype=np.int64)
        unseen = np.zeros(len(frame), dtype=bool)
        for name, index, labels in zip(self.columns, self.parts, self.labels, strict=True):
            column = frame[name]
            if isinstance(column.dtype, pd.CategoricalDtype):
                column = column.astype(str).astype(object)
            values = column.to_numpy()
            codes = np.asarray(index.get_indexer(values), dtype=np.int64)
            if (codes < 0).any():  # a value of another type: match its text (object ints
                by_text = {text: k for k, text in enumerate(labels)}  # after save/load)
                missing = np.flatnonzero(codes < 0)
                codes[missing] = [by_text.get(_text_of(values[i]), -1) for i in missing]
            unseen |= codes < 0
            combined = combined * len(index) + np.maximum(codes, 0)
        position = np.searchsorted(self.present, combined)
        position = np.minimum(position, len(self.present) - 1)
        found = (self.present[position] == combined) & ~unseen
        return np.where(found, position, -1).astype(np.intp)


def _text_of(value) -> str:
    if isinstance(value, float | np.floating) and float(value).is_integer():
        return str(int(value))
    return str(value)


def level_text(values: np.ndarray) -> list[str]:
    """Text of a grouping column's distinct values: integral floats print as integers."""
    return [_text_of(v) for v in values]


@dataclass
class RandomBlock:
    """One random-effects block: a grouping factor and q per-row design columns.

    Attributes
    ----------
    factor : str
        Grouping-factor name (``"Subject"``, ``"dept:service"``).
    codes : ndarray of int, shape (n,)
        Level index of every row, in ``0 .. n_levels - 1``.
    levels : list of str
        Level labels, in code order.
    columns : ndarray of float, shape (n, q)
        Per-row design columns (``Z``'s nonzeros).
    terms : list of str
        Names of the q columns (``"Intercept"``, ``"Days"``, ``"f[b]"``).
    correlated : bool
        Whether the q effects have a full covariance (``(x | g)``); False for the
        1 x 1 blocks that ``(x || g)`` expands into.
    group_columns : tuple of str
        Data columns whose interaction is the grouping factor (for new data).
    expr : str
        The expression that produced ``columns`` (for new data).
    design : object or None
        formulae's design of ``expr`` (None when built by the plain-column fast path).
    grouping : GroupingKey or None
        The level values of each grouping column, to find new rows' levels by value.
    structure : str
        The covariance pattern of G: ``"us"`` (free; ``(x | g)``), ``"diag"``, ``"cs"``,
        ``"ar1"`` (``diag(x | g)`` ... in the formula; ``core/covariance.py``).
    """

    factor: str
    codes: np.ndarray
    levels: list[str]
    columns: np.ndarray
    terms: list[str]
    correlated: bool = True
    group_columns: tuple[str, ...] = ()
    expr: str = ""
    design: object | None = field(default=None, repr=False)
    grouping: GroupingKey | None = field(default=None, repr=False)
    structure: str = "us"

    @property
    def n_levels(self) -> int:
        return len(self.levels)

    @property
    def q(self) -> int:
        return self.columns.shape[1]

    @property
    def n_effects(self) -> int:
        return self.n_levels * self.q

    def sparse_z(self) -> sp.csc_matrix:
        """Z as a sparse n x (n_levels * q) matrix (``sparse_design``)."""
        return sparse_design(self.codes, self.columns, self.n_levels, "csc")

    def z_times(self, effects: np.ndarray) -> np.ndarray:
        """Z b for effects given as an (n_levels, q) array (or (..., n_levels, q))."""
        return np.einsum("...iq,iq->...i", effects[..., self.codes, :], self.columns)


@dataclass
class ModelSpec:
    """Everything an engine needs to fit ``y = X beta + Z b + e``.

    Attributes
    ----------
    formula : str
        The formula as given.
    response : str
        Name of the response expression.
    y : ndarray, shape (n,)
    X : ndarray, shape (n, p)
    x_names : list of str
        Column names of ``X`` (formulae's naming: ``Intercept``, ``Sex[Female]``).
    blocks : list of RandomBlock
        In formula order.
    row_index : pandas.Index
        Index labels (in the input DataFrame) of the rows used.
    n_dropped : int
        Rows dropped for missing values.
    dropped_columns : list of str
        Fixed-effect columns dropped because X was rank deficient.
    fixed_design : object
        formulae's ``CommonEffectsMatrix`` of the fixed part, for new data.
    columns : list of str
        Data columns the formula uses.
    row_positions : ndarray of int
        Positions (``iloc``) in the input DataFrame of the rows used (its index labels may
        repeat).
    offset : ndarray or None, shape (n,)
        Known term with coefficient 1 (``offset(expr)``, lme4's meaning); ``y`` is the
        response minus the offset, so every engine fits it without knowing.
    offset_exprs : tuple of str
        The offset expressions (for new data).
    """

    formula: str
    response: str
    y: np.ndarray
    X: np.ndarray
    x_names: list[str]
    blocks: list[RandomBlock]
    row_index: pd.Index
    n_dropped: int = 0
    dropped_columns: list[str] = field(default_factory=list)
    fixed_design: object | None = None
    columns: list[str] = field(default_factory=list)
    row_positions: np.ndarray | None = None
    offset: np.ndarray | None = None
    offset_exprs: tuple[str, ...] = ()

    @property
    def response_values(self) -> np.ndarray:
        """The response as observed (``y`` plus the offset)."""
        return self.y if self.offset is None else self.y + self.offset

    @property
    def offset_values(self) -> np.ndarray:
        return np.zeros(self.n) if self.offset is None else self.offset

    @property
    def n(self) -> int:
        return self.y.shape[0]

    @property
    def p(self) -> int:
        return self.X.shape[1]

    def block_order(self) -> list[int]:
        """Indices of ``blocks`` by number of levels, most first (stable): the order of
        lme4, MixedModels.jl and every engine here."""
        return sorted(range(len(self.blocks)), key=lambda k: -self.blocks[k].n_levels)

    def factors(self) -> dict[str, int]:
        """Number of levels of each grouping factor, in block order."""
        return {block.factor: block.n_levels for block in self.blocks}
