"""Satterthwaite denominator degrees of freedom for t and F tests of fixed effects, as
lmerTest 3.1 computes them (Kuznetsova, Brockhoff & Christensen 2017, JSS 82(13)).

With A = 2 H^-1 (H: Hessian of the unprofiled criterion in varpar, ``varpar.py``) the
asymptotic covariance of varpar, C(varpar) = vcov(beta) and a contrast l:

    df = 2 (l' C l)^2 / (g' A g),   g = d (l' C l) / d varpar.

A q-row contrast L is tested with F = (L b)'(L C L')^-1 (L b) / q, its denominator df from
the eigen directions of L C L' (lmerTest's ``contestMD``): nu_m per direction, then
2 E / (E - q) with E = sum nu_m / (nu_m - 2) (2 if any nu_m <= 2; the common value when all
are equal).  Derivatives are numDeriv-style Richardson differences (``numdiff.py``).
"""

from __future__ import annotations

import numpy as np

from .numdiff import hessian, jacobian
from .varpar import VarianceParameters

__all__ = ["Satterthwaite", "combined_ddf"]


def combined_ddf(nu: np.ndarray, tol: float = 1e-8) -> float:
    """lmerTest's ``get_Fstat_ddf``: one df for a multi-row contrast."""
    nu = np.asarray(nu, dtype=float)
    if nu.size == 1:
        return float(nu[0])
    if np.all(np.abs(np.diff(nu)) < tol):
        return float(nu.mean())
    if np.any(nu <= 2):
        return 2.0
    e = float(np.sum(nu / (nu - 2.0)))
    return 2.0 * e / (e - nu.size)


class Satterthwaite:
    """The pieces of Satterthwaite's df for one fit, computed once."""

    def __init__(self, fit):
        self.fit = fit
        self.vp = VarianceParameters(fit)
        x = self.vp.value
        h = hessian(self.vp.criterion, x)
        try:
            self.A = 2.0 * np.linalg.inv(h)
        except np.linalg.LinAlgError:
            self.A = 2.0 * np.linalg.pinv(h)
        self.jac = jacobian(self.vp.vcov_beta, x)   # (p, p, k)
        self.C = fit.vcov_beta

    def ddf(self, contrast: np.ndarray) -> float:
        """df of the 1-row contrast l'beta."""
        ell = np.asarray(contrast, dtype=float).reshape(-1)
        variance = float(ell @ self.C @ ell)
        grad = np.einsum("i,ijk,j->k", ell, self.jac, ell)
        denom = float(grad @ self.A @ grad)
        return 2.0 * variance**2 / denom if denom > 0 else np.inf

    def f_test(self, L: np.ndarray, rhs: np.ndarray | None = None) -> dict:
        """F statistic, numerator and Satterthwaite denominator df of L beta = rhs."""
        L = np.atleast_2d(np.asarray(L, dtype=float))
        q = L.shape[0]
        vc = L @ self.C @ L.T
        values, vectors = np.linalg.eigh(vc)
        keep = values > 1e-8 * max(values.max(), 1e-300)
        values, vectors = values[keep], vectors[:, keep]
        q = int(keep.sum())
        estimate = L @ self.fit.beta - (0.0 if rhs is None else np.asarray(rhs, dtype=float))
        t2 = (vectors.T @ estimate) ** 2 / values
        f_value = float(t2.sum() / q)
        nu = np.array([self.ddf(vectors[:, m] @ L) for m in range(q)])
        return {"num_df": q, "den_df": combined_ddf(nu), "F": f_value}
