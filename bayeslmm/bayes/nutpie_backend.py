"""The marginal and partial samplers on nutpie (Rust NUTS) over a flat unconstrained theta.

``sample_marginal``: nutpie calls the numba C callback ``marginal_cfunc.LOGP_CFUNC`` from its
threads (no Python, no GIL per gradient).  ``sample_partial``: a Python callback into the
numba ``partial_log_posterior`` (milliseconds of GIL-free work per call on the designs it is
for).  Both start every chain at the REML estimates (jittered) and return an InferenceData
with the public ``sd_<f>``/``cor_<f>``/``sigma`` (and the kept ``r_<f>``) variables and
PyMC-named sample stats; ``Model`` then adds the integrated-out effects' exact draws.
Measurements behind the choice of nutpie: docs/design.md.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

import numpy as np

from .builder import cor_dims, cor_name
from .marginal_posterior import CovarianceLayout

__all__ = ["sample_marginal", "sample_partial", "sample_flat", "sample_cfunc", "run_compiled",
           "JITTER"]

JITTER = 0.1  # per-chain jitter around the REML start (unconstrained scale; relative in PyMC)

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
    from .nutpie_adapter import from_pyfunc

    def make_logp():
        # -inf (a singular system) counts as a divergence; an exception would abort nutpie
        return lambda x, **_shared: logp_and_grad(x)

    def make_expand(_seed1, _seed2, _chain):
        def expand(x, **_shared):
            return {"theta": np.array(x, dtype="float64")}
        return expand

    compiled = from_pyfunc(ndim, make_logp, make_expand, [np.dtype("float64")], [(ndim,)],
                           ["theta"], make_initial_point_fn=_seeded(initial_point))
    return run_compiled(compiled, draws=draws, tune=tune, chains=chains, cores=cores,
                        seed=seed, progressbar=progressbar, target_accept=target_accept,
                        **kwargs)


def sample_cfunc(logp_cfunc, expand_cfunc, user_data: np.ndarray, ndim: int,
                 initial_point: Callable[[np.random.Generator], np.ndarray], *, draws: int,
                 tune: int, chains: int, cores: int, seed: int | None, progressbar: bool,
                 target_accept: float = 0.8, **kwargs):
    """As ``sample_flat`` for a numba ``cfunc`` log density (nutpie's C-callback signature,
    ``callback_abi.LOGP_SIG``) reading ``user_data``: no Python call per gradient, so
    chains run in parallel threads without contending for the GIL."""
    from .nutpie_adapter import compiled_cfunc_model

    compiled = compiled_cfunc_model(logp_cfunc, expand_cfunc, user_data, ndim,
                                    _seeded(initial_point))
    return run_compiled(compiled, draws=draws, tune=tune, chains=chains, cores=cores,
                        seed=seed, progressbar=progressbar, target_accept=target_accept,
                        **kwargs)


def _seeded(initial_point: Callable[[np.random.Generator], np.ndarray]):
    """nutpie's initial-point function: it passes each chain its own seed."""
    return lambda seed: np.asarray(initial_point(np.random.default_rng(seed)), dtype="float64")


def run_compiled(compiled, *, seed, progressbar, **kwargs):
    """``nutpie.sample`` on one BLAS thread: (draws of theta, PyMC-named sample stats)."""
    from ..core.threads import single_blas_thread
    from . import nutpie_adapter

    seed = int(np.random.default_rng(seed).integers(2**31)) if seed is not None else None
    try:  # chains are threads: BLAS inside the kernel stays single-threaded
        with single_blas_thread():
            idata = nutpie_adapter.sample(compiled, seed=seed, progress_bar=progressbar,
                                          save_warmup=False, **kwargs)
    except (RuntimeError, ValueError) as err:  # e.g. "All initialization points failed"
        raise RuntimeError(
            f"nutpie sampling failed: {str(err).splitlines()[0]}. Try init='auto', stronger "
            "priors, or backend='pymc'") from err
    stats = idata.sample_stats.rename({k: v for k, v in STAT_NAMES.items()
                                       if k in idata.sample_stats})
    return idata.posterior["theta"].to_numpy(), stats


def covariance_start(model, layout: CovarianceLayout, blocks: list) -> np.ndarray:
    """The covariance part of theta at the REML estimates (SDs floored at 5% of their
    prior scale, correlations clipped to +-0.9); ``blocks``: the first, then the 1 x 1
    ones, in ``layout``'s order."""
    reml = model.fit_reml()
    cov_of = {id(b): c for b, c in zip(reml.blocks, reml.covariances(), strict=True)}
    starts = [model.start_sd_corr(b, cov_of[id(b)]) for b in blocks]
    sd_first, corr = starts[0]
    sd_rest = np.concatenate([sd for sd, _ in starts[1:]]) if len(starts) > 1 else np.zeros(0)
    return layout.unconstrain(sd_first, corr, sd_rest, model.start_sigma(),
                              [c for _, c in starts[1:]])


def prior_start(model, layout: CovarianceLayout) -> np.ndarray:
    """``init="auto"``: SDs and sigma at half the response SD, no correlation."""
    half = (float(np.std(model.spec.y)) or 1.0) / 2
    return layout.unconstrain(np.full(layout.q1, half), np.eye(layout.q1),
                              np.full(layout.n_rest_sd, half), half)


