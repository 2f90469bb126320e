"""Run nutpie (Rust NUTS) on a numba log density over a flat unconstrained vector.

nutpie calls ``logp_and_grad`` from its Rust threads (one per chain, up to ``cores`` at a
time); the numba functions release the GIL, so chains run in parallel, and no PyTensor graph
is compiled.  Draws come back as one ``theta`` array per draw; the caller maps them to the
public variables.  Measurements behind this choice: docs/speed.md and docs/design.md.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

__all__ = ["sample_flat", "sample_cfunc"]

# nutpie's sample_stats names -> PyMC's (BayesFit and the benchmarks read PyMC's)
STAT_NAMES = {"depth": "tree_depth", "maxdepth_reached": "reached_max_treedepth"}


def sample_flat(logp_and_grad: Callable[[np.ndarray], tuple[float, np.ndarray]], ndim: int,
                initial_point: Callable[[np.random.Generator], np.ndarray], *, draws: int,
                tune: int, chains: int, cores: int, seed: int | None, progressbar: bool,
                target_accept: float = 0.8, **kwargs):
    """NUTS draws of ``theta`` (chains, draws, ndim) and nutpie's sample stats (xarray).

    ``initial_point(rng)`` gives a chain's start; nutpie passes each chain its own seed.
    Extra ``kwargs`` go to ``nutpie.sample`` (e.g. ``maxdepth``).
    """
    from nutpie.compiled_pyfunc import from_pyfunc

    def make_logp():
        # -inf (a singular system) counts as a divergence; an exception would abort nutpie
        return lambda x, **_shared: logp_and_grad(x)

    def make_expand(_seed1, _seed2, _chain):
        def expand(x, **_shared):
            return {"theta": np.array(x, dtype="float64")}
        return expand

    def make_init(seed):
        return np.asarray(initial_point(np.random.default_rng(seed)), dtype="float64")

    compiled = from_pyfunc(ndim, make_logp, make_expand, [np.dtype("float64")], [(ndim,)],
                           ["theta"], make_initial_point_fn=make_init)
    return _run(compiled, draws=draws, tune=tune, chains=chains, cores=cores, seed=seed,
                progressbar=progressbar, target_accept=target_accept, **kwargs)


def sample_cfunc(logp_cfunc, expand_cfunc, user_data: np.ndarray, ndim: int,
                 initial_point: Callable[[np.random.Generator], np.ndarray], *, draws: int,
                 tune: int, chains: int, cores: int, seed: int | None, progressbar: bool,
                 target_accept: float = 0.8, **kwargs):
    """As ``sample_flat`` for a numba ``cfunc`` log density (nutpie's C-callback signature,
    ``marginal_cfunc.LOGP_SIG``) reading ``user_data``: no Python call per gradient, so
    chains run in parallel threads without contending for the GIL."""
    from nutpie.compile_pymc import CompiledPyMCModel

    def make_init(seed):
        return np.asarray(initial_point(np.random.default_rng(seed)), dtype="float64")

    compiled = CompiledPyMCModel(
        dims={}, _n_dim=ndim, _coords={}, _shapes={"theta": (ndim,)},
        compiled_logp_func=logp_cfunc, compiled_expand_func=expand_cfunc,
        initial_point_func=make_init, shared_data={}, user_data=user_data, n_expanded=ndim,
        shape_info=(["theta"], [slice(0, ndim)], [(ndim,)]), logp_func=None,
        expand_func=None)
    return _run(compiled, draws=draws, tune=tune, chains=chains, cores=cores, seed=seed,
                progressbar=progressbar, target_accept=target_accept, **kwargs)


def _run(compiled, *, seed, progressbar, **kwargs):
    import nutpie

    seed = int(np.random.default_rng(seed).integers(2**31)) if seed is not None else None
    idata = nutpie.sample(compiled, seed=seed, progress_bar=progressbar, save_warmup=False,
                          **kwargs)
    stats = idata.sample_stats.rename({k: v for k, v in STAT_NAMES.items()
                                       if k in idata.sample_stats})
    return idata.posterior["theta"].to_numpy(), stats
