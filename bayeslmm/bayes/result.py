"""``BayesFit``: the posterior in ArviZ form, summaries, REML comparison, predictions."""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

import arviz as az
import numpy as np
import pandas as pd
import xarray as xr

from ..newdata import new_data_design, new_data_offset
from ..spec import sparse_design
from .builder import cor_dims, cor_name, public_names
from .diagnostics import rhat_and_ess

if TYPE_CHECKING:  # pragma: no cover
    from ..reml import RemlFit
    from .model import Model

__all__ = ["BayesFit", "compare"]

RHAT_MAX = 1.01
ESS_MIN = 400


class BayesFit:
    """Result of a Bayesian fit.

    Attributes
    ----------
    idata : arviz.InferenceData
        ``posterior`` (public variables only: ``b``, ``sd_<f>``, ``cor_<f>``, ``r_<f>``,
        ``sigma``), ``sample_stats``, ``observed_data`` and, by default,
        ``log_likelihood`` (so ``az.loo(fit.idata)`` works).
    model : Model
        The model that was sampled.
    elapsed : float
        Wall time of the whole ``fit()`` call, in seconds.
    """

    def __init__(self, model: Model, idata: az.InferenceData, elapsed: float):
        self.model = model
        self.idata = idata
        self.elapsed = elapsed
        self.sampler = "full"  # or "marginal"/"partial": which sampler produced the draws
        self._diagnostics: dict | None = None

    @classmethod
    def from_sampler(cls, model: Model, raw: az.InferenceData, log_likelihood: bool,
                     elapsed: float) -> BayesFit:
        names = public_names(model.spec, model.residual_public)
        posterior = raw.posterior[names]
        observed = xr.Dataset({"y": (("obs",), model.spec.response_values)},
                              coords={"obs": np.arange(model.spec.n)})
        groups = {"posterior": posterior, "sample_stats": raw.sample_stats,
                  "observed_data": observed}
        idata = az.InferenceData(**groups)
        fit = cls(model, idata, elapsed)
        if log_likelihood and model.residual_model is not None:
            idata.add_groups({"log_likelihood": fit._structured_loglik()})
        elif log_likelihood:
            mu = fit._mu_draws()
            sigma = posterior["sigma"].to_numpy()[..., None]
            resid = (model.spec.response_values - mu) / sigma
            loglik = -0.5 * resid**2 - np.log(sigma) - 0.5 * np.log(2 * np.pi)
            ds = xr.Dataset({"y": (("chain", "draw", "obs"), loglik)},
                            coords={"chain": posterior.chain, "draw": posterior.draw,
                                    "obs": np.arange(model.spec.n)})
            idata.add_groups({"log_likelihood": ds})
        return fit

    # -- access --------------------------------------------------------------------------
    @property
    def posterior(self) -> xr.Dataset:
        """The posterior draws (xarray, named dims and coords)."""
        return self.idata.posterior

    @property
    def spec(self):
        return self.model.spec

    @property
    def n_divergent(self) -> int:
        return int(self.idata.sample_stats["diverging"].sum())

    def _draws(self, name: str) -> np.ndarray:
        return self.posterior[name].to_numpy()

    def _mu_draws(self, X=None, random=None) -> np.ndarray:
        """mu for every draw: (chain, draw, rows).  ``random``: list of (factor, codes,
        columns) or None for the fitted rows."""
        spec = self.spec
        fitted_rows = X is None
        X = spec.X if X is None else X
        if spec.p:  # one BLAS product (einsum without optimize loops in C: ~30x slower)
            beta = self._draws("b")
            mu = (beta.reshape(-1, beta.shape[-1]) @ np.asarray(X, dtype=float).T
                  ).reshape(*beta.shape[:2], -1)
        else:
            mu = 0.0
        if fitted_rows and spec.offset is not None:
            mu = mu + spec.offset
        if random is None:
            random = [(g.factor, g.codes, g.columns) for g in self.model.groups]
        for factor, codes, columns in random:
            mu = mu + _random_part(self._draws(f"r_{factor}"), codes, columns)
        return mu

    # -- summaries -----------------------------------------------------------------------
    def summary(self, include_random: bool = False, hdi_prob: float = 0.95) -> pd.DataFrame:
        """Posterior mean, sd, HDI, MCSE, R-hat and bulk/tail ESS per parameter."""
        names = [n for n in public_names(self.spec, self.model.residual_public)
                 if include_random or not n.startswith("r_")]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            table = az.summary(self.idata, var_names=names, hdi_prob=hdi_prob)
        return table.loc[[_is_free_entry(label, self.model.groups) for label in table.index]]

    def diagnostics(self) -> dict:
        """Divergences, worst R-hat and smallest bulk and tail ESS over every parameter,
        random effects included: ArviZ's rank-normalized R-hat and bulk/tail ESS, computed
        once, for all parameters together (``diagnostics.py``; ~5 s for InstEval's 4,138)."""
        if self._diagnostics is None:
            posterior = self.posterior[public_names(self.spec, self.model.residual_public)]
            chains, draws = posterior.sizes["chain"], posterior.sizes["draw"]
            draws_by_parameter = np.concatenate(
                [v.transpose("chain", "draw", ...).to_numpy().reshape(chains, draws, -1)
                 for v in posterior.data_vars.values()], axis=2)
            rhat, bulk, tail = rhat_and_ess(draws_by_parameter)
            self._diagnostics = {  # unrounded, unlike az.summary's table
                "divergences": self.n_divergent, "max_rhat": _extreme(rhat, np.nanmax),
                "min_ess_bulk": _extreme(bulk, np.nanmin),
                "min_ess_tail": _extreme(tail, np.nanmin)}
        return dict(self._diagnostics)

    def warn_diagnostics(self) -> None:
        """Warn about divergences, R-hat > 1.01 and bulk ESS < 400, with what to try."""
        diag = self.diagnostics()
        level = _outside_package_stacklevel()
        if diag["divergences"]:
            warnings.warn(
                f"{diag['divergences']} divergent transitions after tuning: increase "
                "target_accept (e.g. 0.95 or 0.99), or try centered={factor: True} for "
                "factors with many observations per level", UserWarning, stacklevel=level)
        if self.posterior.sizes["chain"] < 2:
            warnings.warn("one chain: R-hat cannot be computed (NaN) and non-convergence "
                          "goes unnoticed; run chains=4", UserWarning, stacklevel=level)
        elif diag["max_rhat"] > RHAT_MAX:
            warnings.warn(f"R-hat up to {diag['max_rhat']:.3f} (> {RHAT_MAX}): chains have not "
                          "mixed; draw more (tune= and draws=) or check the model",
                          UserWarning, stacklevel=level)
        if diag["min_ess_bulk"] < ESS_MIN:
            warnings.warn(f"bulk ESS as low as {diag['min_ess_bulk']:.0f} (< {ESS_MIN}): "
                          "estimates of means and intervals are noisy; draw more",
                          UserWarning, stacklevel=level)

    def compare_reml(self, reml: RemlFit | None = None, prob: float = 0.95,
                     reml_interval: str | None = "auto") -> pd.DataFrame:
        """REML estimate beside the posterior mean, sd and central interval of every fixed
        effect, SD, correlation and sigma; ``outside`` flags REML values outside it; then the
        REML fit's own interval at the same level (``reml_interval``: "profile", lme4's
        likelihood-ratio intervals; "wald", NaN for variances; "auto": profile for up to 8
        variance parameters, else Wald; None: none)."""
        return compare(self, reml, prob, reml_interval)

    # -- predictions ---------------------------------------------------------------------
    def posterior_predictive(self, random_seed: int | None = None) -> az.InferenceData:
        """Add a ``posterior_predictive`` group (replicated y for every draw) to ``idata``
        so ``az.plot_ppc(fit.idata)`` works; returns ``idata``."""
        rng = np.random.default_rng(random_seed)
        mu = self._mu_draws()
        if self.model.residual_model is not None:
            y_rep = mu + self._structured_noise(rng)
        else:
            sigma = self._draws("sigma")[..., None]
            y_rep = mu + sigma * rng.standard_normal(mu.shape)
        post = self.posterior
        ds = xr.Dataset({"y": (("chain", "draw", "obs"), y_rep)},
                        coords={"chain": post.chain, "draw": post.draw,
                                "obs": np.arange(self.spec.n)})
        if "posterior_predictive" in self.idata.groups():
            del self.idata.posterior_predictive
        self.idata.add_groups({"posterior_predictive": ds})
        return self.idata

    def predict(self, newdata: pd.DataFrame, kind: str = "mean", include_random: bool = True,
                new_levels: str = "sample", random_seed: int | None = None) -> xr.DataArray:
        """Posterior draws for new rows.

        Parameters
        ----------
        newdata : DataFrame
            Columns used by the formula (the response is not needed).
        kind : {"mean", "response"}
            ``"mean"``: draws of X b + Z r; ``"response"``: plus residual noise.
        include_random : bool
            Include the random effects (False: population-level prediction).
        new_levels : {"sample", "zero", "error"}
            Levels not seen in fitting: draw their effects from the fitted G (brms's
            ``sample_new_levels = "gaussian"``), set them to zero, or raise.
        random_seed : int, optional

        Returns
        -------
        xarray.DataArray
            dims (chain, draw, row); ``row`` holds ``newdata``'s index.
        """
        if kind not in ("mean", "response"):
            raise ValueError(f"kind must be 'mean' or 'response', got {kind!r}")
        if kind == "response" and self.model.residual_model is not None:
            raise NotImplementedError(
                "kind='response' for new rows of a model with a residual structure is not "
                "built yet (their correlated noise needs their groups and occasions); use "
                "kind='mean', or posterior_predictive() for the fitted rows")
        if new_levels not in ("sample", "zero", "error"):
            raise ValueError(f"new_levels must be 'sample', 'zero' or 'error', got {new_levels!r}")
        rng = np.random.default_rng(random_seed)
        X, blocks = new_data_design(self.spec, newdata, include_random)
        mu = np.einsum("cdp,np->cdn", self._draws("b"), X) if self.spec.p else 0.0
        mu = mu + np.zeros(self._draws("sigma").shape + (len(newdata),))
        mu = mu + new_data_offset(self.spec, newdata)
        for group in self.model.groups if include_random else []:
            codes, columns, labels = blocks[group.factor]
            known = codes >= 0
            if not known.all() and new_levels == "error":
                unseen = sorted(map(str, set(labels[~known])))[:5]
                raise ValueError(f"newdata has levels of {group.factor!r} not seen in fitting: "
                                 f"{unseen}; use new_levels='sample' or 'zero'")
            r = self._draws(f"r_{group.factor}")  # (c, d, m, q)
            part = np.zeros_like(mu)
            part[..., known] = np.einsum("cdnq,nq->cdn", r[:, :, codes[known], :],
                                         columns[known])
            if (~known).any() and new_levels == "sample":
                draws = self._new_level_effects(group, labels[~known], rng)  # (c,d,n_new,q)
                part[..., ~known] = np.einsum("cdnq,nq->cdn", draws, columns[~known])
            mu = mu + part
        if kind == "response":
            mu = mu + self._draws("sigma")[..., None] * rng.standard_normal(mu.shape)
        post = self.posterior
        return xr.DataArray(mu, dims=("chain", "draw", "row"),
                            coords={"chain": post.chain, "draw": post.draw,
                                    "row": np.asarray(newdata.index)}, name=kind)

    def _new_level_effects(self, group, labels: np.ndarray, rng) -> np.ndarray:
        """Effects of unseen levels drawn from N(0, G) of each draw (one per new label)."""
        chains, draws = self.posterior.sizes["chain"], self.posterior.sizes["draw"]
        q = len(group.terms)
        block_covs = self.model.block_covariances(self.posterior)  # (c * d, q_k, q_k)
        cov = np.zeros((chains * draws, q, q))  # block diagonal over the factor's blocks
        offset = 0
        for block in group.blocks:
            sl = slice(offset, offset + block.q)
            cov[:, sl, sl] = block_covs[id(block)]
            offset += block.q
        cov = cov.reshape(chains, draws, q, q)
        chol = np.linalg.cholesky(cov + 1e-12 * np.eye(q))
        unique, inverse = np.unique(labels, return_inverse=True)
        z = rng.standard_normal((chains, draws, len(unique), q))
        effects = np.einsum("cdij,cdnj->cdni", chol, z)
        return effects[:, :, inverse, :]

    # -- evidence -------------------------------------------------------------------------
    def log_marginal_likelihood(self, n_proposal: int = 20_000,
                                random_seed: int | None = 0) -> tuple[float, float]:
        """``(log p(y), mcse)``: beta and b integrated analytically, the covariance
        parameters by importance sampling from a Student t fitted to the draws
        (``bayes/evidence.py``).  Needs the marginal sampler and Normal fixed-effect priors;
        the value depends on the priors (see docs/inference.md)."""
        from .evidence import log_marginal_likelihood

        return log_marginal_likelihood(self, n_proposal=n_proposal, random_seed=random_seed)

    # -- the residual structure ------------------------------------------------------------
    def _residual_params(self):
        """Per draw (chain * draw) the REML engine's residual parameters and sigma."""
        from .residual_terms import unconstrained

        post = self.posterior
        draws = {name: post[name].to_numpy().reshape(
            post.sizes["chain"] * post.sizes["draw"], *post[name].shape[2:])
            for name in ("sigma", *self.model.residual_public) if name in post}
        return unconstrained(self.model.residual_model, draws)

    def _structured_loglik(self) -> xr.Dataset:
        """Log likelihood per residual group (one multivariate normal each; leave-one-group-
        out is what ``az.loo`` then estimates), dims (chain, draw, group)."""
        residual = self.model.residual_model
        post = self.posterior
        chains, draws = post.sizes["chain"], post.sizes["draw"]
        raw = self.spec.response_values[None, :] - self._mu_draws().reshape(chains * draws, -1)
        n_groups = len(residual.group_labels)
        covs = self._occasion_covariances()
        if covs is not None:   # the likelihood Op's structures: the numba kernel, all draws
            from ..residual.loglik_kernel import KernelLayout, occasion_group_logp

            lay = KernelLayout.of(residual)
            out = occasion_group_logp(np.ascontiguousarray(raw), covs, lay.rows,
                                      lay.group_start, lay.group_pattern, lay.pattern_pos,
                                      lay.pattern_start, lay.max_size)
            by_code = np.empty_like(out)   # the layout orders groups by batch and pattern
            by_code[:, residual.group_codes[lay.rows[lay.group_start[:-1]]]] = out
            return self._group_dataset(by_code, chains, draws)
        rho, sigma = self._residual_params()
        out = np.empty((chains * draws, n_groups))
        for d in range(chains * draws):
            inverses, row_sd, _ = whitener = residual.whitener(rho[d])
            z = residual.whiten([raw[d]], whitener)[0] / sigma[d]
            per_row = -0.5 * z**2 - np.log(sigma[d] * row_sd) - 0.5 * np.log(2 * np.pi)
            # whitening by L^-1 keeps log|V_i| as sum of log diag(L): add it per group
            per_row += _log_unit_diagonal(residual, inverses)
            out[d] = np.bincount(residual.group_codes, weights=per_row, minlength=n_groups)
        return self._group_dataset(out, chains, draws)

    def _group_dataset(self, out: np.ndarray, chains: int, draws: int) -> xr.Dataset:
        post = self.posterior
        return xr.Dataset({"y": (("chain", "draw", "group"), out.reshape(chains, draws, -1))},
                          coords={"chain": post.chain, "draw": post.draw,
                                  "group": list(self.model.residual_model.group_labels)})

    def _occasion_covariances(self) -> np.ndarray | None:
        """(draws, T, T) sigma^2 D C D over the occasions (``occasion_covariances``), where
        the model's likelihood is the occasion Op's; else None."""
        from .residual_terms import occasion_covariances

        return occasion_covariances(self.model.residual_model, self.posterior)

    def _structured_noise(self, rng: np.random.Generator) -> np.ndarray:
        """Residual draws e ~ N(0, sigma^2 V) per posterior draw, (chain, draw, n)."""
        residual = self.model.residual_model
        post = self.posterior
        chains, draws = post.sizes["chain"], post.sizes["draw"]
        rho, sigma = self._residual_params()
        out = np.empty((chains * draws, self.spec.n))
        for d in range(chains * draws):
            inverses, row_sd, _ = residual.whitener(rho[d])
            z = rng.standard_normal(self.spec.n)
            e = z.copy()
            for batch, inv in zip(residual.batches, inverses, strict=True):
                chol = np.linalg.inv(inv)  # L of the correlation at each pattern
                e[batch.rows] = np.einsum("gij,gj->gi", chol[batch.pattern], z[batch.rows])
            out[d] = sigma[d] * row_sd * e
        return out.reshape(chains, draws, -1)

    def residual_cov(self) -> pd.DataFrame:
        """Posterior mean of the occasion x occasion residual covariance (sigma^2 included),
        as ``RemlFit.residual_cov()``."""
        residual = self.model.residual_model
        if residual is None:
            s2 = float(np.mean(self._draws("sigma") ** 2))
            return pd.DataFrame([[s2]], index=["(all)"], columns=["(all)"])
        rho, sigma = self._residual_params()
        total = None
        for d in range(len(sigma)):
            cov = residual.covariance(rho[d], sigma[d])
            total = cov if total is None else total + cov
        return total / len(sigma)

    def to_netcdf(self, path: str) -> str:
        """Save the fit (posterior, diagnostics and the data and formula needed to rebuild
        the model) to a netCDF file; read it back with ``bayeslmm.load(path)``."""
        from ..io import save

        return save(self, path)

    # -- printing ------------------------------------------------------------------------
    def __repr__(self) -> str:
        post = self.posterior
        diag = self.diagnostics()
        table = self.summary()[["mean", "sd", "hdi_2.5%", "hdi_97.5%", "r_hat", "ess_bulk"]]
        return (f"BayesFit: {self.spec.formula}\n  {self.spec.n} rows, {post.sizes['chain']} "
                f"chains x {post.sizes['draw']} draws, {self.sampler} sampler, "
                f"{self.elapsed:.1f} s\n"
                f"  divergences {diag['divergences']}, max R-hat {diag['max_rhat']:.3f}, "
                f"min bulk ESS {diag['min_ess_bulk']:.0f}\n\n{table.to_string()}")

    def _repr_html_(self) -> str:
        diag = self.diagnostics()
        head = (f"<p><b>BayesFit</b> <code>{self.spec.formula}</code>: {self.spec.n} rows, "
                f"{self.elapsed:.1f} s; divergences {diag['divergences']}, max R-hat "
                f"{diag['max_rhat']:.3f}, min bulk ESS {diag['min_ess_bulk']:.0f}</p>")
        return head + self.summary().to_html()


