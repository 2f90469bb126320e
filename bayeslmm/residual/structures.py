"""R-side structures: the correlation and relative SDs of the residuals within one group.

Within residual group i (a subject) the residuals of its rows are

    e_i ~ N(0, sigma^2 V_i),   V_i = D_i C_i D_i,

``C_i`` a correlation matrix given by the structure at the rows' occasions (or times) and
``D_i`` the rows' relative SDs: the structure's per-occasion ratios (``diag``, ``csh``,
``us``; the first occasion's ratio is 1) times a variance function's per-row ratio
(``sigma="~ f"``, nlme's varIdent).  sigma is profiled out, as nlme does, so every
parameter here is scale free and unconstrained (an optimizer or a sampler moves freely):

==========  =========================================  =====================================
structure   C[a, b] for rows at positions a != b        parameters (unconstrained -> value)
==========  =========================================  =====================================
``diag``    0                                           T - 1 log SD ratios
``cs``      rho                                         rho = lo + (1 - lo) logistic(x),
                                                        lo = -1 / (T_max - 1)
``csh``     rho (with per-occasion SDs)                 as cs, plus T - 1 log SD ratios
``ar1``     phi^|t_a - t_b| (integer positions)         phi = tanh(x)
``car1``    phi^|t_a - t_b| (numeric times)             phi = logistic(x), in (0, 1)
``toep``    rho_|t_a - t_b|                             partial autocorrelations tanh(x_k),
                                                        k = 1 .. T - 1 (always positive
                                                        definite: Durbin-Levinson)
``us``      free correlations                           canonical partial correlations
                                                        tanh(x_ab) (always positive
                                                        definite), plus T - 1 log SD ratios
==========  =========================================  =====================================

Positions are the occasion level's index (a categorical occasion, in level order) or the
integer value of a numeric occasion; T is the number of positions.  ``toep`` and ``ar1`` on
integer times are nlme's ``corARMA(p = T - 1)`` and ``corAR1``; ``us`` is
``corSymm`` + ``varIdent(~ 1 | occasion)``; ``csh`` is ``corCompSymm`` + that varIdent.
"""

from __future__ import annotations

import numpy as np

from ..core.covariance import logistic, logit

__all__ = ["ResidualStructure", "STRUCTURES", "structure_class"]


