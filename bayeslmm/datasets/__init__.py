"""Classic mixed-model data sets bundled with bayeslmm.

``load(name)`` returns a :class:`pandas.DataFrame` with grouping and other factor
columns as categoricals in R's level order (numeric-looking labels sorted as numbers,
Orthodont's ``Sex`` with ``Male`` as the reference level).  The CSV files were exported
from R (lme4, nlme, rstanarm); see ``data/README.md`` next to this file for their sources.
"""

from __future__ import annotations

from importlib import resources

import pandas as pd

__all__ = ["load", "names"]

# factor columns of each data set; a tuple gives an explicit level order
_FACTORS: dict[str, dict[str, tuple[str, ...] | None]] = {
    "sleepstudy": {"Subject": None},
    "orthodont": {"Subject": None, "Sex": ("Male", "Female")},
    "penicillin": {"plate": None, "sample": None},
    "pastes": {"batch": None, "cask": None, "sample": None},
    "dyestuff": {"Batch": None},
    "dyestuff2": {"Batch": None},
    "ergostool": {"Type": None, "Subject": None},
    "radon": {"county": None},
    "insteval": {
        "s": None, "d": None, "studage": None, "lectage": None, "service": None, "dept": None,
    },
    "cbpp": {"herd": None, "period": None},
}


def names() -> list[str]:
    """Names of the bundled data sets."""
    return sorted(_FACTORS)


def _level_order(values: pd.Series) -> list[str]:
    labels = pd.unique(values.dropna())
    if all(str(v).lstrip("-").isdigit() for v in labels):
        return sorted(labels, key=int)
    return sorted(labels)


def load(name: str) -> pd.DataFrame:
    """Load a bundled data set.

    Parameters
    ----------
    name : str
        One of :func:`names` (case-insensitive): sleepstudy, orthodont, penicillin, pastes,
        dyestuff, dyestuff2, ergostool, radon, insteval, cbpp.

    Returns
    -------
    pandas.DataFrame
        Factors are unordered categoricals in R's level order.
    """
    key = name.lower()
    if key not in _FACTORS:
        raise ValueError(f"unknown data set {name!r}; available: {', '.join(names())}")
    factors = _FACTORS[key]
    folder = resources.files(__package__) / "data"
    path = folder / f"{key}.csv"
    if not path.is_file():
        path = folder / f"{key}.csv.gz"
    with resources.as_file(path) as p:
        frame = pd.read_csv(p, dtype={col: str for col in factors})
    for col, order in factors.items():
        levels = list(order) if order is not None else _level_order(frame[col])
        frame[col] = pd.Categorical(frame[col], categories=levels)
    return frame