def _log_unit_diagonal(residual, inverses) -> np.ndarray:
    """Per row -log L_jj of its group's correlation factor (diag of L^-1 is 1 / L_jj), so
    that the per-row terms sum to a group's log density."""
    out = np.zeros(residual.n)
    for batch, inv in zip(residual.batches, inverses, strict=True):
        diag = np.diagonal(inv, axis1=1, axis2=2)[batch.pattern]   # 1 / L_jj
        out[batch.rows] = np.log(diag)
    return out


def _is_free_entry(label: str, groups) -> bool:
    """False for a correlation matrix's diagonal and upper triangle (constant or repeated)."""
    if not label.startswith("cor_") or "[" not in label:
        return True
    name, inner = label[:-1].split("[", 1)
    first, second = (part.strip() for part in inner.split(", ", 1))
    for group in groups:
        for k in group.correlated_blocks():
            if cor_name(group, k) == name:
                terms = group.blocks[k].terms
                return terms.index(first) < terms.index(second)
    return True


def compare(bayes: BayesFit, reml: RemlFit | None = None, prob: float = 0.95,
            reml_interval: str | None = "auto") -> pd.DataFrame:
    """Side-by-side REML estimates and posterior summaries (see ``BayesFit.compare_reml``)."""
    if reml is None:
        reml = bayes.model.fit_reml()
    lo_q, hi_q = (1 - prob) / 2, 1 - (1 - prob) / 2
    post = bayes.posterior
    rows = []

    def add(param: str, kind: str, reml_value: float, draws: np.ndarray):
        draws = draws.reshape(-1)
        lo, hi = np.quantile(draws, [lo_q, hi_q])
        rows.append((param, kind, reml_value, draws.mean(), draws.std(ddof=1), lo, hi,
                     not (lo <= reml_value <= hi)))

    for name, value in reml.fixef.items():
        add(f"b[{name}]", "fixed", value, post["b"].sel(coef=name).to_numpy())
    vc = reml.varcorr
    for group in bayes.model.groups:
        sd = post[f"sd_{group.factor}"]
        for term in group.terms:
            row = vc[(vc.group == group.factor) & (vc.var1 == term) & vc.var2.isna()]
            add(f"sd_{group.factor}[{term}]", "sd", float(row.sdcor.iloc[0]),
                sd.sel({group.term_dim: term}).to_numpy())
        for k in group.correlated_blocks():
            terms = group.blocks[k].terms
            cor = post[cor_name(group, k)]
            d1, d2 = cor_dims(group, k)
            for a in range(len(terms)):
                for b in range(a + 1, len(terms)):
                    row = vc[(vc.group == group.factor) & (vc.var1 == terms[a])
                             & (vc.var2 == terms[b])]
                    add(f"{cor_name(group, k)}[{terms[a]}, {terms[b]}]", "cor",
                        float(row.sdcor.iloc[0]),
                        cor.sel({d1: terms[a], d2: terms[b]}).to_numpy())
    if bayes.model.residual_model is None:
        add("sigma", "sigma", reml.sigma, post["sigma"].to_numpy())
    else:
        from .residual_terms import parameter_draws

        draws = parameter_draws(bayes.model.residual_model, post)
        for name, value in reml.residual_structure["estimate"].items():
            if name in draws:
                add(name, "residual", float(value), draws[name])
    pct = f"{100 * prob:g}%"
    table = pd.DataFrame(rows, columns=["parameter", "class", "reml", "mean", "sd",
                                        f"lower {pct}", f"upper {pct}", "outside"]
                         ).set_index("parameter")
    interval = _reml_intervals(reml, prob, reml_interval)
    if interval is not None:
        table[f"reml lower {pct}"] = interval["lower"].reindex(table.index)
        table[f"reml upper {pct}"] = interval["upper"].reindex(table.index)
    return table


