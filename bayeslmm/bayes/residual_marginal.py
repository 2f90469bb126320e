"""The marginal sampler for R-side structures: beta (and the random effects of the
residual's own groups) integrated out, NUTS over the covariance parameters only.

With ``residual="STRUCT(occasion | group)"`` the residual covariance is block-diagonal by
group; so is V = Z G Z' + R when every random-effect term is grouped by that same factor
(one level per residual group: ``lme(..., random = ~ 1 | Subject, correlation =
corAR1(form = ~ 1 | Subject))``).  Then p(y | Sigma, G) is a sum over groups of small
whitened blocks (``residual/marginal_kernel.py``: value and exact gradient in one pass),
and beta and b are drawn afterwards, for every posterior draw, from their exact
conditional - the same posterior as the full sampler's, in 55 instead of 79 dimensions on
a 10-visit unstructured MMRM, with independent draws of beta.

Not here (``ResidualMarginal.unavailable`` says why; the full sampler takes them): car1
(its correlation depends on each group's own times, not on a T x T matrix), ``sigma="~ f"``,
random effects on another factor (crossed or coarser: V is not block-diagonal by group),
non-Normal fixed-effect priors, and groups of more than ``MAX_GROUP_ROWS`` rows.

The PyMC model (``builder.build_residual_marginal_model``) holds the same priors and public
variables as the full one, minus ``b`` and ``r_<f>``, which ``conditional_draws`` adds.
"""

from __future__ import annotations

import numpy as np

from ..residual.loglik_kernel import KernelLayout
from ..residual.marginal_kernel import gls_conditional_draws, gls_marginal_logp
from ..residual.model import ResidualModel
from ..residual.structures import ContinuousAutoRegressive
from ..spec import ModelSpec
from .marginal import fixed_center, fixed_prior_arrays

__all__ = ["ResidualMarginal", "MAX_GROUP_ROWS"]

MAX_GROUP_ROWS = 200   # a dense m x m factor per group and gradient
# sampler="auto" takes the marginal sampler without random effects only while a gradient's
# work n p (p + m) stays below this: its gradient costs O(n p (p + m)) against the full
# sampler's O(n m) (measured, 4 chains x 1000 draws: the 800-row FEV-shaped MMRM, p = 11,
# 16.3 s marginal vs 23.3 s full; the 10,000-row BCVA-shaped one, p = 24, 3-4 ms against
# 0.4 ms a gradient, 316 s vs 57 s).  With random effects of the residual's groups it is
# always taken: the full sampler then walks every b_i as well (orthodont, cs residual +
# (1 | Subject): min bulk ESS per second 8.1 marginal vs 1.8 full, 13 divergences).
MARGINAL_WORK = 2_000_000
DRAW_CHUNK_VALUES = 20_000_000   # noise values held at once by ``conditional_draws``


