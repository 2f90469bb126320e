"""The marginal sampler: integrate b and beta out, sample only covariance parameters.

For a Gaussian LMM with Normal (or flat) priors on the fixed effects,

    p(y | G, sigma) = N(y | X mu0, sigma^2 I + Z G Z' + X Sigma0 X')

is lme4's penalized least-squares system with sigma not profiled.  With Lambda = L_G / sigma
(relative factor), the fixed effects' prior as pseudo-observations D (beta - mu0) with
D = diag(sigma / s0) (zero rows for flat priors), and [Z X y]'[Z X y] reduced to the same
blocked factor the REML engine uses (bayeslmm/reml/system.py),

    log p(y | G, sigma) = -(n - p)/2 log(2 pi sigma^2) - 1/2 (log|L_Z|^2 + log|R_X|^2)
                          - r^2 / (2 sigma^2) + const.

Everything is a function of sufficient statistics: per-level q1 x q1 cross products of the
first (largest) factor, the r x m1 x q1 array C = R'Z_1 and the r x r matrix R'R, with R the
rest rows (other random blocks, X, y).  A gradient costs O(m1 q1^2 r + r^3), independent of
n.  NUTS then walks only the SDs, correlations and sigma (4 dimensions for sleepstudy
``(Days | Subject)``); beta and b are drawn afterwards, for every posterior draw, from their
exact Gaussian conditional (``conditional_draws``).  The posterior is the full model's.

Eligible models (``MarginalStructure.eligible``): any block shapes, as long as the rest
dimension r (the other blocks' effects, X and y) is small enough for a dense r x r Cholesky
per gradient (``MAX_REST``): crossed intercepts, and maximal crossed designs like kb07's
(4 x 4 G on subjects and on items: r = 133).  InstEval's r = 1,159 is not: see
docs/design.md.  The other blocks enter through Lt = blockdiag_k(I_{m_k} (x) lambda_k,
I_{p+1}) on both sides of the rest rows' Schur complement; a 1 x 1 block's lambda is its
SD / sigma.
"""

from __future__ import annotations

from functools import cached_property

import numpy as np

from ..core.statistics import cross_products
from ..spec import ModelSpec, RandomBlock

__all__ = ["MarginalStructure", "fixed_center", "fixed_prior_arrays"]

MAX_REST = 200        # dense r x r Cholesky per gradient
MAX_CROSS = 4_000_000  # r * m1 * q1 entries held densely
# conditional draws by the kernel's draw mode from r^2 m1 q1 on: its ~30 us of ctypes
# overhead a draw loses to numpy's batched products on small systems (sleepstudy, r^2 m1 q1
# = 324: numpy 0.10 s, kernel 0.17 s for 4,000 draws) and wins on large ones (kb07, 4e6:
# numpy 4.2 s, kernel 1.1 s)
KERNEL_DRAW_WORK = 100_000


def fixed_center(spec: ModelSpec) -> np.ndarray:
    """Column means the fixed-effect priors are stated about (``builder._fixed_part``: the
    intercept is sampled for centered predictors); zeros without an intercept."""
    center = spec.X.mean(axis=0) if spec.n else np.zeros(spec.p)
    if "Intercept" in spec.x_names:
        center[spec.x_names.index("Intercept")] = 0.0
    else:
        center[:] = 0.0
    return center


def fixed_prior_arrays(spec: ModelSpec, priors) -> tuple[np.ndarray, np.ndarray] | None:
    """(mu0, 1/s0) per coefficient of the centered parametrization (1/s0 = 0 for flat);
    None when a prior is neither Normal nor Flat."""
    from .priors import Flat, Normal

    mu = np.zeros(spec.p)
    inv_scale = np.zeros(spec.p)
    for j, name in enumerate(spec.x_names):
        prior = priors.fixed[name]
        if isinstance(prior, Normal):
            mu[j], inv_scale[j] = prior.mu, 1.0 / prior.sigma
        elif not isinstance(prior, Flat):
            return None
    return mu, inv_scale