PROFILE_MAX_PARAMETERS = 8   # "auto": profile intervals up to this many variance parameters


def _reml_intervals(reml, prob: float, how: str | None):
    """The REML fit's intervals for compare_reml: profile (lme4's) where cheap, else Wald."""
    if how is None:
        return None
    if how not in ("auto", "profile", "wald"):
        raise ValueError(f"reml_interval must be 'auto', 'profile', 'wald' or None, got {how!r}")
    n_variance = reml.theta.size + 1
    method = how
    if how == "auto":
        method = "profile" if (n_variance <= PROFILE_MAX_PARAMETERS and reml.residual_model
                               is None and reml.spec.n <= 20_000) else "wald"
    try:
        return reml.confint(method, level=prob)
    except (NotImplementedError, ValueError, np.linalg.LinAlgError):
        return reml.confint("wald", level=prob)


def _outside_package_stacklevel() -> int:
    """``stacklevel`` for a warning issued by this function's caller that points at the first
    frame outside bayeslmm (the user's ``fit`` call, however deep the package's frames)."""
    import inspect
    from pathlib import Path

    package = str(Path(__file__).resolve().parent.parent)
    frame = inspect.currentframe().f_back  # the caller: stacklevel 1
    level = 1
    while frame is not None and str(Path(frame.f_code.co_filename).resolve()).startswith(
            package):
        frame = frame.f_back
        level += 1
    return level


def _extreme(values: np.ndarray, reduce) -> float:
    """``reduce`` (np.nanmax or np.nanmin) over the finite values; NaN if none (constant
    entries such as a correlation's diagonal have no R-hat)."""
    values = values[np.isfinite(values)]
    return float(reduce(values)) if values.size else float("nan")


def _random_part(effects: np.ndarray, codes: np.ndarray, columns: np.ndarray) -> np.ndarray:
    """Z b for every draw, (chain, draw, rows), from effects (chain, draw, levels, q): one
    sparse product (Z: rows x levels q, the rows' columns at their level's place), not the
    (chain, draw, rows, q) gather (kb07: 230 MB and 0.25 s per factor)."""
    chains, draws, levels, q = effects.shape
    z = sparse_design(codes, columns, levels)
    flat = effects.reshape(chains * draws, levels * q)
    return np.asarray(z @ flat.T).T.reshape(chains, draws, len(codes))
