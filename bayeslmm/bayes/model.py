"""``Model``: formula + data + priors -> a sampler (nutpie or PyMC NUTS) -> ``BayesFit``."""

from __future__ import annotations

import os
import time
import warnings
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ..design import build_spec
from ..reml import RemlFit, fit_reml
from ..residual import ResidualModel, fit_structured, parse_residual
from .builder import (
    build_marginal_model,
    build_partial_model,
    build_pymc_model,
    build_residual_marginal_model,
    cor_name,
    group_factors,
    slope_variables,
)
from .full_nutpie import sample_full
from .marginal import MarginalStructure
from .marginal_posterior import MarginalPosterior
from .nutpie_backend import JITTER, sample_marginal, sample_partial
from .partial import PartialStructure
from .priors import ResolvedPriors, resolve_priors
from .residual_marginal import ResidualMarginal
from .residual_terms import (
    RESIDUAL_BOUNDS,
    check_bayes_residual,
    residual_defaults,
    residual_names,
    residual_start,
)
from .unconstrained import sd_pivots

if TYPE_CHECKING:  # result.py imports ArviZ: on first use, after a cold kernel compile starts
    from .result import BayesFit

__all__ = ["Model"]


class Model:
    """A Bayesian linear mixed model, ready to sample.

    Parameters
    ----------
    formula : str
        lme4/brms-style formula, e.g. ``"Reaction ~ Days + (Days | Subject)"``.
    data : pandas.DataFrame
    priors : dict, optional
        User priors by coefficient, class or factor; see :mod:`bayeslmm.bayes.priors`.
    centered : dict, optional
        ``{"Subject": True}`` samples that factor's effects centered (r ~ N(0, G))
        instead of the default non-centered form (r = L z).
    missing : {"drop", "raise"}
    residual, sigma : str, optional
        An R-side structure (``"ar1(visit | id)"``) and a residual SD per level
        (``"~ f"``), as in :func:`bayeslmm.fit`; sampled by the marginal sampler where
        the structure allows it (``bayes/residual_marginal.py``), else the full one
        (``bayes/residual_terms.py`` lists the variables and default priors).

    Attributes
    ----------
    spec : ModelSpec
    priors : ResolvedPriors
        Every parameter's prior, defaults included; prints as a table.
    """

    def __init__(self, formula: str, data: pd.DataFrame, priors: dict | None = None,
                 centered: dict | None = None, missing: str = "drop",
                 residual: str | None = None, sigma: str | None = None):
        if priors is not None and not isinstance(priors, dict):
            raise TypeError(f"priors must be a dict, got {type(priors).__name__}")
        term = parse_residual(residual, sigma)
        self.residual_term = term
        self.spec = build_spec(formula, data, missing=missing,
                               extra_columns=tuple(term.columns))
        self.user_priors = dict(priors or {})
        used = list(dict.fromkeys([*self.spec.columns, *term.columns]))
        self.data_used = data.iloc[self.spec.row_positions][used]
        self.residual_model: ResidualModel | None = None
        if term.kind != "iid" or term.variance_by:
            self.residual_model = ResidualModel(term, self.data_used.reset_index(drop=True))
            check_bayes_residual(self.residual_model)
        if not self.spec.blocks and self.residual_model is None:
            raise ValueError(f"formula {formula!r} has no random-effects terms (and no "
                             "residual=): fit it with method='reml' (least squares), or give a "
                             "residual structure")
        self.patterned = [b.factor for b in self.spec.blocks if b.structure in ("cs", "ar1")]
        self.groups = group_factors(self.spec)
        factor_terms = {
            g.factor: [(t, col) for t, col in zip(g.terms, g.columns.T, strict=True)]
            for g in self.groups
        }
        correlated = [g.factor for g in self.groups if g.correlated_blocks()]
        self.priors: ResolvedPriors = resolve_priors(
            self.spec, factor_terms, correlated, priors,
            residual=residual_defaults(self.residual_model) if self.residual_model else None)
        self.centered = dict(centered or {})
        unknown = sorted(set(self.centered) - {g.factor for g in self.groups})
        if unknown:
            raise ValueError(f"centered= names unknown grouping factor(s) {unknown}; factors: "
                             f"{[g.factor for g in self.groups]}")
        self._pymc_model = None
        self._built_vars = 0
        self._marginal = None
        self._marginal_model = None
        self._marginal_posterior: MarginalPosterior | None = None
        self._residual_marginal: ResidualMarginal | None = None
        self._partial = None
        self._partial_model = None
        self._reml: RemlFit | None = None

    @property
    def formula(self) -> str:
        return self.spec.formula

    @property
    def residual_public(self) -> list[str]:
        """Posterior variables of the residual structure besides ``sigma``."""
        return residual_names(self.residual_model) if self.residual_model is not None else []

    @property
    def pymc_model(self):
        """The ``pm.Model`` (built on first use; extend it before calling ``fit``)."""
        if self._pymc_model is None:
            self._pymc_model = build_pymc_model(self.spec, self.priors, self.centered,
                                                residual=self.residual_model)
            self._built_vars = len(self._pymc_model.named_vars)
        return self._pymc_model

    # -- choice of sampler ---------------------------------------------------------------
    def residual_marginal(self) -> ResidualMarginal:
        """The residual marginal sampler's arrays (cached; ``reason`` says when it does not
        apply)."""
        if self._residual_marginal is None:
            self._residual_marginal = ResidualMarginal(self.spec, self.residual_model,
                                                       self.priors)
        return self._residual_marginal

    def marginal_parts(self):
        if self._marginal is None:
            structure = MarginalStructure(self.spec)
            arrays = structure.prior_arrays(self.priors) if structure.eligible else None
            self._marginal = (structure, arrays)
        return self._marginal

    def marginal_unavailable(self) -> str | None:
        """Why the marginal sampler cannot be used for this model (None when it can)."""
        if self.residual_model is not None:
            return self.residual_marginal().reason
        if self.patterned:
            return "cs() / ar1() G patterns are sampled by the full sampler (not built yet)"
        structure, arrays = self.marginal_parts()
        if not structure.eligible:
            return ("the random effects of the blocks after the one with the most levels must "
                    f"add up to at most a few hundred (here {structure.rz})")
        if arrays is None:
            return "every fixed-effect prior must be Normal or Flat"
        return None

    def partial_structure(self) -> PartialStructure:
        if self._partial is None:
            self._partial = PartialStructure(self.spec)
        return self._partial

    def partial_unavailable(self) -> str | None:
        """Why the partial sampler cannot be used (None when it can)."""
        if self.residual_model is not None or self.patterned:
            return "residual structures and cs() / ar1() G patterns use the full sampler"
        if self.marginal_parts()[0].prior_arrays(self.priors) is None:
            return "every fixed-effect prior must be Normal or Flat"
        partial = self.partial_structure()
        if not partial.eligible:
            return ("it needs a second random-effect block, on another factor than the one "
                    "with the most levels")
        return None

    def _extended_by_user(self) -> bool:
        return (self._pymc_model is not None
                and len(self._pymc_model.named_vars) != self._built_vars)

    def choose_sampler(self, sampler: str = "auto") -> str:
        """The sampler that ``sampler`` in {"auto", "marginal", "partial", "full"} means here.

        "auto": marginal if the model allows it, else partial (beta and the largest factor
        integrated out, NUTS over the other effects), else full.  With a residual structure:
        marginal where ``ResidualMarginal.preferred`` (random effects of the residual's
        groups, or a small n p (p + m)), else full."""
        if sampler not in ("auto", "marginal", "partial", "full"):
            raise ValueError("sampler must be 'auto', 'marginal', 'partial' or 'full', got "
                             f"{sampler!r}")
        if sampler == "full":
            return "full"
        if sampler in ("marginal", "partial"):
            reason = (self.marginal_unavailable() if sampler == "marginal"
                      else self.partial_unavailable())
            if reason:
                raise ValueError(f"sampler={sampler!r} is not available for this model: "
                                 f"{reason}")
            return sampler
        if self._extended_by_user():
            return "full"
        if self.residual_model is not None:
            return "marginal" if self.residual_marginal().preferred else "full"
        if self.marginal_unavailable() is None:
            return "marginal"
        return "partial" if self.partial_unavailable() is None else "full"

    def partial_centered(self) -> dict[str, bool]:
        """Centered or not, per factor NUTS keeps in the partial sampler: centered where the
        data inform each level well (levels' mean count x REML variance / sigma^2 > 1, for
        the smallest variance of a q x q block),
        unless the user said otherwise in ``centered=``."""
        reml = self.fit_reml()
        out = {}
        for block, cov in zip(reml.blocks, reml.covariances(), strict=True):
            per_level = self.spec.n / block.n_levels
            # every column informative (a q x q block with one tiny SD is a funnel centered)
            informative = per_level * float(np.min(np.diag(cov))) / reml.sigma**2 > 1.0
            out[block.factor] = out.get(block.factor, True) and informative
        out.update(self.centered)
        return out

    @property
    def partial_model(self):
        """The ``pm.Model`` with beta and the largest factor's effects integrated out."""
        if self._partial_model is None:
            reason = self.partial_unavailable()
            if reason:
                raise ValueError(reason)
            arrays = self.marginal_parts()[0].prior_arrays(self.priors)
            self._partial_model = build_partial_model(
                self.spec, self.priors, self.partial_structure(), *arrays,
                centered=self.partial_centered())
        return self._partial_model

    @property
    def marginal_model(self):
        """The ``pm.Model`` of the covariance parameters with b and beta integrated out."""
        if self._marginal_model is None:
            reason = self.marginal_unavailable()
            if self.residual_model is not None and reason is None:
                self._marginal_model = build_residual_marginal_model(
                    self.spec, self.priors, self.residual_model, self.residual_marginal())
                return self._marginal_model
            structure, arrays = self.marginal_parts()
            if arrays is None:
                raise ValueError(reason)
            self._marginal_model = build_marginal_model(self.spec, self.priors, structure,
                                                        *arrays)
        return self._marginal_model

    def fit_reml(self, reml: bool = True) -> RemlFit:
        """REML (or ML) fit of the same model; cached."""
        if self._reml is None or (self._reml.method == "REML") != reml:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                if self.residual_model is not None:
                    self._reml = fit_structured(self.spec, self.residual_model, reml=reml)
                else:
                    self._reml = fit_reml(self.spec, reml=reml)
        return self._reml

    # -- initial values ------------------------------------------------------------------
    def initial_points(self, chains: int, rng: np.random.Generator,
                       centered: dict[str, bool] | None = None) -> list[dict]:
        """Per-chain starting points near the REML solution, jittered (relative size
        ``JITTER``) so chains do not start identical.  ``centered`` (default: the model's)
        says which factors' effects are parametrized centered."""
        centered_of = self.centered if centered is None else centered
        reml = self.fit_reml()
        spec = self.spec
        base: dict[str, np.ndarray] = {}
        names = spec.x_names
        beta = reml.beta
        slopes_idx = [j for j, n in enumerate(names) if n != "Intercept"]
        if "Intercept" in names:  # builder._fixed_part samples it for centered predictors
            center = spec.X[:, slopes_idx].mean(axis=0)
            base["b_Intercept_centered"] = np.asarray(
                beta[names.index("Intercept")] + center @ beta[slopes_idx])
        for name, idx in slope_variables(names, self.priors).items():
            base[name] = beta[idx]
        cov_by_block = dict(zip([id(b) for b in reml.blocks], reml.covariances(), strict=True))
        effects_by_block = dict(zip([id(b) for b in reml.blocks], reml.effects, strict=True))
        base["sigma"] = np.asarray(self.start_sigma())
        if self.residual_model is not None:
            base.update(residual_start(self.residual_model, reml))
        for group in self.groups:
            centered = centered_of.get(group.factor, False)
            for k, block in enumerate(group.blocks):
                suffix = "" if len(group.blocks) == 1 else f"_{k}"
                b = effects_by_block[id(block)]
                sd, corr = self.start_sd_corr(block, cov_by_block[id(block)])
                cov_safe = corr * np.outer(sd, sd)
                chol = np.linalg.cholesky(cov_safe + 1e-10 * np.eye(block.q) * sd.max() ** 2)
                if block.structure in ("cs", "ar1"):
                    off = corr[~np.eye(block.q, dtype=bool)]
                    if block.structure == "cs":
                        base[f"sd_{group.factor}{suffix}_raw"] = sd
                        base[f"rho_{group.factor}{suffix}"] = np.asarray(
                            np.clip(off.mean(), -0.9 / (block.q - 1), 0.9))
                    else:
                        base[f"sd_{group.factor}{suffix}_raw"] = np.asarray([sd.mean()])
                        base[f"phi_{group.factor}{suffix}"] = np.asarray(
                            np.clip(corr[0, 1], -0.9, 0.9))
                elif block.correlated and block.q >= 2:
                    base[f"chol_{group.factor}{suffix}"] = chol[np.tril_indices(block.q)]
                else:
                    base[f"sd_{group.factor}{suffix}_raw"] = sd
                if centered:
                    base[f"r_{group.factor}{suffix}_centered"] = b
                else:
                    base[f"z_{group.factor}{suffix}"] = np.linalg.solve(chol, b.T).T
        points = []
        for _ in range(chains):
            point = {}
            for name, value in base.items():
                value = np.asarray(value, dtype=float)
                if name.startswith(("rho_", "phi_")):  # a G pattern's correlation
                    point[name] = np.clip(value + rng.uniform(-0.02, 0.02, value.shape),
                                          -0.95, 0.95)
                elif name in ("phi", "rho", "pacf"):  # bounded: a small step, kept inside
                    lo, hi = RESIDUAL_BOUNDS[name](self.residual_model)
                    step = rng.uniform(-0.02, 0.02, value.shape)
                    point[name] = np.clip(value + step, lo + 0.02 * (hi - lo),
                                          hi - 0.02 * (hi - lo))
                elif name.startswith(("chol_", "sd_", "sigma")):
                    # multiplicative: SDs stay positive, the Cholesky diagonal too
                    point[name] = value * np.exp(rng.uniform(-JITTER, JITTER, value.shape))
                elif name.startswith(("z_", "r_")):
                    point[name] = value + rng.uniform(-JITTER, JITTER, value.shape) * (
                        1.0 if name.startswith("z_") else np.abs(value).mean() + 1e-12)
                else:
                    se = reml.se.to_numpy()
                    scale = float(np.mean(se)) if se.size else 1.0
                    point[name] = value + rng.uniform(-JITTER, JITTER, value.shape) * scale
            points.append(point)
        return points

    def start_sd_corr(self, block, cov: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """A block's starting SDs and correlation from its REML covariance: SDs floored at
        5% of their prior scale, correlations clipped to +-0.9 and shrunk towards the
        identity until positive definite (every sampler's start)."""
        root = np.sqrt(np.clip(np.diag(cov), 1e-300, None))
        floor = 0.05 * np.array([self._sd_scale(block.factor, t) for t in block.terms])
        corr = np.clip(cov / np.outer(root, root), -0.9, 0.9)
        np.fill_diagonal(corr, 1.0)
        smallest = float(np.linalg.eigvalsh(corr).min()) if len(corr) > 1 else 1.0
        if smallest < 0.05:  # a singular REML G (or the clipping) left it not PD: shrink
            weight = 0.95 / (1.0 - smallest)
            corr = weight * corr + (1.0 - weight) * np.eye(len(corr))
        return np.maximum(np.sqrt(np.clip(np.diag(cov), 0, None)), floor), corr

    def sd_pivots(self, blocks) -> np.ndarray:
        """The pivots of the nutpie samplers' SD coordinates (``unconstrained.sd_pivots``)
        for ``blocks``' SDs in order, from the REML fit: a term's noise scale is
        sigma / sqrt(sum_i z_i^2 / levels)."""
        reml = self.fit_reml()
        cov_of = {id(b): c for b, c in zip(reml.blocks, reml.covariances(), strict=True)}
        reml_sd, noise_sd = [], []
        for block in blocks:
            reml_sd.append(np.sqrt(np.clip(np.diag(cov_of[id(block)]), 0.0, None)))
            information = np.einsum("ij,ij->j", block.columns, block.columns) / block.n_levels
            with np.errstate(divide="ignore"):
                noise_sd.append(reml.sigma / np.sqrt(information))
        return sd_pivots(np.concatenate(reml_sd), np.concatenate(noise_sd))

    def start_sigma(self) -> float:
        """The REML sigma, kept away from zero (every sampler's start)."""
        return max(self.fit_reml().sigma, 1e-8 * (np.std(self.spec.y) + 1))

    def _sd_scale(self, factor: str, term: str) -> float:
        prior = self.priors.sd[factor][term]
        params = prior.params()
        if "sigma" in params:
            return params["sigma"]
        if "beta" in params:
            return params["beta"]
        return 1.0 / params.get("lam", 1.0)

    # -- sampling ------------------------------------------------------------------------
    def fit(self, draws: int = 1000, tune: int = 1000, chains: int = 4, cores: int | None = None,
            random_seed: int | None = None, progressbar: bool = True, init: str = "reml",
            sampler: str = "auto", backend: str = "auto", log_likelihood: bool | None = None,
            **sampler_kwargs) -> BayesFit:
        """Sample the posterior with NUTS (nutpie unless ``backend="pymc"`` or the PyMC model
        was extended; see ``backend``).

        Parameters
        ----------
        draws, tune, chains : int
            Kept draws, tuning steps and chains.
        cores : int, optional
            Parallel chains (default: min(chains, CPU count)).
        random_seed : int, optional
            Same seed, same draws.
        progressbar : bool
        init : {"reml", "auto"}
            ``"reml"``: every chain starts near the REML estimates (jittered);
            ``"auto"``: PyMC's default initialization (full sampler), or SDs and sigma at
            half the response's SD (nutpie).
        sampler : {"auto", "marginal", "partial", "full"}
            ``"marginal"``: NUTS over the covariance parameters only, with b and beta
            integrated out and drawn afterwards from their exact conditional (same
            posterior, far fewer dimensions; see ``bayes/marginal.py``).  ``"partial"``:
            beta and the largest factor's effects integrated out, NUTS over the rest
            (``bayes/partial.py``; for large crossed designs).  ``"full"``: NUTS over every
            effect (``pymc_model``).  ``"auto"``: marginal when the model allows it (Normal or
            flat fixed-effect priors, small blocks after the largest one, ``pymc_model`` not
            extended by the user), else partial, else full.  Residual structures: marginal
            (``bayes/residual_marginal.py``) or full, see ``choose_sampler``.
        backend : {"auto", "nutpie", "pymc"}
            Which NUTS runs: ``"nutpie"`` (Rust NUTS; what ``"auto"`` picks) on a numba log
            density for the marginal and partial samplers, and on ``pymc_model``'s PyTensor
            log density for the full one (a low-rank mass matrix for residual structures;
            ``bayes/full_nutpie.py``), or
            ``"pymc"`` (``pm.sample``).
            A ``pymc_model`` the user extended always runs on ``pm.sample``.
        log_likelihood : bool, optional
            Store pointwise log likelihoods (for ``az.loo``); default when it fits in
            memory (fewer than 50 million values).
        **sampler_kwargs
            Passed to ``pymc.sample`` or ``nutpie.sample`` (e.g. ``target_accept``).

        Returns
        -------
        BayesFit
        """
        if init not in ("reml", "auto"):
            raise ValueError(f"init must be 'reml' or 'auto', got {init!r}")
        if backend not in ("auto", "nutpie", "pymc"):
            raise ValueError(f"backend must be 'auto', 'nutpie' or 'pymc', got {backend!r}")
        for name, value in (("draws", draws), ("tune", tune), ("chains", chains)):
            if not isinstance(value, int | np.integer) or value < (0 if name == "tune" else 1):
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if cores is not None and (not isinstance(cores, int | np.integer) or cores < 1):
            raise ValueError(f"cores must be a positive integer (or None), got {cores!r}")
        started = time.perf_counter()
        rng = np.random.default_rng(random_seed)
        chosen = self.choose_sampler(sampler)
        full_on_nutpie = chosen == "full" and not self._extended_by_user()
        if backend == "nutpie" and not (chosen in ("marginal", "partial") or full_on_nutpie):
            raise ValueError(f"backend='nutpie' runs the marginal and partial samplers and the "
                             f"full one on the model as built; this fit uses the {chosen!r} "
                             "sampler on a PyMC model you extended (pass backend='pymc')")
        cores = cores if cores is not None else min(chains, os.cpu_count() or 1)
        on_nutpie = backend != "pymc" and (chosen in ("marginal", "partial") or full_on_nutpie)
        if on_nutpie and tune < 1:
            raise ValueError("tune must be at least 1 with the nutpie backend (it adapts the "
                             "step size while tuning); pass backend='pymc' for tune=0")
        if chosen == "marginal" and backend == "pymc" and self.residual_model is None and \
                not self.marginal_parts()[0].graph_eligible:
            raise ValueError("the marginal sampler on PyMC's NUTS takes 1 x 1 blocks after the "
                             "largest one only; use backend='nutpie' (the default)")
        if chosen == "marginal" and backend != "pymc" and self.residual_model is not None:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*BLAS.*")
                raw = sample_full(self, draws=draws, tune=tune, chains=chains, cores=cores,
                                  seed=random_seed, progressbar=progressbar, init=init,
                                  rng=rng, pm_model=self.marginal_model, **sampler_kwargs)
            return self._finish(raw, chosen, rng, chains, draws, log_likelihood, started)
        if chosen == "marginal" and backend != "pymc":
            raw = sample_marginal(self, draws=draws, tune=tune, chains=chains, cores=cores,
                                  seed=random_seed, progressbar=progressbar, init=init,
                                  **sampler_kwargs)
            return self._finish(raw, chosen, rng, chains, draws, log_likelihood, started)
        if chosen == "partial" and backend != "pymc":
            raw = sample_partial(self, draws=draws, tune=tune, chains=chains, cores=cores,
                                 seed=random_seed, progressbar=progressbar, init=init,
                                 **sampler_kwargs)
            return self._finish(raw, chosen, rng, chains, draws, log_likelihood, started)
        if full_on_nutpie and backend != "pymc":
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*BLAS.*")
                raw = sample_full(self, draws=draws, tune=tune, chains=chains, cores=cores,
                                  seed=random_seed, progressbar=progressbar, init=init,
                                  rng=rng, **sampler_kwargs)
            return self._finish(raw, chosen, rng, chains, draws, log_likelihood, started)
        import pymc as pm

        model = {"full": lambda: self.pymc_model, "marginal": lambda: self.marginal_model,
                 "partial": lambda: self.partial_model}[chosen]()
        kwargs = dict(draws=draws, tune=tune, chains=chains, random_seed=random_seed,
                      progressbar=progressbar, compute_convergence_checks=False)
        kwargs["cores"] = cores
        kwargs.setdefault("target_accept", 0.9)
        kwargs.update(sampler_kwargs)
        if init == "reml":
            free = {v.name for v in model.free_RVs}
            centered = self.partial_centered() if chosen == "partial" else None
            kwargs["initvals"] = [{k: v for k, v in point.items() if k in free}
                                  for point in self.initial_points(chains, rng, centered)]
            kwargs.setdefault("init", "adapt_diag")
        try:
            with model, warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*BLAS.*")
                idata = pm.sample(**kwargs)
        except (pm.exceptions.SamplingError, FloatingPointError, RuntimeError) as err:
            raise RuntimeError(
                f"sampling failed for {self.formula!r}: {str(err).splitlines()[0]}. "
                "Try init='auto', stronger priors, or target_accept=0.95."
            ) from None
        return self._finish(idata, chosen, rng, chains, draws, log_likelihood, started)

    def _finish(self, idata, chosen: str, rng: np.random.Generator, chains: int, draws: int,
                log_likelihood: bool | None, started: float) -> BayesFit:
        """Add the integrated-out effects' draws and wrap the result in a ``BayesFit``."""
        from .result import BayesFit

        if chosen == "marginal" and self.residual_model is not None:
            self._add_residual_conditional_draws(idata.posterior, rng)
        elif chosen == "marginal":
            self._add_conditional_draws(idata.posterior, rng)
        elif chosen == "partial":
            self._add_partial_draws(idata.posterior, rng)
        if log_likelihood is None:
            log_likelihood = chains * draws * self.spec.n < 50_000_000
        fit = BayesFit.from_sampler(self, idata, log_likelihood=log_likelihood,
                                    elapsed=time.perf_counter() - started)
        fit.sampler = chosen
        fit.warn_diagnostics()
        return fit

    # -- the marginal and partial samplers on nutpie ---------------------------------------
    def marginal_posterior(self) -> MarginalPosterior:
        """The marginal sampler's numba log density over unconstrained theta (cached)."""
        if self._marginal_posterior is None:
            structure, arrays = self.marginal_parts()
            if arrays is None or not structure.eligible:
                raise ValueError(self.marginal_unavailable())
            self._marginal_posterior = MarginalPosterior(structure, self.priors, *arrays,
                                                         self.sd_pivots(structure.blocks))
        return self._marginal_posterior

    def block_covariances(self, posterior) -> dict[int, np.ndarray]:
        """G of every block for every draw, (chain * draw, q, q), keyed by id(block)."""
        out = {}
        for group in self.groups:
            sd_all = posterior[f"sd_{group.factor}"].to_numpy()
            sd_all = sd_all.reshape(-1, sd_all.shape[-1])
            offset = 0
            for k, block in enumerate(group.blocks):
                sd = sd_all[:, offset:offset + block.q]
                offset += block.q
                if block.correlated and block.q >= 2:
                    cor = posterior[cor_name(group, k)].to_numpy()
                    cor = cor.reshape(-1, block.q, block.q)
                else:
                    cor = np.eye(block.q)[None]
                out[id(block)] = cor * sd[:, :, None] * sd[:, None, :]
        return out

    def _add_conditional_draws(self, posterior, rng: np.random.Generator) -> None:
        """Draw beta and b for every posterior draw of (G, sigma) and add ``b`` and
        ``r_<factor>`` to ``posterior`` (same names and dims as the full sampler)."""
        structure, (mu0, inv_scale) = self.marginal_parts()
        covs = self.block_covariances(posterior)
        chol_first = _draw_cholesky(covs[id(structure.blocks[0])])
        sd_rest = [_draw_cholesky(covs[id(b)]) for b in structure.blocks[1:]]  # per draw
        sigma = posterior["sigma"].to_numpy().reshape(-1)
        beta, effects = structure.conditional_draws(chol_first, sd_rest, sigma, mu0, inv_scale,
                                                    rng)
        self.add_effect_draws(posterior, beta, dict(zip(map(id, structure.blocks), effects,
                                                        strict=True)))

    def _add_residual_conditional_draws(self, posterior, rng: np.random.Generator) -> None:
        """The residual marginal sampler's beta and b for every draw of the covariance
        parameters (``ResidualMarginal.conditional_draws``), as ``b`` and ``r_<factor>``."""
        import xarray as xr

        from .residual_terms import occasion_covariances

        marginal = self.residual_marginal()
        chains, draws = posterior.sizes["chain"], posterior.sizes["draw"]
        covs = occasion_covariances(self.residual_model, posterior)
        if self.groups:
            by_block = self.block_covariances(posterior)
            q = marginal.q
            gs = np.zeros((chains * draws, q, q))
            at = 0
            for block in self.groups[0].blocks:
                gs[:, at:at + block.q, at:at + block.q] = by_block[id(block)]
                at += block.q
        else:
            gs = np.zeros((chains * draws, 0, 0))
        beta, r = marginal.conditional_draws(covs, gs, rng)
        self.add_effect_draws(posterior, beta, {})
        coords = {"chain": posterior.chain, "draw": posterior.draw}
        for group in self.groups:
            posterior[f"r_{group.factor}"] = xr.DataArray(
                r.reshape(chains, draws, *r.shape[1:]),
                dims=("chain", "draw", group.level_dim, group.term_dim),
                coords={**coords, group.level_dim: group.levels, group.term_dim: group.terms})

    def _repr_html_(self) -> str:
        lines = repr(self).split("\n  priors:")[0].splitlines()
        return ("<p>" + "<br>".join(lines) + f"<br>sampler: {self.choose_sampler()}</p>"
                + self.priors._repr_html_())

    def _add_partial_draws(self, posterior, rng: np.random.Generator) -> None:
        """Draw beta, the largest factor's effects and the other integrated ones given each
        draw of the kept effects."""
        partial = self.partial_structure()
        single = partial.single
        mu0, inv_scale = self.marginal_parts()[0].prior_arrays(self.priors)
        chains, draws = posterior.sizes["chain"], posterior.sizes["draw"]
        covs = self.block_covariances(posterior)
        chol_first = _draw_cholesky(covs[id(partial.first)])
        chol_integrated = [_draw_cholesky(covs[id(b)]) for b in partial.integrated]
        sigma = posterior["sigma"].to_numpy().reshape(-1)
        kept = np.concatenate([self._block_draws(posterior, b).reshape(chains * draws, -1)
                               for b in partial.kept], axis=1)

        def statistics(sl):  # the statistics of y minus the kept effects, per draw
            return partial.kept_statistics.adjusted(single, kept[sl])

        beta, effects = single.conditional_draws(
            chol_first, chol_integrated, sigma, mu0, inv_scale, rng, statistics)
        self.add_effect_draws(posterior, beta, dict(zip(map(id, single.blocks), effects,
                                                        strict=True)))

    def add_effect_draws(self, posterior, beta: np.ndarray | None, by_block: dict) -> None:
        """Add ``b`` (from ``beta``, (chains * draws, p), unless None or p = 0) and
        ``r_<factor>`` (chain, draw, levels, terms) to ``posterior``, the latter for every
        factor whose blocks all have draws in ``by_block`` (id(block) -> (chains * draws,
        m, q)), a factor's blocks side by side as its terms."""
        import xarray as xr

        chains, draws = posterior.sizes["chain"], posterior.sizes["draw"]
        coords = {"chain": posterior.chain, "draw": posterior.draw}
        if beta is not None and self.spec.p:
            posterior["b"] = xr.DataArray(beta.reshape(chains, draws, -1),
                                          dims=("chain", "draw", "coef"),
                                          coords={**coords, "coef": self.spec.x_names})
        for group in self.groups:
            if not all(id(b) in by_block for b in group.blocks):
                continue
            values = np.concatenate([by_block[id(b)] for b in group.blocks], axis=2)
            posterior[f"r_{group.factor}"] = xr.DataArray(
                values.reshape(chains, draws, *values.shape[1:]),
                dims=("chain", "draw", group.level_dim, group.term_dim),
                coords={**coords, group.level_dim: group.levels, group.term_dim: group.terms})

    def _block_draws(self, posterior, block) -> np.ndarray:
        """One block's effects (chain, draw, levels, q) out of its factor's ``r_<factor>``
        (whose terms are the factor's blocks' columns in ``group.blocks`` order)."""
        group = next(g for g in self.groups if any(b is block for b in g.blocks))
        offset = 0
        for b in group.blocks:
            if b is block:
                break
            offset += b.q
        return posterior[f"r_{group.factor}"].to_numpy()[..., offset:offset + block.q]

    def __repr__(self) -> str:
        groups = ", ".join(f"{g.factor} ({len(g.levels)} levels: {', '.join(g.terms)})"
                           for g in self.groups)
        dropped = f", {self.spec.n_dropped} dropped" if self.spec.n_dropped else ""
        return (f"bayeslmm.Model: {self.formula}\n  rows: {self.spec.n}{dropped}\n"
                f"  fixed: {', '.join(self.spec.x_names)}\n  groups: {groups}\n"
                f"  priors:\n" + "\n".join("    " + line for line in str(self.priors)
                                           .splitlines()))


def _draw_cholesky(covs: np.ndarray) -> np.ndarray:
    """Cholesky factors of a stack of covariance draws (D, q, q), with a relative jitter of
    1e-12 of the trace so a draw with an SD underflowed to zero still factors."""
    jitter = 1e-12 * np.trace(covs, axis1=1, axis2=2)[:, None, None]
    return np.linalg.cholesky(covs + jitter * np.eye(covs.shape[-1]))