class MarginalStructure:
    """Sufficient statistics of the marginal likelihood (see the module docstring)."""

    def __init__(self, spec: ModelSpec):
        self.spec = spec
        self.blocks: list[RandomBlock] = [spec.blocks[k] for k in spec.block_order()]
        first, rest = self.blocks[0], self.blocks[1:]
        self.m1, self.q1 = first.n_levels, first.q
        self.rest_levels = [b.n_levels for b in rest]
        self.rest_q = [b.q for b in rest]
        self.rest = np.array([[b.n_levels, b.q] for b in rest], dtype=np.int64).reshape(-1, 2)
        self.rz = sum(b.n_effects for b in rest)
        self.n, self.p = spec.n, spec.p
        self.r = self.rz + self.p + 1
        self.eligible = self.r <= MAX_REST and self.r * self.m1 * self.q1 <= MAX_CROSS
        # the PyTensor graph (``logp``, PyMC's NUTS) handles 1 x 1 rest blocks only
        self.graph_eligible = self.eligible and all(q == 1 for q in self.rest_q)
        # fixed effects for centered predictors: intercept at the column means
        names = spec.x_names
        self.intercept = names.index("Intercept") if "Intercept" in names else None
        self.center = fixed_center(spec)
        if not self.eligible:
            return
        # the core's statistics, rest rows R = [Z_2 .. Z_K, X_c, y]
        stats = cross_products(spec, spec.block_order(), x_center=self.center)
        self.cross_first = stats.first
        self.cross = stats.cross.toarray().reshape(self.r, self.m1, self.q1)
        self.cross_rest = stats.rest

    @cached_property
    def _diag_q(self) -> np.ndarray:
        return np.arange(self.q1)

    @cached_property
    def _rest_expand(self) -> np.ndarray:
        """r x K matrix B with B @ [sd_2 .. sd_K, 1] = the per-row scale of the rest rows."""
        k = len(self.rest_levels)
        expand = np.zeros((self.r, k + 1))
        offset = 0
        for j, levels in enumerate(self.rest_levels):
            expand[offset:offset + levels, j] = 1.0
            offset += levels
        expand[offset:, k] = 1.0
        return expand

    def rest_factors(self, rest, sigma: float) -> list[np.ndarray]:
        """lambda_k = L_k / sigma of every rest block from ``rest``: an array of SDs (when
        every rest block is 1 x 1) or a list of Cholesky factors."""
        rest = list(np.asarray(rest, dtype=float)) if isinstance(rest, np.ndarray) else rest
        return [np.atleast_2d(np.asarray(f, dtype=float)) / sigma for f in rest]

    def rest_transform(self, lams: list[np.ndarray]) -> np.ndarray:
        """Lt = blockdiag_k(I_{m_k} (x) lambda_k, I_{p+1}) as a dense r x r matrix; with
        lambdas of shape (D, q_k, q_k), one per draw: (D, r, r)."""
        batch = lams[0].shape[:-2] if lams else ()
        lt = np.broadcast_to(np.eye(self.r), batch + (self.r, self.r)).copy()
        at = 0
        for levels, lam in zip(self.rest_levels, lams, strict=True):
            q = lam.shape[-1]
            for _ in range(levels):
                lt[..., at:at + q, at:at + q] = lam
                at += q
        return lt

    @cached_property
    def _identity_rest(self) -> np.ndarray:
        eye = np.zeros((self.r, self.r))
        eye[np.arange(self.rz), np.arange(self.rz)] = 1.0
        return eye

    def _prior_cross(self, mu0: np.ndarray, inv_scale: np.ndarray) -> np.ndarray:
        """Cross products of the prior pseudo-rows [diag(1/s0), mu0/s0] (times sigma^2)."""
        key = (mu0.tobytes(), inv_scale.tobytes())
        cached = getattr(self, "_prior_cache", None)
        if cached is not None and cached[0] == key:
            return cached[1]
        w = inv_scale**2
        out = np.zeros((self.r, self.r))
        x = np.arange(self.rz, self.rz + self.p)
        out[x, x] = w
        out[x, -1] = out[-1, x] = w * mu0
        out[-1, -1] = (w * mu0**2).sum()
        self._prior_cache = (key, out)
        return out

    def kernel_arrays(self, mu0: np.ndarray, inv_scale: np.ndarray) -> tuple:
        """The numba kernel's statistics (A, C, CR, rest, mu0, wprior, n_obs), C-contiguous."""
        return (np.ascontiguousarray(self.cross_first), np.ascontiguousarray(self.cross),
                np.ascontiguousarray(self.cross_rest),
                np.ascontiguousarray(self.rest, dtype=np.int64),
                np.asarray(mu0, dtype=float), np.asarray(inv_scale, dtype=float) ** 2,
                float(self.n))

    # -- fixed-effect priors -------------------------------------------------------------
    def prior_arrays(self, priors) -> tuple[np.ndarray, np.ndarray] | None:
        """(mu0, 1/s0) per coefficient of the centered parametrization (1/s0 = 0 for flat);
        None when a prior is neither Normal nor Flat."""
        return fixed_prior_arrays(self.spec, priors)

    # -- log density (PyTensor) ----------------------------------------------------------
    def logp(self, lam_first, sd_rest, sigma, mu0: np.ndarray, inv_scale: np.ndarray):
        """PyTensor expression of log p(y | G, sigma) (up to a constant).

        ``lam_first``: (q1, q1) Cholesky factor of the first block's G divided by sigma;
        ``sd_rest``: list of scalar SDs of the other (1 x 1) blocks.
        """
        import pytensor.tensor as pt

        sigma2 = sigma**2
        weights, logdet1 = self._weights_graph(lam_first, pt)
        cw = (self.cross[:, :, :, None] * weights[None, :, :, :]).sum(axis=2)
        cwc = pt.dot(cw.reshape((self.r, self.m1 * self.q1)),
                     self.cross.reshape((self.r, self.m1 * self.q1)).T)
        schur = self.cross_rest - cwc
        if self.rz:
            # scale = [sd_k / sigma repeated m_k times, 1 for X and y] = B @ [sd / sigma, 1]
            ratios = pt.concatenate([pt.stack(sd_rest) / sigma, pt.ones(1)])
            scale = pt.dot(self._rest_expand, ratios)
            schur = schur * scale[:, None] * scale[None, :]
        # + I on the rest random effects, + sigma^2 * (the fixed-effect prior rows' cross
        # products): both constant patterns, so no indexing ops in the graph
        schur = schur + self._identity_rest + sigma2 * self._prior_cross(mu0, inv_scale)
        chol = pt.linalg.cholesky(schur)
        d = pt.diagonal(chol)
        logdet = logdet1 + 2.0 * pt.log(d[:-1]).sum()
        pwrss = d[-1] ** 2
        dof = self.n - self.p
        return -0.5 * dof * pt.log(2 * np.pi * sigma2) - 0.5 * logdet - pwrss / (2.0 * sigma2)

    def _weights_graph(self, lam, pt):
        """W_j = lam M_j^-1 lam' and sum_j log|M_j|, M_j = lam' A_j lam + I."""
        a = self.cross_first
        if self.q1 == 1:
            lam2 = lam[0, 0] ** 2
            m = lam2 * a[:, 0, 0] + 1.0
            return (lam2 / m)[:, None, None], pt.log(m).sum()
        m = pt.tensordot(pt.tensordot(a, lam, axes=[[2], [0]]), lam, axes=[[1], [0]])
        m = m.dimshuffle(0, 2, 1) + pt.eye(self.q1)  # (j, a, d) = sum_bc lam_ba A_jbc lam_cd
        if self.q1 == 2:
            m00, m01, m11 = m[:, 0, 0], m[:, 0, 1], m[:, 1, 1]
            det = m00 * m11 - m01 * m01
            inv = pt.stack([pt.stack([m11, -m01], axis=1), pt.stack([-m01, m00], axis=1)],
                           axis=1) / det[:, None, None]
            logdet = pt.log(det).sum()
        else:
            inv = pt.linalg.inv(m)
            logdet = pt.log(pt.linalg.det(m)).sum()
        # W_j = lam inv_j lam'
        w = pt.tensordot(pt.tensordot(inv, lam, axes=[[2], [1]]), lam, axes=[[1], [1]])
        return w.dimshuffle(0, 2, 1), logdet

    # -- log density and its gradient in numpy (for the custom Op) ----------------------
    def logp_and_grad(self, chol_first: np.ndarray, sd_rest, sigma: float,
                      mu0: np.ndarray, inv_scale: np.ndarray, cross: np.ndarray | None = None,
                      cross_rest: np.ndarray | None = None, modes: bool = False):
        """log p(y | G, sigma) (same constant as ``logp``) and its gradient with respect to
        the first block's Cholesky factor (lower triangle), the other blocks' factors (SDs
        when ``sd_rest`` is an array of SDs, else a list of lower triangles) and sigma.

        With Lambda = L / sigma, M = Lambda'A Lambda + I + sigma^2 P0 (all of the system
        but y), H = M^-1 and u, beta, e the conditional modes and residuals:
        d log|M| / d lambda_k = 2 lambda_k^-T (m_k I - sum_j H_jj) (H_jj: level j's diagonal
        block of H), d r^2 / d lambda_k = -2 sum_j (Z_k'e)_j u_j', and for sigma at fixed
        Lambda, d M = 2 sigma P0 d sigma.  The chain rule maps (Lambda, sigma) to (L, sd, sigma).

        ``cross``/``cross_rest`` replace the stored statistics (the partial sampler passes
        them with y adjusted for the sampled effects); ``modes=True`` also returns the
        conditional modes (beta for centered predictors, b of the first block, and the
        other blocks' b stacked level-major, in data units).
        """
        q1, r, rz, p = self.q1, self.r, self.rz, self.p
        cross = self.cross if cross is None else cross
        cross_rest = self.cross_rest if cross_rest is None else cross_rest
        cross_2d = cross.reshape(r, -1)
        lam1 = chol_first / sigma
        as_sds = isinstance(sd_rest, np.ndarray)
        lams = self.rest_factors(sd_rest, sigma)
        lt = self.rest_transform(lams)
        a = self.cross_first
        m = lam1.T @ a @ lam1
        m[:, self._diag_q, self._diag_q] += 1.0
        m_inv, logdet1 = _inverse_and_logdet(m)
        weights = lam1 @ m_inv @ lam1.T
        cwc = _times_blocks(cross, weights).reshape(r, -1) @ cross_2d.T
        schur = lt.T @ (cross_rest - cwc) @ lt
        schur += self._identity_rest + sigma**2 * self._prior_cross(mu0, inv_scale)
        chol = np.linalg.cholesky(schur)
        d = np.diagonal(chol)
        pwrss = d[-1] ** 2
        dof = self.n - p
        value = (-0.5 * dof * np.log(2 * np.pi * sigma**2) - 0.5 * (logdet1 + 2 * np.log(
            d[:-1]).sum()) - pwrss / (2 * sigma**2))
        # modes: x = [u_rest, beta] solves the (r-1) system; u1 per level
        la = chol[:-1, :-1]
        inv_la = np.linalg.inv(la)
        x_rest = inv_la.T @ chol[-1, :-1]
        u_rest, beta = x_rest[:rz], x_rest[rz:]
        b_rest = lt[:rz, :rz] @ u_rest
        w = np.concatenate([-b_rest, -beta, [1.0]])
        v = (w @ cross_2d).reshape(self.m1, q1)                     # Z1'(y - X beta - Zr br)
        u1 = (m_inv @ (v @ lam1)[:, :, None])[:, :, 0]               # M_j^-1 lam1' v_j
        b1 = u1 @ lam1.T
        z1e = v - (a @ b1[:, :, None])[:, :, 0]                      # Z1'e per level
        # diagonal blocks of H = M^-1: rest from S_A^-1, first block from the Schur terms
        h_rest = inv_la.T @ inv_la
        cross_s = (lt.T @ cross_2d).reshape(r, self.m1, q1)
        y = _times_blocks(cross_s[:-1] @ lam1, m_inv)
        y = (inv_la @ y.reshape(r - 1, -1)).reshape(-1, q1)          # rows (r, j), cols c
        h_first_sum = m_inv.sum(axis=0) + y.T @ y
        g_lam1 = np.tril(-np.linalg.solve(lam1.T, self.m1 * np.eye(q1) - h_first_sum)
                         + (z1e.T @ u1) / sigma**2)
        g_rest = []
        grad_dot = (g_lam1 * lam1).sum()
        if rz:
            zre = cross_rest[:rz] @ w - cross_2d[:rz] @ b1.ravel()  # Zr'e
            offset = 0
            for levels, lam in zip(self.rest_levels, lams, strict=True):
                q = lam.shape[0]
                sl = slice(offset, offset + levels * q)
                h_blocks = h_rest[sl, sl].reshape(levels, q, levels, q)
                h_sum = np.einsum("jajb->ab", h_blocks)
                e_sum = zre[sl].reshape(levels, q).T @ u_rest[sl].reshape(levels, q)
                g = np.tril(-np.linalg.solve(lam.T, levels * np.eye(q) - h_sum)
                            + e_sum / sigma**2)
                g_rest.append(g)
                grad_dot += (g * lam).sum()
                offset += levels * q
        w_prior = inv_scale**2
        h_x = np.diagonal(h_rest)[rz:]
        g_sigma = (-dof / sigma - sigma * (w_prior * h_x).sum()
                   - (w_prior * (mu0 - beta) ** 2).sum() / sigma + pwrss / sigma**3)
        # chain rule to (L = sigma Lambda, sd = sigma lambda, sigma)
        g_sigma -= grad_dot / sigma
        g_rest = ([g / sigma for g in g_rest] if not as_sds else
                  np.array([g[0, 0] / sigma for g in g_rest]))
        if modes:
            return value, g_lam1 / sigma, g_rest, g_sigma, beta, b1, b_rest
        return value, g_lam1 / sigma, g_rest, g_sigma

    # -- exact conditional draws (numpy) -------------------------------------------------
    def conditional_draws(self, chol_first: np.ndarray, sd_rest: np.ndarray, sigma: np.ndarray,
                          mu0: np.ndarray, inv_scale: np.ndarray, rng: np.random.Generator,
                          statistics=None, use_kernel: bool | None = None):
        """Draw (beta, [b_k]) for every posterior draw from p(beta, b | G, sigma, y).

        Parameters
        ----------
        chol_first : (D, q1, q1) Cholesky factors of the first block's G per draw
        sd_rest : (D, K - 1) SDs of the other blocks per draw (all 1 x 1), or a list of
            (D, q_k, q_k) Cholesky factors, one per other block
        sigma : (D,)
        statistics : callable, optional
            ``statistics(slice)`` -> (cross (d, r, m1, q1), cross_rest (d, r, r)) per draw
            in place of the stored ones (the partial sampler's, for y minus the sampled
            effects: ``partial.KeptStatistics.adjusted``).
        use_kernel : bool, optional
            Draw with the numba kernel's draw mode (threads) instead of numpy.  Default:
            when this process has loaded the kernel, ``statistics`` is None and the Schur
            complement is big enough (``KERNEL_DRAW_WORK``).  Both read the same normals in
            the same order, so they give the same draws.

        Returns
        -------
        beta : (D, p) fixed effects (original, uncentered parametrization)
        effects : list of (D, m_k, q_k) per block, in ``self.blocks`` order
        """
        out_beta, out_eff = [], []
        if isinstance(sd_rest, np.ndarray):
            rest = [sd_rest[:, k, None, None] for k in range(sd_rest.shape[1])]
        else:
            rest = [np.asarray(f, dtype=float) for f in sd_rest]
        if use_kernel is None:
            from .kernel_cfunc import kernel_loaded

            use_kernel = (statistics is None and kernel_loaded()
                          and self.r * self.r * self.m1 * self.q1 >= KERNEL_DRAW_WORK)
        if use_kernel and statistics is not None:
            raise ValueError("the kernel draws only for the stored statistics")
        # ~40 MB per (chunk, r, m1, q1) array: 2e7 entries held ~400 MB more at InstEval's
        # r = 31 (and were slower: 12.2 -> 4.8 s for 4,000 draws with the BLAS products)
        chunk = int(max(1, min(500, 5e6 // (self.r * self.m1 * self.q1),
                               4e6 // (self.r * self.r))))
        arrays = self.kernel_arrays(mu0, inv_scale) if use_kernel else None
        for start in range(0, sigma.shape[0], chunk):
            sl = slice(start, start + chunk)
            n_draws = len(sigma[sl])
            noise_x = rng.standard_normal((n_draws, self.r - 1))
            noise_1 = rng.standard_normal((n_draws, self.m1, self.q1))
            factors = [f[sl] for f in rest]
            if use_kernel:
                from .kernel_cfunc import kernel_draws

                packed = (np.concatenate([f.reshape(n_draws, -1) for f in factors], axis=1)
                          if factors else np.zeros((n_draws, 0)))
                noise = np.concatenate([noise_x, noise_1.reshape(n_draws, -1)], axis=1)
                x_rest, b1 = kernel_draws(arrays, chol_first[sl], packed, sigma[sl], noise)
            else:
                stats = None if statistics is None else statistics(sl)
                x_rest, b1 = self._draw_chunk(chol_first[sl], factors, sigma[sl], mu0,
                                              inv_scale, noise_x, noise_1, stats)
            beta, effects = self._assemble(x_rest, b1, factors, sigma[sl])
            out_beta.append(beta)
            out_eff.append(effects)
        beta = np.concatenate(out_beta)
        effects = [np.concatenate([e[k] for e in out_eff]) for k in range(len(self.blocks))]
        return beta, effects

    def statistics_of(self, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``cross`` (d, r, m1, q1) and ``cross_rest`` (d, r, r) for responses y (d, n),
        from their rows (the numpy reference of ``partial.KeptStatistics.adjusted``), the
        rows without y staying as stored."""
        z1y = np.asarray(self._z1.T @ y.T).T.reshape(len(y), self.m1, self.q1)
        cross = np.repeat(self.cross[None], len(y), axis=0)
        cross[:, -1] = z1y
        ry = np.concatenate([np.asarray(b.sparse_z().T @ y.T).T for b in self.blocks[1:]]
                            + [y @ self.xc], axis=1)              # [Z_rest, X_c]'y
        cross_rest = np.repeat(self.cross_rest[None], len(y), axis=0)
        cross_rest[:, -1, :-1] = cross_rest[:, :-1, -1] = ry
        cross_rest[:, -1, -1] = np.einsum("dn,dn->d", y, y)
        return cross, cross_rest

    @cached_property
    def _z1(self):
        return self.blocks[0].sparse_z().tocsr()

    @cached_property
    def xc(self) -> np.ndarray:
        return self.spec.X - self.center

    def _draw_chunk(self, chol_first, rest, sigma, mu0, inv_scale, noise_x, noise_1,
                    stats=None):
        """numpy draws (the readable reference of the kernel's draw mode): x = [u_rest,
        centered beta] (D, r - 1) and b1 (D, m1, q1) from the normals ``noise_x`` (D, r - 1)
        and ``noise_1`` (D, m1, q1)."""
        n_draws = sigma.shape[0]
        q1, r, rz, p = self.q1, self.r, self.rz, self.p
        if stats is None:
            cross = np.broadcast_to(self.cross, (n_draws,) + self.cross.shape)
            cross_rest = self.cross_rest[None]
        else:
            cross, cross_rest = stats
        lam1 = chol_first / sigma[:, None, None]
        m = np.einsum("Dba,jbc,Dcd->Djad", lam1, self.cross_first, lam1, optimize=True)
        m += np.eye(q1)
        chol_m = np.linalg.cholesky(m)
        solved = _solve_small(chol_m, np.broadcast_to(
            np.swapaxes(lam1, 1, 2)[:, None], m.shape))          # L_j^-1 lam1'
        weights = np.swapaxes(solved, 2, 3) @ solved               # lam1 M_j^-1 lam1'
        cw = np.einsum("Drja,Djab->Drjb", cross, weights, optimize=True)
        # batched BLAS products (einsum's loop took 12 s for InstEval's r = 31 over 4,000 draws)
        cross_2d = cross.reshape(n_draws, r, -1)
        cwc = cw.reshape(n_draws, r, -1) @ np.swapaxes(cross_2d, 1, 2)
        schur = cross_rest - cwc
        lt = self.rest_transform([f / sigma[:, None, None] for f in rest])
        if not rest:
            lt = np.broadcast_to(lt, (n_draws, r, r))
        schur = np.swapaxes(lt, 1, 2) @ schur @ lt
        idx = np.arange(rz)
        schur[:, idx, idx] += 1.0
        prior_w = sigma[:, None] ** 2 * inv_scale[None, :] ** 2
        x_idx = np.arange(rz, rz + p)
        schur[:, x_idx, x_idx] += prior_w
        schur[:, x_idx, r - 1] += prior_w * mu0
        schur[:, r - 1, x_idx] += prior_w * mu0
        schur[:, r - 1, r - 1] += (prior_w * mu0**2).sum(axis=1)
        chol = np.linalg.cholesky(schur)
        upper = np.swapaxes(chol[:, :-1, :-1], 1, 2)
        rhs = chol[:, -1, :-1] + sigma[:, None] * noise_x
        x_rest = np.linalg.solve(upper, rhs[:, :, None])[:, :, 0]   # mean + sigma L^-T z
        u_rest, beta_c = x_rest[:, :rz], x_rest[:, rz:]
        b_rest = (lt[:, :rz, :rz] @ u_rest[:, :, None])[:, :, 0] if rz else u_rest
        w = np.concatenate([-b_rest, -beta_c, np.ones((n_draws, 1))], axis=1)
        v = (w[:, None, :] @ cross_2d).reshape(n_draws, self.m1, q1)  # Z1'(y - X b - Zr br)
        rhs1 = np.einsum("Dja,Dab->Djb", v, lam1)                  # lam1' v_j
        mean1 = _solve_small(m, rhs1[..., None])[..., 0]
        noise = _solve_small(np.swapaxes(chol_m, 2, 3), noise_1[..., None])[..., 0]
        u1 = mean1 + sigma[:, None, None] * noise
        return x_rest, np.einsum("Dab,Djb->Dja", lam1, u1)

    def _assemble(self, x_rest, b1, rest, sigma):
        """beta (uncentered) and the effects of every block, from x = [u_rest, centered
        beta] and b1 of ``_draw_chunk`` or the kernel's draw mode."""
        n_draws = sigma.shape[0]
        effects = [b1]
        offset = 0
        for levels, q, factor in zip(self.rest_levels, self.rest_q, rest, strict=True):
            u = x_rest[:, offset:offset + levels * q].reshape(n_draws, levels, q)
            lam = factor.reshape(n_draws, q, q) / sigma[:, None, None]
            effects.append(np.einsum("Dab,Djb->Dja", lam, u))
            offset += levels * q
        beta_c = x_rest[:, self.rz:]
        beta = beta_c.copy()
        if self.intercept is not None:
            beta[:, self.intercept] -= beta_c @ self.center
        return beta, effects


def _solve_small(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``np.linalg.solve`` over stacks of q x q systems, by division where q = 1 (InstEval's
    12 million 1 x 1 solves for 4,000 draws: 2.9 s in LAPACK's batched loop)."""
    if a.shape[-1] == 1:
        return b / a
    return np.linalg.solve(a, b)


def _inverse_and_logdet(m: np.ndarray) -> tuple[np.ndarray, float]:
    """Inverses and summed log determinants of a stack of small SPD matrices (closed forms
    for 1 x 1 and 2 x 2, which is most models)."""
    q = m.shape[-1]
    if q == 1:
        return 1.0 / m, float(np.log(m).sum())
    if q == 2:
        det = m[:, 0, 0] * m[:, 1, 1] - m[:, 0, 1] * m[:, 1, 0]
        inv = np.empty_like(m)
        inv[:, 0, 0] = m[:, 1, 1] / det
        inv[:, 1, 1] = m[:, 0, 0] / det
        inv[:, 0, 1] = -m[:, 0, 1] / det
        inv[:, 1, 0] = -m[:, 1, 0] / det
        if np.any(det <= 0):
            raise np.linalg.LinAlgError("matrix not positive definite")
        return inv, float(np.log(det).sum())
    chol = np.linalg.cholesky(m)
    logdet = 2.0 * np.log(np.diagonal(chol, axis1=1, axis2=2)).sum()
    return np.linalg.inv(m), float(logdet)


def _times_blocks(stack: np.ndarray, blocks: np.ndarray) -> np.ndarray:
    """out[r, j] = stack[r, j] @ blocks[j] for stack (r, m, q) and blocks (m, q, q)."""
    if blocks.shape[-1] == 1:
        return stack * blocks[None, :, 0, :]
    return (stack[:, :, :, None] * blocks[None]).sum(axis=2)
