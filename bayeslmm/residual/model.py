"""``ResidualModel``: an R-side structure laid over the rows of one data set.

``residual="STRUCT(occasion | group)"`` and ``sigma="~ f"`` are parsed here and tied to the
rows a ``ModelSpec`` uses: each row's group, its position (occasion level or time) and its
variance-function level.  The groups are batched by size, and within a size by their
pattern of positions, so one evaluation is a few batched numpy calls, however many groups:

    whiten(params)  ->  per batch L^-1 (V_i = L L'), and sum_i log|V_i|

Whitening every group's rows by L^-1 turns the model into one with sigma^2 I residuals
(the seam of docs/design.md: "whiten rows before accumulation"): its criterion plus
sum_i log|V_i| is the criterion of the structured model, for REML and ML alike.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..spec import level_text
from .structures import ContinuousAutoRegressive, ResidualStructure, structure_class

__all__ = ["ResidualModel", "parse_residual", "parse_sigma"]

_RESIDUAL = re.compile(r"^\s*([A-Za-z0-9_]+)\s*\(\s*(.*?)\s*(?:\|\s*(.*?)\s*)?\)\s*$")
_NAME = re.compile(r"^[A-Za-z_.][A-Za-z0-9_.]*$")


@dataclass(frozen=True)
class ResidualTerm:
    """The parsed ``residual=`` and ``sigma=`` arguments."""

    kind: str                    # "us", "ar1", ... or "iid" (sigma^2 I)
    occasion: str | None
    group: tuple[str, ...]
    variance_by: tuple[str, ...]  # sigma="~ f": a residual SD per level of f

    @property
    def columns(self) -> list[str]:
        cols = [] if self.occasion is None else [self.occasion]
        return cols + list(self.group) + list(self.variance_by)

    def text(self) -> str:
        out = "iid" if self.kind == "iid" else (
            f"{self.kind}({self.occasion}" + (f" | {':'.join(self.group)})" if self.group
                                               else ")"))
        if self.variance_by:
            out += f", sigma ~ {':'.join(self.variance_by)}"
        return out


def _names(text: str, what: str, source: str) -> tuple[str, ...]:
    parts = tuple(p.strip() for p in text.split(":")) if text.strip() else ()
    for part in parts:
        if not _NAME.match(part):
            raise ValueError(f"could not read {what} {text!r} in {source!r}: expected a column "
                             "name or names joined by ':'")
    return parts


def parse_sigma(sigma: str | None) -> tuple[str, ...]:
    """``"~ f"`` (or ``"f"``, ``"~ a:b"``) -> the variance-function columns."""
    if sigma is None:
        return ()
    if not isinstance(sigma, str):
        raise TypeError(f"sigma must be a formula string like '~ visit', got {sigma!r}")
    text = sigma.strip()
    if text.startswith("~"):
        text = text[1:]
    if text.strip() in ("", "1"):
        return ()
    return _names(text, "the variance function", sigma)


def parse_residual(residual: str | None, sigma: str | None = None) -> ResidualTerm:
    """``"ar1(visit | id)"`` -> ResidualTerm; None -> sigma^2 I (with ``sigma``'s levels)."""
    variance_by = parse_sigma(sigma)
    if residual is None or (isinstance(residual, str) and residual.strip() in ("", "iid")):
        return ResidualTerm("iid", None, (), variance_by)
    if not isinstance(residual, str):
        raise TypeError(f"residual must be a string like 'us(visit | id)', got {residual!r}")
    match = _RESIDUAL.match(residual)
    if match is None:
        raise ValueError(f"could not read residual={residual!r}: write STRUCT(occasion | group),"
                         " e.g. 'us(visit | subject)' or 'ar1(time | id)'")
    kind, occasion, group = match.group(1).lower(), match.group(2), match.group(3) or ""
    structure_class(kind)  # raises for an unknown structure
    if not _NAME.match(occasion or ""):
        raise ValueError(f"could not read the occasion {occasion!r} in residual={residual!r}: "
                         "expected one column name (the visit, time or position)")
    return ResidualTerm(kind, occasion, _names(group, "the group", residual), variance_by)


def _codes(frame: pd.DataFrame, columns: tuple[str, ...]) -> tuple[np.ndarray, list[str]]:
    """Integer codes of the interaction of ``columns`` (level order: sorted / category)."""
    if not columns:
        return np.zeros(len(frame), dtype=np.intp), ["(all)"]
    codes = np.zeros(len(frame), dtype=np.int64)
    for name in columns:
        values = frame[name]
        if isinstance(values.dtype, pd.CategoricalDtype):
            part = values.cat.remove_unused_categories().cat.codes.to_numpy()
            size = len(values.cat.remove_unused_categories().cat.categories)
        else:
            uniques, part = np.unique(values.to_numpy(), return_inverse=True)
            size = len(uniques)
        codes = codes * size + part
    uniques, codes = np.unique(codes, return_inverse=True)
    labels = pd.Series([":".join(level_text(np.asarray(row)))
                        for row in frame[list(columns)].to_numpy()])
    first = pd.Series(np.arange(len(frame))).groupby(codes).first().to_numpy()
    return codes.astype(np.intp), [labels.iloc[i] for i in first]


@dataclass
class Batch:
    """Groups with the same number of rows: their rows, by group then position."""

    rows: np.ndarray        # (n_groups, m) row indices
    positions: np.ndarray   # (n_groups, m) position index or time
    occasion: np.ndarray    # (n_groups, m) occasion index (for the SD ratios)
    pattern: np.ndarray     # (n_groups,) index into ``patterns``, sorted
    patterns: np.ndarray    # (n_patterns, m) distinct positions

    @property
    def pattern_starts(self) -> np.ndarray:
        """First group of each pattern (``pattern`` is sorted): for ``np.add.reduceat``."""
        return np.searchsorted(self.pattern, np.arange(len(self.patterns)))


class ResidualModel:
    """The structure of ``term`` on the rows of ``frame`` (the rows a spec uses).

    Parameters
    ----------
    term : ResidualTerm
    frame : pandas.DataFrame
        The used rows, in the spec's row order.
    """

    def __init__(self, term: ResidualTerm, frame: pd.DataFrame):
        self.term = term
        n = len(frame)
        self.n = n
        self.group_codes, self.group_labels = _codes(frame, term.group)
        if term.kind == "iid":
            self.structure: ResidualStructure | None = None
            self.batches: list[Batch] = []
        else:
            self._set_structure(term, frame)
        # variance function: a relative SD per level (the first level's is 1)
        if term.variance_by:
            self.variance_codes, self.variance_labels = _codes(frame, term.variance_by)
        else:
            self.variance_codes, self.variance_labels = np.zeros(n, dtype=np.intp), []
        self.n_variance = max(len(self.variance_labels) - 1, 0)
        self.size = (self.structure.size if self.structure is not None else 0) + self.n_variance

    def _set_structure(self, term: ResidualTerm, frame: pd.DataFrame) -> None:
        cls = structure_class(term.kind)
        column = frame[term.occasion]
        numeric = pd.api.types.is_numeric_dtype(column) and not isinstance(
            column.dtype, pd.CategoricalDtype)
        if cls.numeric_times and not numeric:
            raise ValueError(f"{term.kind} needs numeric times, but {term.occasion!r} has dtype "
                             f"{column.dtype}; use ar1 for ordered occasions")
        occasion_codes, labels = _codes(frame, (term.occasion,))
        if numeric and not cls.needs_levels and not cls.numeric_times:
            values = column.to_numpy(dtype=float)
            if not np.allclose(values, np.round(values)):
                raise ValueError(
                    f"{term.kind} needs integer positions, but {term.occasion!r} has non-integer "
                    "values; use car1 for continuous times or a categorical occasion")
            positions = values - values.min()
            labels = [str(int(v)) for v in np.arange(positions.max() + 1) + values.min()]
        elif cls.numeric_times:
            positions = column.to_numpy(dtype=float)
        else:
            positions = occasion_codes.astype(float)
        order = np.lexsort((positions, self.group_codes))
        sizes = np.bincount(self.group_codes)
        max_size = int(sizes.max())
        structure = (ContinuousAutoRegressive(labels, max_size,
                                              times=np.unique(positions))
                     if cls.numeric_times else cls(labels, max_size))
        if structure.heterogeneous and structure.n_positions < 2:
            raise ValueError(f"{term.kind} needs at least 2 occasions in {term.occasion!r}")
        # rows of each group, sorted by position; a position twice in one group is an error
        starts = np.concatenate([[0], np.cumsum(sizes)])
        sorted_groups = self.group_codes[order]
        sorted_pos = positions[order]
        same = (sorted_groups[1:] == sorted_groups[:-1]) & (sorted_pos[1:] == sorted_pos[:-1])
        if structure.kind == "ar1" and numeric and not cls.needs_levels:
            gaps = np.diff(sorted_pos)[sorted_groups[1:] == sorted_groups[:-1]]
            step = int(np.gcd.reduce(np.round(gaps).astype(np.int64))) if gaps.size else 1
            if step > 1:
                warnings.warn(
                    f"ar1({term.occasion} | ...): every gap between a group's times is a "
                    f"multiple of {step}, so the correlation phi^lag depends on phi^{step} "
                    f"only{' and the sign of phi is not identified' if step % 2 == 0 else ''} "
                    f"(nlme's corAR1 alike); for a lag-1 correlation between successive "
                    "visits use the visit number or an ordered categorical occasion",
                    UserWarning, stacklevel=4)
        if same.any():
            where = order[np.flatnonzero(same)[0]]
            raise ValueError(
                f"group {self.group_labels[self.group_codes[where]]!r} has occasion "
                f"{level_text(frame[term.occasion].iloc[[where]].to_numpy())[0]!r} more than "
                f"once: each row of a group needs its own value of {term.occasion!r} for "
                f"residual={term.text()!r}")
        self.batches = []
        for m in np.unique(sizes):
            groups = np.flatnonzero(sizes == m)
            rows = order[starts[groups][:, None] + np.arange(m)[None, :]]
            pos = positions[rows]
            patterns, inverse = np.unique(pos, axis=0, return_inverse=True)
            inverse = inverse.reshape(-1)
            by_pattern = np.argsort(inverse, kind="stable")  # each pattern's groups adjacent
            rows, pos, inverse = rows[by_pattern], pos[by_pattern], inverse[by_pattern]
            self.batches.append(Batch(rows, pos, occasion_codes[rows], inverse, patterns))
        self.structure = structure

    # -- parameters -----------------------------------------------------------------------
    def split(self, params: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        params = np.asarray(params, dtype=float)
        k = self.size - self.n_variance
        return params[:k], params[k:]

    def initial(self) -> np.ndarray:
        structure = self.structure.initial() if self.structure is not None else np.zeros(0)
        return np.concatenate([structure, np.zeros(self.n_variance)])

    def row_sd_ratios(self, params: np.ndarray) -> np.ndarray:
        """Every row's relative SD from the variance function (structure ratios excluded)."""
        ratios = np.exp(np.concatenate([[0.0], self.split(params)[1]]))
        return ratios[self.variance_codes]

    def row_sds(self, params: np.ndarray) -> np.ndarray:
        """Every row's residual SD relative to sigma (structure and variance function)."""
        return self.whitener(params)[1]

    # -- whitening ------------------------------------------------------------------------
    def whitener(self, params: np.ndarray) -> tuple[list[np.ndarray], np.ndarray, float]:
        """Per batch the lower factors' inverses of C at each pattern (n_patterns, m, m),
        the rows' relative SDs D (n,) and sum_i log|V_i|."""
        struct_params, _ = self.split(params)
        row_sd = self.row_sd_ratios(params)
        if self.structure is not None:
            occasion_sd = self.structure.sd_ratios(struct_params)
            for batch in self.batches:
                row_sd[batch.rows] *= occasion_sd[batch.occasion]
        logdet = 2.0 * float(np.log(row_sd).sum())
        inverses = []
        for batch in self.batches:
            corr = self.structure.correlation(struct_params, batch.patterns)
            chol = np.linalg.cholesky(corr)
            counts = np.bincount(batch.pattern, minlength=len(batch.patterns))
            logdet += 2.0 * float((np.log(np.diagonal(chol, axis1=1, axis2=2)).sum(axis=1)
                                   * counts).sum())
            inverses.append(np.linalg.inv(chol))
        return inverses, row_sd, logdet

    def whiten(self, arrays: list[np.ndarray], whitener) -> list[np.ndarray]:
        """L^-1 applied to the rows of each (n,) or (n, k) array."""
        inverses, row_sd, _ = whitener
        out = []
        for a in arrays:
            a2 = np.asarray(a, dtype=float).reshape(self.n, -1) / row_sd[:, None]
            if self.batches:
                w = np.empty_like(a2)
                for batch, inv in zip(self.batches, inverses, strict=True):
                    w[batch.rows] = inv[batch.pattern] @ a2[batch.rows]
                a2 = w
            out.append(a2.reshape(np.shape(a)))
        return out

    # -- reporting ------------------------------------------------------------------------
    def report(self, params: np.ndarray, sigma: float) -> pd.DataFrame:
        """``fit.residual_structure``: every residual parameter in the data's units."""
        rows = [("sigma", float(sigma))]
        struct_params, var_params = self.split(params)
        if self.structure is not None:
            rows += self.structure.report(struct_params, sigma)
        for label, value in zip(self.variance_labels[1:], np.exp(var_params), strict=True):
            rows.append((f"sd_ratio[{label}]", float(value)))
        frame = pd.DataFrame(rows, columns=["parameter", "estimate"]).set_index("parameter")
        return frame

    def covariance(self, params: np.ndarray, sigma: float) -> pd.DataFrame:
        """sigma^2 D C D over every occasion (variance-function ratio 1)."""
        if self.structure is None:
            return pd.DataFrame([[sigma**2]], index=["(all)"], columns=["(all)"])
        struct_params, _ = self.split(params)
        c = self.structure.full_correlation(struct_params)
        sd = sigma * self.structure.sd_ratios(struct_params)
        labels = self.structure.labels
        if isinstance(self.structure, ContinuousAutoRegressive):
            labels = [f"{t:g}" for t in self.structure.position_values()]
        return pd.DataFrame(c * np.outer(sd, sd), index=labels, columns=labels)

    def normalized(self, raw: np.ndarray, params: np.ndarray, sigma: float) -> np.ndarray:
        """nlme's normalized residuals: L^-1 e / sigma (iid N(0, 1) under the model)."""
        return self.whiten([raw], self.whitener(params))[0] / sigma
