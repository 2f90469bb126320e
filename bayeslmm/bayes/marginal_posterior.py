"""log p(theta | y) of the marginal sampler on the unconstrained scale, in numba.

theta = [u of the first block's SDs (q1), its CPCs (q1 (q1 - 1) / 2 when correlated),
         for each other block: u of its SDs (q_k), its CPCs; log sigma]

with an SD s = exp(u), or s = c softplus(u) for an SD with pivot c > 0 (one whose posterior
reaches zero: ``unconstrained.sd_pivots``, which explains why).

The likelihood is ``marginal_kernel.marginal_logp_grad`` (b and beta integrated out); the
priors and transforms are ``unconstrained.py``'s.  ``MarginalPosterior`` packs the arrays
once and offers ``logp_and_grad(theta)`` (what nutpie calls), ``constrain(draws)``
(SDs, correlation factors and sigma for every draw) and ``unconstrain`` (for initial points).
"""

from __future__ import annotations

import ctypes
import math

import numpy as np

from .marginal import MarginalStructure
from .unconstrained import (
    corr_cholesky_draws,
    n_cpc,
    scale_prior_arrays,
    sd_from_u,
    u_from_sd,
)

__all__ = ["CovarianceLayout", "MarginalPosterior"]


class CovarianceLayout:
    """theta's covariance part: for the first block and then each other block, [u of its
    SDs (q_k), its CPCs (when correlated)], and last log sigma; with the priors of those
    parameters.  With 1 x 1 other blocks this is [u_1, CPCs_1, u_2, ..., log sigma].

    Parameters
    ----------
    first : RandomBlock
    others : list of RandomBlock
    priors : ResolvedPriors
    pivots : ndarray or None
        Each SD's pivot (the first block's, then the others', in order; ``sd_of``): 0 (the
        default) samples log s.  sigma is always log sigma.
    """

    def __init__(self, first, others, priors, pivots: np.ndarray | None = None):
        self.q1 = first.q
        self.n_cpc = n_cpc(first.q, first.correlated)
        self.eta = float(priors.cor[first.factor].eta) if self.n_cpc else 1.0
        scale_priors = [priors.sd[first.factor][t] for t in first.terms]
        for b in others:
            scale_priors += [priors.sd[b.factor][t] for t in b.terms]
        scale_priors.append(priors.sigma)
        self.family, self.param_a, self.param_b = scale_prior_arrays(scale_priors)
        self.n_rest = len(others)
        self.rest_q = [b.q for b in others]
        self.rest_ncpc = np.array([n_cpc(b.q, b.correlated) for b in others], dtype=np.int64)
        self.rest_eta = np.array([float(priors.cor[b.factor].eta) if n_cpc(b.q, b.correlated)
                                  else 1.0 for b in others])
        self.rest_meta = np.array([[b.q, n_cpc(b.q, b.correlated)] for b in others],
                                  dtype=np.int64).reshape(-1, 2)
        self.n_rest_sd = int(sum(self.rest_q))
        n_sd = self.q1 + self.n_rest_sd
        pivots = np.zeros(n_sd) if pivots is None else np.asarray(pivots, dtype=float)
        if pivots.shape != (n_sd,) or not np.all(np.isfinite(pivots) & (pivots >= 0)):
            raise ValueError(f"pivots must be {n_sd} finite numbers >= 0, got {pivots!r}")
        self.pivot = np.append(pivots, 0.0)  # one per SD, sigma's last (always log)
        self.ndim = self.q1 + self.n_cpc + self.n_rest_sd + int(self.rest_ncpc.sum()) + 1

    def _rest_slices(self):
        """(sd slice, cpc slice) of theta for each other block."""
        at = self.q1 + self.n_cpc
        out = []
        for q, ncpc in zip(self.rest_q, self.rest_ncpc, strict=True):
            out.append((slice(at, at + q), slice(at + q, at + q + int(ncpc))))
            at += q + int(ncpc)
        return out

    def _rest_pivots(self, k: int) -> np.ndarray:
        """The pivots of the k-th other block's SDs."""
        at = self.q1 + sum(self.rest_q[:k])
        return self.pivot[at:at + self.rest_q[k]]

    def constrain_blocks(self, theta: np.ndarray):
        """([(sd (D, q_k), correlation factor (D, q_k, q_k))] for the first and then every
        other block, sigma (D,)) for draws ``theta`` (D, ndim)."""
        theta = np.ascontiguousarray(theta, dtype=float).reshape(-1, self.ndim)
        sd_first, corr_first, _, sigma = self.constrain(theta)
        out = [(sd_first, corr_first)]
        for k, ((sd_sl, cpc_sl), q, eta) in enumerate(zip(self._rest_slices(), self.rest_q,
                                                          self.rest_eta, strict=True)):
            if cpc_sl.stop > cpc_sl.start:
                corr = np.empty((len(theta), q, q))
                corr_cholesky_draws(np.ascontiguousarray(theta[:, cpc_sl]), q, eta, corr)
            else:
                corr = np.broadcast_to(np.eye(q), (len(theta), q, q)).copy()
            out.append((sd_from_u(theta[:, sd_sl], self._rest_pivots(k)), corr))
        return out, sigma

    def constrain(self, theta: np.ndarray):
        """(sd_first (D, q1), corr_chol_first (D, q1, q1), the other blocks' SDs (D, sum
        q_k), sigma (D,)) for draws ``theta`` (D, ndim)."""
        theta = np.ascontiguousarray(theta, dtype=float).reshape(-1, self.ndim)
        q1, k = self.q1, self.q1 + self.n_cpc
        sd_first = sd_from_u(theta[:, :q1], self.pivot[:q1])
        if self.n_cpc:
            corr_chol = np.empty((len(theta), q1, q1))
            corr_cholesky_draws(np.ascontiguousarray(theta[:, q1:k]), q1, self.eta, corr_chol)
        else:
            corr_chol = np.broadcast_to(np.eye(q1), (len(theta), q1, q1)).copy()
        sd_idx = np.concatenate([np.arange(sl.start, sl.stop) for sl, _ in self._rest_slices()]
                                ) if self.n_rest else np.zeros(0, dtype=int)
        sd_rest = sd_from_u(theta[:, sd_idx], self.pivot[self.q1:-1])
        return sd_first, corr_chol, sd_rest, np.exp(theta[:, -1])

    def unconstrain(self, sd_first: np.ndarray, corr: np.ndarray, sd_rest: np.ndarray,
                    sigma: float, rest_corr: list[np.ndarray] | None = None) -> np.ndarray:
        """theta of the given SDs and correlation matrices (the first block's; the others'
        in ``rest_corr``, identity when None) and sigma; ``sd_rest`` holds the other blocks'
        SDs one after the other."""
        theta = np.empty(self.ndim)
        theta[:self.q1] = u_from_sd(sd_first, self.pivot[:self.q1])
        if self.n_cpc:
            theta[self.q1:self.q1 + self.n_cpc] = _cpc_of(corr)
        at = 0
        for k, ((sd_sl, cpc_sl), q) in enumerate(zip(self._rest_slices(), self.rest_q,
                                                     strict=True)):
            theta[sd_sl] = u_from_sd(np.asarray(sd_rest, dtype=float)[at:at + q],
                                     self._rest_pivots(k))
            at += q
            if cpc_sl.stop > cpc_sl.start:
                theta[cpc_sl] = _cpc_of(np.eye(q) if rest_corr is None else rest_corr[k])
        theta[-1] = math.log(sigma)
        return theta


