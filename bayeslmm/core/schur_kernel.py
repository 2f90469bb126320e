"""Numba kernel for the one step of the factorization that numpy cannot do quickly.

``schur_lower_update`` subtracts C W C' from the lower triangle of S, level by level of the
first (largest) random-effects block: for level j with nonzero rows R_j of C,
S[R_j, R_j] -= V_j W_j V_j', where V_j holds those rows' q1 values.  The cost is
sum_j |R_j|^2 q1^2 (InstEval: about 1.7 million multiply-adds), with no sparse matrix
product and no temporary.  numba is a dependency of pytensor, so it is always there.
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["schur_lower_update", "level_structure"]


@njit(cache=True, nogil=True)
def schur_lower_update(schur, pointers, rows, values, weights):  # pragma: no cover - jit
    n_levels = pointers.shape[0] - 1
    q = values.shape[1]
    tmp = np.empty(q)
    for level in range(n_levels):
        start, stop = pointers[level], pointers[level + 1]
        w = weights[level]
        for i1 in range(start, stop):
            a = rows[i1]
            for c in range(q):
                acc = 0.0
                for d in range(q):
                    acc += values[i1, d] * w[d, c]
                tmp[c] = acc
            for i2 in range(start, i1 + 1):
                b = rows[i2]
                acc = 0.0
                for c in range(q):
                    acc += tmp[c] * values[i2, c]
                schur[a, b] -= acc
    return schur


def level_structure(cross, n_levels: int, q: int):
    """Regroup the sparse r x (n_levels*q) matrix C by level of the first block.

    Returns ``pointers`` (n_levels + 1), ``rows`` (sorted within each level) and
    ``values`` (len(rows) x q): level j's nonzero rows and their q values.
    """
    coo = cross.tocoo()
    level = coo.col // q
    key = level.astype(np.int64) * cross.shape[0] + coo.row
    unique, inverse = np.unique(key, return_inverse=True)
    values = np.zeros((unique.shape[0], q))
    np.add.at(values, (inverse, coo.col % q), coo.data)
    levels = unique // cross.shape[0]
    rows = (unique % cross.shape[0]).astype(np.int64)
    pointers = np.searchsorted(levels, np.arange(n_levels + 1)).astype(np.int64)
    return pointers, rows, values
