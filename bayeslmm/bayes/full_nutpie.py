"""The full PyMC model on nutpie: PyMC's own log density, compiled by PyTensor, sampled by
nutpie's Rust NUTS (``sampler="full"``, the sampler of residual structures and cs()/ar1()
G patterns).

Why not ``pm.sample``: PyMC's Python NUTS costs ~0.3-0.5 ms of interpreter time per
leapfrog step besides the gradient, and adapts a diagonal mass matrix only.  An unstructured
10-visit MMRM (79 parameters, 9,034 rows) needs ~22 leapfrog steps per draw with a diagonal
mass matrix and ~7 with nutpie's low-rank one (its 55 covariance parameters are strongly
correlated in the posterior; models with random effects only keep the diagonal one, which
mixes better there).  Why not nutpie's ``compile_pymc_model``: it recompiles the
graph with numba on every fit (tens of seconds for an LKJ graph) and needs a numba
implementation of every custom Op.

How: one PyTensor function of the raveled unconstrained point -> (log p, gradient), the
graph PyMC builds for ``pm.sample`` (``Model.logp`` with Jacobians), copied once per chain
(a compiled function's storage is not safe to share between nutpie's threads; a copy costs
~40 ms, so it happens in nutpie's per-chain factory, never per call).  The likelihood Ops'
numba kernels release the GIL, so chains overlap there.  The draws of the unconstrained
point are mapped to every variable ``pm.sample`` would store (free variables on their own
scale and the deterministics, same names, dims and coords) by a second PyTensor function.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable
from contextlib import contextmanager

import numpy as np

__all__ = ["sample_full"]


@contextmanager
def _quiet_blas_logger():
    """PyTensor logs "Using NumPy C-API based implementation for BLAS functions" (a logging
    WARNING, not a Python warning) when it compiles a graph with a dot product and finds no
    linked BLAS; the speed note is PyTensor's, not the user's to act on."""
    logger = logging.getLogger("pytensor.tensor.blas")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


class CompiledDensity:
    """log p and its gradient over the raveled value variables of ``pm_model``."""

    def __init__(self, pm_model):
        import pytensor
        import pytensor.tensor as pt
        from pymc.pytensorf import join_nonshared_inputs

        self.model = pm_model
        self.value_vars = list(pm_model.value_vars)
        point = pm_model.initial_point()
        self.shapes = [tuple(np.shape(point[v.name])) for v in self.value_vars]
        self.sizes = [int(np.prod(s)) for s in self.shapes]
        self.ndim = int(sum(self.sizes))
        logp = pm_model.logp()
        grads = pytensor.grad(logp, self.value_vars)
        flat_grad = pt.concatenate([g.ravel() for g in grads])
        [logp_f, grad_f], flat = join_nonshared_inputs(point, [logp, flat_grad],
                                                       self.value_vars)
        with warnings.catch_warnings(), _quiet_blas_logger():
            warnings.filterwarnings("ignore", message=".*BLAS.*")
            self._function = pytensor.function([flat], [logp_f, grad_f], trust_input=True)
            outputs = [v for v in pm_model.unobserved_value_vars
                       if not v.name.endswith("__")]
            self.names = [v.name for v in outputs]
            self._expand = pm_model.compile_fn(outputs, inputs=self.value_vars,
                                               on_unused_input="ignore", point_fn=False)

    def flatten(self, point: dict) -> np.ndarray:
        return np.concatenate([np.ravel(np.asarray(point[v.name], dtype=float))
                               for v in self.value_vars])

    def logp_factory(self) -> Callable:
        """nutpie's per-chain logp factory: each chain gets its own copy of the function."""
        def make_logp():
            function = self._function.copy()

            def logp(x, **_shared):
                value, grad = function(np.asarray(x, dtype=np.float64))
                value = float(value)
                if not np.isfinite(value):
                    return -np.inf, np.zeros(self.ndim)
                return value, np.array(grad, dtype=np.float64)

            return logp

        return make_logp

    def unflatten(self, x: np.ndarray) -> list[np.ndarray]:
        parts, start = [], 0
        for shape, size in zip(self.shapes, self.sizes, strict=True):
            parts.append(x[start:start + size].reshape(shape))
            start += size
        return parts

    def variables(self, theta: np.ndarray) -> dict[str, np.ndarray]:
        """Every stored variable for draws ``theta`` (chain, draw, ndim)."""
        chains, draws = theta.shape[:2]
        flat = theta.reshape(chains * draws, -1)
        out = [self._expand(*self.unflatten(x)) for x in flat]
        return {name: np.stack([row[k] for row in out]).reshape(
            chains, draws, *np.shape(out[0][k])) for k, name in enumerate(self.names)}