def _cpc_of(corr: np.ndarray) -> np.ndarray:
    """Unconstrained CPCs (atanh) of a correlation matrix (row-major strict lower)."""
    w = np.linalg.cholesky(corr)
    q = w.shape[0]
    out = []
    for i in range(1, q):
        remaining = 1.0
        for j in range(i):
            z = w[i, j] / math.sqrt(remaining)
            out.append(math.atanh(np.clip(z, -0.999, 0.999)))
            remaining -= w[i, j] ** 2
    return np.array(out)


class MarginalPosterior(CovarianceLayout):
    """The marginal sampler's target density for one model (see the module docstring).

    Parameters
    ----------
    structure : MarginalStructure
        Sufficient statistics (must be ``eligible``).
    priors : ResolvedPriors
    mu0, inv_scale : ndarray
        Normal prior means and 1/sd of the centered fixed effects (0 for flat priors).
    pivots : ndarray or None
        The SDs' pivots (``CovarianceLayout``; default: log s for every SD).
    """

    def __init__(self, structure: MarginalStructure, priors, mu0: np.ndarray,
                 inv_scale: np.ndarray, pivots: np.ndarray | None = None):
        super().__init__(structure.blocks[0], structure.blocks[1:], priors, pivots)
        self.structure = structure
        self.kernel_arrays = structure.kernel_arrays(mu0, inv_scale)
        self._packed: np.ndarray | None = None

    def logp_and_grad(self, theta: np.ndarray) -> tuple[float, np.ndarray]:
        """Log posterior density (up to a constant) and its gradient at ``theta``; -inf with
        a zero gradient where the system is singular or an SD under- or overflows.  Calls
        the C callback nutpie samples with (``marginal_cfunc.LOGP_CFUNC``) through ctypes."""
        from .marginal_cfunc import LOGP_CFUNC

        theta = np.ascontiguousarray(theta, dtype=float)
        grad, logp = np.zeros(self.ndim), np.zeros(1)
        pointer = ctypes.POINTER(ctypes.c_double)
        LOGP_CFUNC.ctypes(self.ndim, theta.ctypes.data_as(pointer), grad.ctypes.data_as(pointer),
                          logp.ctypes.data_as(pointer),
                          self.packed().ctypes.data_as(ctypes.c_void_p))
        return float(logp[0]), grad

    def packed(self) -> np.ndarray:
        """The buffer the C callback reads (``callback_abi.pack``; compiles or loads the
        kernel callback, whose address it holds)."""
        from .callback_abi import pack
        from .kernel_cfunc import kernel_callback

        if self._packed is None:
            self._packed = pack(self, kernel_callback().address)
        return self._packed