def _prepare_kernel(progressbar: bool) -> None:
    """On a first fit on this machine, say so and start compiling the likelihood kernel in
    a helper process (``kernel_cfunc.compile_in_background``); then import ArviZ and nutpie
    (~2 s when cold) while it compiles."""
    from .kernel_cfunc import compile_in_background

    if compile_in_background() and progressbar:
        print("bayeslmm: compiling the sampler for this machine (first fit only, ~10 s)",
              file=sys.stderr, flush=True)
    import arviz  # noqa: F401
    import nutpie  # noqa: F401


def sample_marginal(model, *, draws: int, tune: int, chains: int, cores: int,
                    seed: int | None, progressbar: bool, init: str, **kwargs):
    """nutpie over theta, then the public sd/cor/sigma variables (an InferenceData
    with ``posterior`` and ``sample_stats``, like ``pm.sample``'s)."""
    _prepare_kernel(progressbar)
    import arviz as az

    from .marginal_cfunc import EXPAND_CFUNC, LOGP_CFUNC

    post = model.marginal_posterior()
    start = (covariance_start(model, post, post.structure.blocks) if init == "reml"
             else prior_start(model, post))

    def initial_point(chain_rng):
        return start + chain_rng.uniform(-JITTER, JITTER, start.shape)

    kwargs = {"target_accept": 0.8, **kwargs}
    theta, stats = sample_cfunc(LOGP_CFUNC, EXPAND_CFUNC, post.packed(), post.ndim,
                                initial_point, draws=draws, tune=tune, chains=chains,
                                cores=cores, seed=seed, progressbar=progressbar,
                                **kwargs)
    posterior = covariance_draws(model, post, post.structure.blocks, theta)
    return az.InferenceData(posterior=posterior, sample_stats=stats)


def covariance_draws(model, layout: CovarianceLayout, blocks: list, theta: np.ndarray):
    """xarray Dataset of ``sd_<f>``, ``cor_<f>`` and ``sigma`` from draws of theta
    (chain, draw, >= layout.ndim); ``blocks`` in ``layout``'s order."""
    import xarray as xr

    shape = theta.shape[:2]
    factors, sigma = layout.constrain_blocks(theta[:, :, :layout.ndim].reshape(-1, layout.ndim))
    sd_of = {id(b): sd for b, (sd, _) in zip(blocks, factors, strict=True)}
    corr_of = {id(b): w for b, (_, w) in zip(blocks, factors, strict=True)}
    coords = {"chain": np.arange(shape[0]), "draw": np.arange(shape[1])}
    variables = {"sigma": (("chain", "draw"), sigma.reshape(shape))}
    for group in model.groups:
        sd = np.concatenate([sd_of[id(b)] for b in group.blocks], axis=1)
        variables[f"sd_{group.factor}"] = (("chain", "draw", group.term_dim),
                                           sd.reshape(*shape, -1))
        coords[group.term_dim] = group.terms
        for k in group.correlated_blocks():
            corr_chol = corr_of[id(group.blocks[k])]
            corr = corr_chol @ np.swapaxes(corr_chol, 1, 2)
            dims = cor_dims(group, k)
            variables[cor_name(group, k)] = (("chain", "draw", *dims),
                                             corr.reshape(*shape, *corr.shape[1:]))
            coords[dims[0]] = coords[dims[1]] = list(group.blocks[k].terms)
    return xr.Dataset(variables, coords=coords)


def sample_partial(model, *, draws: int, tune: int, chains: int, cores: int,
                   seed: int | None, progressbar: bool, init: str, **kwargs):
    """nutpie over theta = (covariance parameters, kept effects) with beta, the largest
    block and the small ones integrated out (``partial_posterior.py``)."""
    _prepare_kernel(progressbar)
    import arviz as az

    from .partial_posterior import PartialPosterior

    partial = model.partial_structure()
    mu0, inv_scale = model.marginal_parts()[0].prior_arrays(model.priors)
    blocks = [partial.first, *partial.integrated, *partial.kept]
    post = PartialPosterior(partial, model.priors, mu0, inv_scale, model.partial_centered(),
                            model.sd_pivots(blocks))
    start = (covariance_start(model, post.covariance, blocks) if init == "reml"
             else prior_start(model, post.covariance))
    if init == "reml":
        reml = model.fit_reml()
        modes = {id(b): e for b, e in zip(reml.blocks, reml.effects, strict=True)}
        effects = [modes[id(b)] for b in partial.kept]
    else:
        effects = [np.zeros((b.n_levels, b.q)) for b in partial.kept]
    start = np.concatenate([start, post.effects_theta(effects, start)])

    def initial_point(chain_rng):
        jitter = chain_rng.uniform(-JITTER, JITTER, start.shape)
        jitter[post.ncov:] *= 0.1
        return start + jitter

    # low-rank mass matrix: the kept effects have a few directions identified only by the
    # prior (their means against the integrated intercept, department means against the
    # dept:service effects); InstEval: min bulk ESS 2818 vs 433 with the diagonal one
    from .nutpie_adapter import low_rank_kwargs

    kwargs = {"target_accept": 0.8, **low_rank_kwargs(), **kwargs}
    theta, stats = sample_flat(post.logp_and_grad, post.ndim, initial_point, draws=draws,
                               tune=tune, chains=chains, cores=cores, seed=seed,
                               progressbar=progressbar, **kwargs)
    posterior = covariance_draws(model, post.covariance, blocks, theta)
    kept = post.effects(theta.reshape(-1, post.ndim))
    model.add_effect_draws(posterior, None, dict(zip(map(id, partial.kept), kept, strict=True)))
    return az.InferenceData(posterior=posterior, sample_stats=stats)