def unconstrained_starts(pm_model, density: CompiledDensity, points: list[dict]) -> list:
    """Each start point (free variables on their own scale) on the unconstrained scale."""
    from pymc.initial_point import make_initial_point_fn

    free = {v.name for v in pm_model.free_RVs}
    starts = []
    for point in points:
        fn = make_initial_point_fn(model=pm_model, overrides={k: v for k, v in point.items()
                                                              if k in free},
                                   jitter_rvs=set(), return_transformed=True)
        starts.append(density.flatten(fn(0)))
    return starts


def sample_full(model, *, draws: int, tune: int, chains: int, cores: int, seed: int | None,
                progressbar: bool, init: str, rng: np.random.Generator, pm_model=None,
                **kwargs):
    """nutpie over the full PyMC model of ``model`` (a ``bayeslmm.Model``), or over
    ``pm_model`` (the residual marginal sampler's): an InferenceData with the ``posterior``
    ``pm.sample`` would give and its sample stats."""
    import arviz as az
    import xarray as xr

    from .nutpie_adapter import from_pyfunc, low_rank_kwargs
    from .nutpie_backend import JITTER, run_compiled

    pm_model = model.pymc_model if pm_model is None else pm_model
    density = CompiledDensity(pm_model)
    if init == "reml":
        starts = unconstrained_starts(pm_model, density, model.initial_points(chains, rng))
    else:
        base = density.flatten(pm_model.initial_point())
        starts = [base + rng.uniform(-JITTER, JITTER, base.shape) for _ in range(chains)]

    def initial_point(seed_):
        return np.asarray(starts[int(seed_) % len(starts)], dtype="float64")

    def make_expand(_seed1, _seed2, _chain):
        return lambda x, **_shared: {"theta": np.array(x, dtype="float64")}

    n = density.ndim
    compiled = from_pyfunc(n, density.logp_factory(), make_expand, [np.dtype("float64")],
                           [(n,)], ["theta"], make_initial_point_fn=initial_point)
    # low-rank mass matrix for residual structures (their covariance parameters are strongly
    # correlated: ~7 leapfrog steps per draw instead of ~22 on a 10-visit MMRM); diagonal
    # for random effects (sleepstudy in full: R-hat 1.02 / min ESS 395 low-rank, 1.01 / 612
    # diagonal); target_accept as the PyMC path
    mass = low_rank_kwargs() if model.residual_model is not None else {}
    kwargs = {"target_accept": 0.9, **mass, **kwargs}
    theta, stats = run_compiled(compiled, draws=draws, tune=tune, chains=chains, cores=cores,
                                seed=seed, progressbar=progressbar, **kwargs)
    values = density.variables(theta)
    dims_of = pm_model.named_vars_to_dims
    coords = {"chain": np.arange(theta.shape[0]), "draw": np.arange(theta.shape[1])}
    variables = {}
    for name, value in values.items():
        dims = tuple(dims_of.get(name, ()))
        if len(dims) != value.ndim - 2:
            dims = tuple(f"{name}_dim_{k}" for k in range(value.ndim - 2))
        for d in dims:
            if d in pm_model.coords and pm_model.coords[d] is not None:
                coords[d] = list(pm_model.coords[d])
        variables[name] = (("chain", "draw", *dims), value)
    posterior = xr.Dataset(variables, coords=coords)
    return az.InferenceData(posterior=posterior, sample_stats=stats)