class ResidualMarginal:
    """Arrays of the residual marginal likelihood for one model and its priors.

    Parameters
    ----------
    spec : ModelSpec
    residual : ResidualModel
    priors : ResolvedPriors
    """

    def __init__(self, spec: ModelSpec, residual: ResidualModel, priors):
        self.spec, self.residual = spec, residual
        self.reason = self.unavailable(spec, residual, priors)
        if self.reason is not None:
            return
        self.mu0, inv_scale = fixed_prior_arrays(spec, priors)
        self.prec = np.ascontiguousarray(inv_scale**2)
        self.center = fixed_center(spec)
        self.x = np.ascontiguousarray(spec.X - self.center, dtype=float)
        self.e0 = np.ascontiguousarray(spec.y - self.x @ self.mu0, dtype=float)
        self.layout = KernelLayout.of(residual)
        self.factor = spec.blocks[0].factor if spec.blocks else None
        self.z = (np.ascontiguousarray(np.column_stack([b.columns for b in spec.blocks]),
                                       dtype=float) if spec.blocks else np.zeros((spec.n, 0)))
        lay = self.layout
        self.level_of_group = (spec.blocks[0].codes[lay.rows[lay.group_start[:-1]]]
                               if spec.blocks else np.zeros(0, dtype=np.int64))

    @staticmethod
    def unavailable(spec: ModelSpec, residual: ResidualModel, priors) -> str | None:
        """Why this model cannot use the residual marginal sampler (None when it can)."""
        s = residual.structure
        if s is None:
            return "sigma='~ f' without a residual structure uses the full sampler"
        if isinstance(s, ContinuousAutoRegressive):
            return "car1's correlation depends on each group's times (full sampler)"
        if residual.n_variance:
            return "a variance function (sigma='~ f') uses the full sampler"
        if fixed_prior_arrays(spec, priors) is None:
            return "every fixed-effect prior must be Normal or Flat"
        sizes = np.bincount(residual.group_codes)
        if sizes.max() > MAX_GROUP_ROWS:
            return (f"groups of the residual structure have up to {int(sizes.max())} rows "
                    f"(at most {MAX_GROUP_ROWS} for the marginal sampler)")
        factors = {b.factor for b in spec.blocks}
        if len(factors) > 1:
            return ("random effects on more than one grouping factor make V non-block-diagonal"
                    " by the residual's groups")
        if spec.blocks:
            codes = spec.blocks[0].codes
            n_groups = int(residual.group_codes.max()) + 1
            first = np.full(n_groups, -1, dtype=np.int64)
            first[residual.group_codes] = codes
            if (np.any(first[residual.group_codes] != codes)
                    or len(np.unique(first)) != n_groups):
                return (f"the random effects' factor {next(iter(factors))!r} is not the "
                        "residual structure's group (one level per group)")
        return None

    @property
    def preferred(self) -> bool:
        """Whether ``sampler="auto"`` takes this sampler (see ``MARGINAL_WORK``)."""
        if self.reason is not None:
            return False
        work = self.spec.n * self.spec.p * (self.spec.p + self.layout.max_size)
        return bool(self.spec.blocks) or work <= MARGINAL_WORK

    @property
    def q(self) -> int:
        return self.z.shape[1]

    def _layout_args(self) -> tuple:
        lay = self.layout
        return (lay.rows, lay.group_start, lay.group_pattern, lay.pattern_pos,
                lay.pattern_start, lay.max_size)

    def logp(self, cov: np.ndarray, g: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
        """(log p(y | Sigma, G), d/dSigma, d/dG) with beta and b integrated out."""
        return gls_marginal_logp(self.e0, self.x, self.z, np.ascontiguousarray(cov, float),
                                 np.ascontiguousarray(g, float).reshape(self.q, self.q),
                                 self.prec, *self._layout_args())

    def conditional_draws(self, covs: np.ndarray, gs: np.ndarray, rng: np.random.Generator
                          ) -> tuple[np.ndarray, np.ndarray]:
        """Draws of beta (D, p; original parametrization) and of the random effects
        (D, levels, q) given each draw's Sigma (D, T, T) and G (D, q, q)."""
        n_draws = covs.shape[0]
        lay = self.layout
        n_groups = lay.group_start.size - 1
        p, q = self.spec.p, self.q
        gs = np.ascontiguousarray(gs, dtype=float).reshape(n_draws, q, q)
        chunk = max(1, int(DRAW_CHUNK_VALUES // max(self.spec.n, 1)))
        deltas, effects = [], []
        for start in range(0, n_draws, chunk):
            sl = slice(start, min(start + chunk, n_draws))
            d = sl.stop - sl.start
            noise_e = rng.standard_normal((d, self.spec.n)) if q else np.zeros((d, 0))
            delta, b = gls_conditional_draws(
                self.e0, self.x, self.z, np.ascontiguousarray(covs[sl], dtype=float), gs[sl],
                self.prec, *self._layout_args(), rng.standard_normal((d, p)),
                rng.standard_normal((d, n_groups, q)), noise_e)
            deltas.append(delta)
            effects.append(b)
        beta = np.concatenate(deltas) + self.mu0
        if "Intercept" in self.spec.x_names:
            beta[:, self.spec.x_names.index("Intercept")] -= beta @ self.center
        b = np.concatenate(effects)
        r = np.zeros((n_draws, len(self.spec.blocks[0].levels) if q else 0, q))
        if q:
            r[:, self.level_of_group] = b
        return beta, r
