"""Sufficient statistics of a Gaussian LMM: every cross product the engines need, built once.

With the blocks in engine order (most levels first), Z_1 the first block's design and the
"rest" rows R = [Z_2 .. Z_K, X, y], everything REML/ML, the marginal likelihood and the
samplers compute is a function of

    A_j = Z_1j' Z_1j      per level j of the first block        (m1, q1, q1)
    C   = R' Z_1          sparse, r x (m1 q1)
    RR  = R' R            dense,  r x r

``StatisticsAccumulator`` adds rows in chunks (``add``), so the statistics of data that do
not fit in memory at once - or that live on several machines, each accumulating its share and
the shares then summed (``merge``) - come out the same as from one pass.  Z is never formed
densely: a chunk's Z_k is a sparse n_chunk x (m_k q_k) matrix.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from ..spec import ModelSpec, RandomBlock, sparse_design

__all__ = ["CrossProducts", "StatisticsAccumulator", "cross_products", "CHUNK_ROWS"]

CHUNK_ROWS = 1_000_000


@dataclass
class CrossProducts:
    """The statistics of the module docstring (engine order)."""

    first: np.ndarray          # A, (m1, q1, q1)
    cross: sp.csr_matrix       # C, (r, m1 q1)
    rest: np.ndarray           # RR, (r, r)
    n: int

    @property
    def r(self) -> int:
        return self.rest.shape[0]


class StatisticsAccumulator:
    """Sums the cross products of rows given in chunks.

    Parameters
    ----------
    shapes : list of (n_levels, q)
        Every random-effects block, in engine order (the first is the block-diagonal one).
    p : int
        Number of fixed-effect columns.
    """

    def __init__(self, shapes: list[tuple[int, int]], p: int):
        self.shapes = [(int(m), int(q)) for m, q in shapes]
        self.p = int(p)
        (m1, q1), rest = self.shapes[0], self.shapes[1:]
        self.r = sum(m * q for m, q in rest) + self.p + 1
        self.first = np.zeros((m1, q1, q1))
        self.cross = sp.csr_matrix((self.r, m1 * q1))
        self.rest = np.zeros((self.r, self.r))
        self.n = 0

    def add(self, codes: list[np.ndarray], columns: list[np.ndarray], X: np.ndarray,
            y: np.ndarray) -> None:
        """Add a chunk of rows: per block their level codes and design columns, then X, y."""
        (m1, q1) = self.shapes[0]
        c1, z1cols = np.asarray(codes[0]), np.asarray(columns[0], dtype=float)
        for a in range(q1):
            for b in range(a, q1):
                self.first[:, a, b] += np.bincount(c1, weights=z1cols[:, a] * z1cols[:, b],
                                                   minlength=m1)
                if b != a:
                    self.first[:, b, a] = self.first[:, a, b]
        z1 = sparse_design(c1, z1cols, m1)
        parts = [sparse_design(c, z, m)
                 for c, z, (m, _q) in zip(codes[1:], columns[1:], self.shapes[1:],
                                          strict=True)]
        xy = np.column_stack([np.asarray(X, dtype=float).reshape(len(y), self.p),
                              np.asarray(y, dtype=float)])
        rows = sp.hstack([*parts, sp.csr_matrix(xy)], format="csr")
        self.cross = self.cross + (rows.T @ z1).tocsr()
        if parts:
            z_rest = sp.hstack(parts, format="csr")
            rz = z_rest.shape[1]
            zz = (z_rest.T @ z_rest).tocoo()  # often far from dense: add its entries only
            zz.sum_duplicates()
            self.rest[zz.row, zz.col] += zz.data
            zxy = np.asarray(z_rest.T @ xy)
            self.rest[:rz, rz:] += zxy
            self.rest[rz:, :rz] += zxy.T
            self.rest[rz:, rz:] += xy.T @ xy
        else:
            self.rest += xy.T @ xy
        self.n += len(y)

    def merge(self, other: StatisticsAccumulator) -> None:
        """Add another accumulator's sums (e.g. another machine's share of the rows)."""
        if other.shapes != self.shapes or other.p != self.p:
            raise ValueError("accumulators of different models cannot be merged")
        self.first += other.first
        self.cross = self.cross + other.cross
        self.rest += other.rest
        self.n += other.n

    def result(self) -> CrossProducts:
        cross = self.cross.tocsr()
        cross.sum_duplicates()
        return CrossProducts(self.first.copy(), cross, self.rest.copy(), self.n)


def cross_products(spec: ModelSpec, order: list[int], x_center: np.ndarray | None = None,
                   chunk_rows: int = CHUNK_ROWS) -> CrossProducts:
    """The statistics of ``spec`` with blocks in ``order`` (X minus ``x_center``), built in
    chunks of ``chunk_rows`` rows."""
    blocks: list[RandomBlock] = [spec.blocks[k] for k in order]
    acc = StatisticsAccumulator([(b.n_levels, b.q) for b in blocks], spec.p)
    X = spec.X if x_center is None else spec.X - x_center
    for start in range(0, spec.n, chunk_rows):
        sl = slice(start, start + chunk_rows)
        acc.add([b.codes[sl] for b in blocks], [b.columns[sl] for b in blocks], X[sl],
                spec.y[sl])
    return acc.result()
