"""The theta <-> Lambda contract: how one random-effects block's relative covariance factor
is parametrized (in the spirit of lme4's ``Covariance`` classes, R/covariance.R).

For block k with q columns, G_k = sigma^2 lambda_k lambda_k' and ``lambda_k`` is q x q lower
triangular.  A ``CovarianceStructure`` states

* ``size``: how many parameters (theta entries) it has,
* ``lambda_of(theta)``: the q x q factor from its slice of theta,
* ``theta_of(lam)``: the inverse map (for starts given as factors),
* ``lower`` / ``initial`` / ``names``: bounds, lme4's start (lambda = I) and names,
* ``rescaled(theta, scale)``: theta for the same G when the block's design columns are
  multiplied by ``1 / scale`` (the data scaling of ``core/scaling.py``): lambda -> diag(scale)
  lambda keeps an unstructured factor lower triangular.

``Unstructured`` (``(x | g)``) and ``Diagonal`` (``(x || g)`` written as one block) are the
members today; compound symmetry, AR(1) and the other G patterns of the issue "Residual
structures" each add one subclass here.  ``ThetaLayout`` strings the blocks' slices together
in engine order (blocks by number of levels, most first), the order of lme4's theta.
"""

from __future__ import annotations

import numpy as np

__all__ = ["logistic", "logit", "CovarianceStructure", "Unstructured", "Diagonal",
           "CompoundSymmetric", "AutoRegressive", "ThetaLayout", "structure_for", "G_PATTERNS"]