class ResidualStructure:
    """One residual structure over ``n_positions`` occasions (see the module docstring).

    Parameters
    ----------
    labels : list of str
        Occasion labels, one per position (per level for a categorical occasion).
    max_group_size : int
        Largest number of rows in one group (bounds the cs correlation).
    """

    kind = "abstract"
    heterogeneous = False    # per-occasion SD ratios
    needs_levels = False     # positions must be occasion levels (not free times)
    numeric_times = False    # car1: positions are the numeric times themselves

    def __init__(self, labels: list[str], max_group_size: int):
        self.labels = [str(v) for v in labels]
        self.n_positions = len(self.labels)
        self.max_group_size = int(max_group_size)

    # -- the parameters -------------------------------------------------------------------
    @property
    def n_correlation(self) -> int:
        return 0

    @property
    def size(self) -> int:
        return self.n_correlation + (self.n_positions - 1 if self.heterogeneous else 0)

    def initial(self) -> np.ndarray:
        return np.zeros(self.size)

    def split(self, params: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        params = np.asarray(params, dtype=float)
        return params[: self.n_correlation], params[self.n_correlation:]

    def sd_ratios(self, params: np.ndarray) -> np.ndarray:
        """Relative SD of each position (1 for the first; all 1 if homogeneous)."""
        if not self.heterogeneous:
            return np.ones(self.n_positions)
        return np.exp(np.concatenate([[0.0], self.split(params)[1]]))

    def correlation(self, params: np.ndarray, positions: np.ndarray) -> np.ndarray:
        """C for every group of a batch: ``positions`` (n_groups, m) -> (n_groups, m, m)."""
        raise NotImplementedError

    def full_correlation(self, params: np.ndarray) -> np.ndarray:
        """C over every position (for reporting); car1 uses the positions' times."""
        return self.correlation(params, self.position_values()[None, :])[0]

    def position_values(self) -> np.ndarray:
        return np.arange(self.n_positions, dtype=float)

    def relative_cov(self, params: np.ndarray) -> np.ndarray:
        """V = D C D over every position (relative to sigma^2)."""
        sd = self.sd_ratios(params)
        return self.full_correlation(params) * np.outer(sd, sd)

    def cov_gradient(self, params: np.ndarray, gradient_v: np.ndarray,
                     step: float = 1e-6) -> np.ndarray:
        """d f / d params for a function f of V whose gradient in V's entries is
        ``gradient_v`` (T x T): sum_ab G_ab dV_ab / dparam_k, by central differences of the
        (cheap, data-free) map params -> V; ``us`` overrides it with the closed form."""
        params = np.asarray(params, dtype=float)
        out = np.empty(params.size)
        for k in range(params.size):
            up, down = params.copy(), params.copy()
            up[k] += step
            down[k] -= step
            diff = self.relative_cov(up) - self.relative_cov(down)
            out[k] = float((gradient_v * diff).sum()) / (2.0 * step)
        return out

    # -- reporting ------------------------------------------------------------------------
    def correlation_report(self, params: np.ndarray) -> list[tuple[str, float]]:
        return []

    def report(self, params: np.ndarray, sigma: float) -> list[tuple[str, float]]:
        """(name, value) of every parameter in the data's units: correlations and SDs."""
        rows = self.correlation_report(params)
        if self.heterogeneous:
            rows += [(f"sd[{lab}]", sigma * r) for lab, r in
                     zip(self.labels, self.sd_ratios(params), strict=True)]
        return rows

    def describe(self) -> str:
        return self.kind


def _lags(positions: np.ndarray) -> np.ndarray:
    return np.abs(positions[:, :, None] - positions[:, None, :])


class DiagonalResidual(ResidualStructure):
    """Independent residuals with a variance per occasion (``diag``)."""

    kind = "diag"
    heterogeneous = True
    needs_levels = True

    def correlation(self, params, positions):
        m = positions.shape[1]
        return np.broadcast_to(np.eye(m), (positions.shape[0], m, m)).copy()


class CompoundSymmetry(ResidualStructure):
    """One correlation rho between any two rows of a group (``cs``)."""

    kind = "cs"
    needs_levels = True   # positions only order a group's rows

    @property
    def n_correlation(self) -> int:
        return 1

    @property
    def lowest(self) -> float:
        return -1.0 / (self.max_group_size - 1) if self.max_group_size > 1 else -1.0

    def rho(self, params) -> float:
        lo = self.lowest
        return lo + (1.0 - lo) * logistic(self.split(params)[0][0])

    def initial(self) -> np.ndarray:
        start = np.zeros(self.size)
        lo = self.lowest
        start[0] = logit(-lo / (1.0 - lo))   # rho = 0
        return start

    def correlation(self, params, positions):
        m = positions.shape[1]
        rho = self.rho(params)
        c = np.full((positions.shape[0], m, m), rho)
        c[:, np.arange(m), np.arange(m)] = 1.0
        return c

    def correlation_report(self, params):
        return [("rho", self.rho(params))]


class HeterogeneousCompoundSymmetry(CompoundSymmetry):
    """Compound symmetry with a variance per occasion (``csh``)."""

    kind = "csh"
    heterogeneous = True
    needs_levels = True


class AutoRegressive(ResidualStructure):
    """AR(1) over integer positions: corr phi^lag, phi in (-1, 1) (``ar1``)."""

    kind = "ar1"

    @property
    def n_correlation(self) -> int:
        return 1

    def phi(self, params) -> float:
        return float(np.tanh(self.split(params)[0][0]))

    def initial(self) -> np.ndarray:
        # phi = 0.1, not 0: where every gap is even (times 8, 10, 12, ...) the likelihood is
        # symmetric in phi and phi = 0 is a stationary point a gradient method never leaves
        start = np.zeros(self.size)
        start[0] = np.arctanh(0.1)
        return start

    def correlation(self, params, positions):
        return self.phi(params) ** _lags(positions)   # integer lags: a negative phi is fine

    def correlation_report(self, params):
        return [("phi", self.phi(params))]


class ContinuousAutoRegressive(AutoRegressive):
    """Continuous-time AR(1): corr phi^|t - t'| for numeric times, phi in (0, 1) (``car1``)."""

    kind = "car1"
    numeric_times = True

    def __init__(self, labels, max_group_size, times: np.ndarray | None = None):
        super().__init__(labels, max_group_size)
        self.times = None if times is None else np.asarray(times, dtype=float)

    def phi(self, params) -> float:
        return logistic(self.split(params)[0][0])

    def initial(self) -> np.ndarray:
        return np.array([logit(0.2)])   # nlme's corCAR1 start

    def correlation(self, params, positions):
        return self.phi(params) ** _lags(positions)

    def position_values(self) -> np.ndarray:
        return self.times if self.times is not None else super().position_values()


class Toeplitz(ResidualStructure):
    """A correlation per lag 1 .. T - 1 (``toep``), parametrized by partial
    autocorrelations so that every value is positive definite."""

    kind = "toep"
    needs_levels = True   # lags count occasions in level order (SAS TYPE=TOEP, glmmTMB)

    @property
    def n_correlation(self) -> int:
        return self.n_positions - 1

    def autocorrelations(self, params) -> np.ndarray:
        """rho_0 = 1, rho_1 .. rho_{T-1} from the partial autocorrelations (Durbin-Levinson)."""
        partial = np.tanh(self.split(params)[0])
        k = partial.size
        rho = np.ones(k + 1)
        phi = np.zeros(0)
        for j in range(k):
            a = partial[j]
            # rho_{j+1} = sum_i phi_i rho_{j-i} + a (1 - sum_i phi_i rho_{i+1})
            var = 1.0 - (phi @ rho[1: j + 1] if j else 0.0)
            rho[j + 1] = (phi @ rho[j: 0: -1] if j else 0.0) + a * var
            phi = np.concatenate([phi - a * phi[::-1], [a]])
        return rho

    def correlation(self, params, positions):
        rho = self.autocorrelations(params)
        return rho[_lags(positions).astype(np.intp)]

    def correlation_report(self, params):
        rho = self.autocorrelations(params)
        return [(f"rho[{lag}]", float(rho[lag])) for lag in range(1, rho.size)]


class UnstructuredResidual(ResidualStructure):
    """A free covariance over the occasions (``us``).

    V = L L' (relative to the first occasion's variance, which sigma^2 carries) with L lower
    triangular, L[0, 0] = 1: the parameters are L's entries below the diagonal (row by row)
    then log L[i, i] for i >= 1 - T (T + 1) / 2 - 1 of them, nlme's count for corSymm +
    varIdent, every value positive definite, and the gradient of a criterion is 2 G L.
    """

    kind = "us"
    heterogeneous = True
    needs_levels = True

    @property
    def n_correlation(self) -> int:
        t = self.n_positions
        return t * (t - 1) // 2

    def factor(self, params) -> np.ndarray:
        t = self.n_positions
        params = np.asarray(params, dtype=float)
        lower = np.zeros((t, t))
        rows, cols = np.tril_indices(t, -1)
        lower[rows, cols] = params[: rows.size]
        lower[np.arange(t), np.arange(t)] = np.exp(np.concatenate([[0.0], params[rows.size:]]))
        return lower

    def relative_cov(self, params) -> np.ndarray:
        lower = self.factor(params)
        return lower @ lower.T

    def sd_ratios(self, params) -> np.ndarray:
        return np.sqrt(np.diag(self.relative_cov(params)))

    def full_correlation(self, params) -> np.ndarray:
        v = self.relative_cov(params)
        sd = np.sqrt(np.diag(v))
        c = v / np.outer(sd, sd)
        np.fill_diagonal(c, 1.0)
        return c

    def correlation(self, params, positions):
        full = self.full_correlation(params)
        idx = positions.astype(np.intp)
        return full[idx[:, :, None], idx[:, None, :]]

    def cov_gradient(self, params, gradient_v: np.ndarray) -> np.ndarray:
        lower = self.factor(params)
        gl = 2.0 * (0.5 * (gradient_v + gradient_v.T)) @ lower
        rows, cols = np.tril_indices(self.n_positions, -1)
        diag = np.arange(1, self.n_positions)
        return np.concatenate([gl[rows, cols], gl[diag, diag] * lower[diag, diag]])

    def correlation_report(self, params):
        c = self.full_correlation(params)
        lab = self.labels
        return [(f"cor[{lab[a]}, {lab[b]}]", float(c[a, b]))
                for a in range(self.n_positions) for b in range(a + 1, self.n_positions)]


STRUCTURES: dict[str, type[ResidualStructure]] = {
    cls.kind: cls for cls in (DiagonalResidual, CompoundSymmetry,
                              HeterogeneousCompoundSymmetry, AutoRegressive,
                              ContinuousAutoRegressive, Toeplitz, UnstructuredResidual)
}


def structure_class(kind: str) -> type[ResidualStructure]:
    try:
        return STRUCTURES[kind]
    except KeyError:
        raise ValueError(f"unknown residual structure {kind!r}; one of "
                         f"{', '.join(STRUCTURES)}") from None
