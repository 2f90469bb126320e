"""Numerical derivatives with Richardson extrapolation, with R's numDeriv steps (lmerTest
computes its Satterthwaite df with numDeriv): central differences at steps h, h/2, h/4, h/8
combined to cancel the h^2, h^4, h^6 error terms.  First steps are relative, as numDeriv's:
h = d |x| (eps where |x| is below zero_tol), d = 1e-4 for Jacobians and d = 0.1 for Hessians
(a criterion carries rounding noise of ~1e-12 relative: a small step would amplify it by
1 / h^2 in a second difference; Richardson keeps the large step accurate)."""

from __future__ import annotations

import numpy as np

__all__ = ["jacobian", "hessian"]

JACOBIAN_STEP = 1e-4   # numDeriv::jacobian's d
HESSIAN_STEP = 0.1     # numDeriv::hessian's d
EPS = 1e-4             # absolute step where |x| < ZERO_TOL (numDeriv's eps)
ZERO_TOL = float(np.sqrt(np.finfo(float).eps / 7e-7))
LEVELS = 4             # Richardson levels (numDeriv's r), halving the step (v = 2)


def _steps(x: np.ndarray, d: float) -> np.ndarray:
    return np.where(np.abs(x) < ZERO_TOL, EPS, d * np.abs(x))


def _richardson(values: list[np.ndarray]) -> np.ndarray:
    """Extrapolate estimates at steps h, h/2, ... (error in even powers of h)."""
    table = [np.asarray(v, dtype=float) for v in values]
    for k in range(1, len(table)):
        factor = 4.0**k
        table = [(factor * table[i + 1] - table[i]) / (factor - 1.0)
                 for i in range(len(table) - 1)]
    return table[0]


def jacobian(func, x: np.ndarray) -> np.ndarray:
    """d func / d x for a function returning an array: shape func(x).shape + (x.size,)."""
    x = np.asarray(x, dtype=float)
    h0 = _steps(x, JACOBIAN_STEP)
    columns = []
    for i in range(x.size):
        estimates = []
        for level in range(LEVELS):
            h = h0[i] / 2.0**level
            up, down = x.copy(), x.copy()
            up[i] += h
            down[i] -= h
            estimates.append((np.asarray(func(up)) - np.asarray(func(down))) / (2.0 * h))
        columns.append(_richardson(estimates))
    return np.stack(columns, axis=-1)


def hessian(func, x: np.ndarray) -> np.ndarray:
    """Second derivatives of a scalar function (symmetric, x.size x x.size)."""
    x = np.asarray(x, dtype=float)
    d = x.size
    h0 = _steps(x, HESSIAN_STEP)
    f0 = float(func(x))
    out = np.empty((d, d))
    for i in range(d):
        for j in range(i, d):
            estimates = []
            for level in range(LEVELS):
                hi, hj = h0[i] / 2.0**level, h0[j] / 2.0**level
                if i == j:
                    up, down = x.copy(), x.copy()
                    up[i] += hi
                    down[i] -= hi
                    estimates.append((func(up) - 2.0 * f0 + func(down)) / hi**2)
                else:
                    vals = []
                    for si, sj in ((1, 1), (1, -1), (-1, 1), (-1, -1)):
                        p = x.copy()
                        p[i] += si * hi
                        p[j] += sj * hj
                        vals.append(float(func(p)))
                    estimates.append((vals[0] - vals[1] - vals[2] + vals[3]) / (4.0 * hi * hj))
            out[i, j] = out[j, i] = float(_richardson(estimates))
    return out