class CovarianceStructure:
    """One block's parametrization; subclasses fill in the maps (see the module docstring)."""

    kind = "abstract"
    common_scale = False   # True: the block's columns must share one data scale

    def __init__(self, q: int, terms: list[str] | None = None):
        self.q = int(q)
        self.terms = list(terms) if terms is not None else [f"x{a}" for a in range(self.q)]

    size: int
    diagonal: np.ndarray  # which theta entries are on lambda's diagonal (bounded below by 0)

    def lambda_of(self, theta: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def theta_of(self, lam: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    @property
    def lower(self) -> np.ndarray:
        return np.where(self.diagonal, 0.0, -np.inf)

    @property
    def initial(self) -> np.ndarray:
        return np.where(self.diagonal, 1.0, 0.0)

    def reflections(self, theta: np.ndarray, tol: float) -> list[np.ndarray]:
        """Other theta with the same G where a diagonal entry is on its bound: G depends on
        lambda's column i only through its outer product, so with lambda_ii = 0 the
        column's sign is free and two branches of the criterion meet there (an optimizer
        can stop in the worse one).  Default: none."""
        return []

    def rescaled(self, theta: np.ndarray, scale: np.ndarray) -> np.ndarray:
        """theta of diag(scale) lambda(theta)."""
        return self.theta_of(np.asarray(scale, dtype=float)[:, None] * self.lambda_of(theta))

    def names(self, factor: str) -> list[str]:
        raise NotImplementedError


class Unstructured(CovarianceStructure):
    """A free q x q G: theta is lambda's lower triangle, column by column (lme4's order)."""

    kind = "us"

    def __init__(self, q: int, terms: list[str] | None = None):
        super().__init__(q, terms)
        upper_rows, upper_cols = np.triu_indices(self.q)  # row-major upper = col-major lower
        self.rows, self.cols = upper_cols, upper_rows
        self.size = self.q * (self.q + 1) // 2
        self.diagonal = self.rows == self.cols

    def lambda_of(self, theta: np.ndarray) -> np.ndarray:
        lam = np.zeros((self.q, self.q))
        lam[self.rows, self.cols] = theta
        return lam

    def theta_of(self, lam: np.ndarray) -> np.ndarray:
        return np.asarray(lam, dtype=float)[self.rows, self.cols]

    def names(self, factor: str) -> list[str]:
        t = self.terms
        return [f"{factor}.{t[r]}" if r == c else f"{factor}.{t[r]}.{t[c]}"
                for r, c in zip(self.rows, self.cols, strict=True)]

    def reflections(self, theta: np.ndarray, tol: float) -> list[np.ndarray]:
        out = []
        for i in range(self.q - 1):
            diag = np.flatnonzero((self.rows == i) & (self.cols == i))[0]
            below = np.flatnonzero((self.cols == i) & (self.rows > i))
            if theta[diag] <= tol and np.any(theta[below] != 0):
                flipped = np.array(theta, dtype=float)
                flipped[below] *= -1.0
                out.append(flipped)
        return out


class Diagonal(CovarianceStructure):
    """Independent effects with their own SDs: theta is lambda's diagonal."""

    kind = "diag"

    def __init__(self, q: int, terms: list[str] | None = None):
        super().__init__(q, terms)
        self.size = self.q
        self.diagonal = np.ones(self.q, dtype=bool)

    def lambda_of(self, theta: np.ndarray) -> np.ndarray:
        return np.diag(np.asarray(theta, dtype=float))

    def theta_of(self, lam: np.ndarray) -> np.ndarray:
        return np.diagonal(np.asarray(lam, dtype=float)).copy()

    def names(self, factor: str) -> list[str]:
        return [f"{factor}.{t}" for t in self.terms]


def logistic(x):
    """1 / (1 + exp(-x)) (a float for a scalar)."""
    out = 1.0 / (1.0 + np.exp(-np.asarray(x, dtype=float)))
    return float(out) if out.ndim == 0 else out


def logit(p, eps: float = 1e-12):
    """log(p / (1 - p)), p clipped to [eps, 1 - eps] (a float for a scalar)."""
    p = np.clip(np.asarray(p, dtype=float), eps, 1.0 - eps)
    out = np.log(p / (1.0 - p))
    return float(out) if out.ndim == 0 else out


class CompoundSymmetric(CovarianceStructure):
    """``cs(x | g)``: an SD per term and one correlation rho between any two (glmmTMB's
    ``cs``, heterogeneous compound symmetry).  theta = [s_1 .. s_q (>= 0), x] with
    rho = lo + (1 - lo) logistic(x), lo = -1 / (q - 1); lambda = diag(s) chol(C(rho))."""

    kind = "cs"

    def __init__(self, q: int, terms: list[str] | None = None):
        super().__init__(q, terms)
        if self.q < 2:
            raise ValueError("cs() needs at least 2 random-effects terms")
        self.size = self.q + 1
        self.diagonal = np.array([True] * self.q + [False])
        self.low = -1.0 / (self.q - 1)

    def rho(self, theta: np.ndarray) -> float:
        return self.low + (1.0 - self.low) * logistic(theta[-1])

    @property
    def initial(self) -> np.ndarray:
        return np.concatenate([np.ones(self.q), [logit(-self.low / (1.0 - self.low))]])

    def lambda_of(self, theta: np.ndarray) -> np.ndarray:
        theta = np.asarray(theta, dtype=float)
        rho = self.rho(theta)
        corr = np.full((self.q, self.q), rho)
        np.fill_diagonal(corr, 1.0)
        return theta[: self.q, None] * np.linalg.cholesky(corr)

    def theta_of(self, lam: np.ndarray) -> np.ndarray:
        g = np.asarray(lam, dtype=float) @ np.asarray(lam, dtype=float).T
        sd = np.sqrt(np.diag(g))
        pos = sd > 0
        off = [g[a, b] / (sd[a] * sd[b]) for a in range(self.q) for b in range(a + 1, self.q)
               if pos[a] and pos[b]]
        rho = float(np.mean(off)) if off else 0.0
        return np.concatenate([sd, [logit((rho - self.low) / (1.0 - self.low))]])

    def names(self, factor: str) -> list[str]:
        return [f"{factor}.{t}" for t in self.terms] + [f"{factor}.cs_rho"]


class AutoRegressive(CovarianceStructure):
    """``ar1(0 + f | g)``: one SD and correlation phi^|a - b| between terms a and b in
    their order (glmmTMB's ``ar1``).  theta = [s (>= 0), x], phi = tanh(x)."""

    kind = "ar1"
    common_scale = True   # one SD for every column: the data scaling must be one number

    def __init__(self, q: int, terms: list[str] | None = None):
        super().__init__(q, terms)
        if self.q < 2:
            raise ValueError("ar1() needs at least 2 random-effects terms (e.g. 0 + time)")
        self.size = 2
        self.diagonal = np.array([True, False])
        lags = np.abs(np.subtract.outer(np.arange(self.q), np.arange(self.q)))
        self._lags = lags.astype(float)

    def lambda_of(self, theta: np.ndarray) -> np.ndarray:
        phi = float(np.tanh(theta[1]))
        return float(theta[0]) * np.linalg.cholesky(phi ** self._lags)

    def theta_of(self, lam: np.ndarray) -> np.ndarray:
        g = np.asarray(lam, dtype=float) @ np.asarray(lam, dtype=float).T
        sd = float(np.sqrt(g[0, 0]))
        phi = g[0, 1] / g[0, 0] if sd > 0 else 0.0
        return np.array([sd, float(np.arctanh(np.clip(phi, -1 + 1e-15, 1 - 1e-15)))])

    def rescaled(self, theta: np.ndarray, scale: np.ndarray) -> np.ndarray:
        scale = np.asarray(scale, dtype=float)
        if not np.allclose(scale, scale[0]):
            raise ValueError("ar1() blocks are rescaled by one common number")
        return np.array([theta[0] * scale[0], theta[1]])

    def names(self, factor: str) -> list[str]:
        return [f"{factor}.sd", f"{factor}.ar1_phi"]


G_PATTERNS = {"us": Unstructured, "diag": Diagonal, "cs": CompoundSymmetric,
              "ar1": AutoRegressive}


def structure_for(block) -> CovarianceStructure:
    """The covariance structure of a ``RandomBlock`` (its ``structure`` pattern)."""
    kind = getattr(block, "structure", "us")
    return G_PATTERNS[kind](block.q, list(block.terms))


class ThetaLayout:
    """theta of every block, concatenated in engine order, with lme4's bounds and start.

    Parameters
    ----------
    structures : list of CovarianceStructure, or list of int
        One per block (an int q means ``Unstructured(q)``).
    """

    def __init__(self, structures):
        self.structures: list[CovarianceStructure] = [
            s if isinstance(s, CovarianceStructure) else Unstructured(int(s))
            for s in structures]
        self.qs = [s.q for s in self.structures]
        self.slices: list[slice] = []
        start = 0
        for s in self.structures:
            self.slices.append(slice(start, start + s.size))
            start += s.size
        self.size = start
        def joined(name, dtype):
            parts = [np.asarray(getattr(s, name), dtype=dtype) for s in self.structures]
            return np.concatenate(parts) if parts else np.zeros(0, dtype=dtype)

        # each structure owns its bounds and start (an ar1's phi is not bounded like an SD)
        self.diagonal = joined("diagonal", bool)
        self.lower = joined("lower", float)
        self.initial = joined("initial", float)

    def lambdas(self, theta: np.ndarray) -> list[np.ndarray]:
        return [s.lambda_of(theta[sl]) for s, sl in zip(self.structures, self.slices,
                                                         strict=True)]

    def theta(self, lambdas: list[np.ndarray]) -> np.ndarray:
        return np.concatenate([s.theta_of(lam) for s, lam in zip(self.structures, lambdas,
                                                                   strict=True)])

    def reflections(self, theta: np.ndarray, tol: float = 1e-4) -> list[np.ndarray]:
        """theta with one block's boundary column reflected (``CovarianceStructure``)."""
        out = []
        for s, sl in zip(self.structures, self.slices, strict=True):
            for part in s.reflections(theta[sl], tol):
                full = np.array(theta, dtype=float)
                full[sl] = part
                out.append(full)
        return out

    def rescaled(self, theta: np.ndarray, scales: list[np.ndarray]) -> np.ndarray:
        """theta of diag(scale_k) lambda_k for every block k."""
        return np.concatenate([s.rescaled(theta[sl], sc) for s, sl, sc in
                               zip(self.structures, self.slices, scales, strict=True)])
