"""Build the PyMC model of a ModelSpec (the "full" sampler: NUTS over every effect).

    y ~ Normal(mu, sigma),  mu = X b + sum_f (Z_f r_f),
    r_f[level] ~ MvNormal(0, G_f),  G_f = diag(sd_f) Cor_f diag(sd_f)

Per grouping factor f: a correlated block with q >= 2 terms gets ``pm.LKJCholeskyCov``
(LKJ prior on the correlation, the per-term SD priors as ``sd_dist``); 1 x 1 blocks and
the blocks of ``||`` get independent SD priors.  Random effects are non-centered by default
(z ~ N(0, 1), r = z L'), centered on request.  The intercept is sampled for centered
predictor columns (``b_Intercept_centered``), which decorrelates it from the slopes, and
``b`` is recovered as a Deterministic.

Posterior layout (public names): ``b`` (dim ``coef``), ``sd_<f>`` (``<f>_term``),
``cor_<f>`` (``<f>_term``, ``<f>_term_2``), ``r_<f>`` (``<f>``, ``<f>_term``), ``sigma``.
Z is never dense: each factor keeps its level codes and its n x q columns.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..spec import ModelSpec, RandomBlock
from .priors import Prior, ResolvedPriors

__all__ = ["FactorTerms", "group_factors", "build_pymc_model", "build_marginal_model",
           "build_partial_model", "build_residual_marginal_model", "public_names"]


RESERVED_NAMES = {"b", "sigma", "coef", "obs", "chain", "draw", "y", "row"}


@dataclass
class FactorTerms:
    """All random-effect blocks of one grouping factor, side by side."""

    factor: str
    levels: list[str]
    codes: np.ndarray
    blocks: list[RandomBlock]

    @property
    def terms(self) -> list[str]:
        return [t for b in self.blocks for t in b.terms]

    @property
    def columns(self) -> np.ndarray:
        return np.column_stack([b.columns for b in self.blocks])

    @property
    def term_dim(self) -> str:
        return f"{self.factor}_term"

    @property
    def level_dim(self) -> str:
        """The dim of the factor's levels: its own name, unless that is taken by a posterior
        variable or a standard dim (a factor called "b" or "sigma")."""
        return f"{self.factor}_level" if self.factor in RESERVED_NAMES else self.factor

    def correlated_blocks(self) -> list[int]:
        return [k for k, b in enumerate(self.blocks) if b.correlated and b.q >= 2]


def group_factors(spec: ModelSpec) -> list[FactorTerms]:
    """Group blocks by grouping factor, in formula order."""
    out: dict[str, FactorTerms] = {}
    for block in spec.blocks:
        if block.factor in out:
            group = out[block.factor]
            clash = set(group.terms) & set(block.terms)
            if clash:
                raise ValueError(f"grouping factor {block.factor!r} has the term(s) "
                                 f"{sorted(clash)} in more than one random-effects term")
            group.blocks.append(block)
        else:
            out[block.factor] = FactorTerms(block.factor, block.levels, block.codes, [block])
    return list(out.values())


def cor_dims(group: FactorTerms, k: int) -> tuple[str, str]:
    """Dims of block k's correlation matrix (the factor's term dim when it covers all)."""
    block = group.blocks[k]
    if block.terms == group.terms:
        return group.term_dim, f"{group.term_dim}_2"
    base = f"{group.term_dim}_{k}"
    return base, f"{base}_2"


def cor_name(group: FactorTerms, k: int) -> str:
    first = group.correlated_blocks()[0]
    return f"cor_{group.factor}" if k == first else f"cor_{group.factor}_{k}"


def public_names(spec: ModelSpec, residual: list[str] | tuple = ()) -> list[str]:
    """Posterior variables users see, in display order (``residual``: the residual
    structure's variables, after ``sigma``)."""
    names = ["b"] if spec.p else []
    groups = group_factors(spec)
    names += [f"sd_{g.factor}" for g in groups]
    names += [cor_name(g, k) for g in groups for k in g.correlated_blocks()]
    names += ["sigma", *residual]
    names += [f"r_{g.factor}" for g in groups]
    return names


def _named(prior: Prior, name: str, params: dict, shape: int):
    import pymc as pm

    return getattr(pm, prior.pymc_name)(name, **params, shape=shape)


def _sd_dist(priors: list[Prior], q: int):
    import pymc as pm

    families = {type(p) for p in priors}
    if len(families) > 1:
        raise ValueError("the SD priors of one correlated block must be of one family")
    prior = priors[0]
    params = {k: np.array([p.params()[k] for p in priors]) for k in prior.params()}
    return getattr(pm, prior.pymc_name).dist(**params, shape=q)


def build_pymc_model(spec: ModelSpec, priors: ResolvedPriors,
                     centered: dict[str, bool] | None = None, residual=None):
    """The PyMC model (see the module docstring for its parametrization and names); with
    ``residual`` (a ``ResidualModel``) the likelihood is ``residual_terms``'s."""
    import pymc as pm
    import pytensor.tensor as pt

    centered = dict(centered or {})
    groups = group_factors(spec)
    coords = model_coords(spec, groups)
    if residual is not None:
        from .residual_terms import add_residual_likelihood, residual_coords

        coords.update(residual_coords(residual))
    with pm.Model(coords=coords) as model:
        mu = _fixed_part(spec, priors)
        for group in groups:
            mu = mu + _factor_part(group, priors, centered.get(group.factor, False), pt)
        if residual is not None:
            add_residual_likelihood(spec.y - mu, residual, priors.residual, priors.sigma)
            return model
        sigma = priors.sigma.pymc("sigma")
        pm.Normal("y", mu=mu, sigma=sigma, observed=spec.y, dims="obs")
    return model


def slope_variables(names: list[str], priors: ResolvedPriors) -> dict[str, list[int]]:
    """The slope RVs of the full model: one vector per prior family among the slopes,
    ``b_slopes`` (or ``b_slopes_<Family>`` when there are several), with their X columns."""
    by_family: dict[str, list[int]] = {}
    for j, name in enumerate(names):
        if name != "Intercept":
            by_family.setdefault(type(priors.fixed[name]).__name__, []).append(j)
    if len(by_family) == 1:
        return {"b_slopes": next(iter(by_family.values()))}
    return {f"b_slopes_{family}": idx for family, idx in by_family.items()}


def _fixed_part(spec: ModelSpec, priors: ResolvedPriors):
    import pymc as pm
    import pytensor.tensor as pt

    if spec.p == 0:
        return pt.zeros(spec.n)
    names = spec.x_names
    slopes_idx = [j for j, n in enumerate(names) if n != "Intercept"]
    pieces = {}
    for rv_name, idx in slope_variables(names, priors).items():
        prior_list = [priors.fixed[names[j]] for j in idx]
        params = {k: np.array([p.params()[k] for p in prior_list])
                  for k in prior_list[0].params()}
        rv = _named(prior_list[0], rv_name, params, len(idx))
        for pos, j in enumerate(idx):
            pieces[j] = rv[pos]
    slopes = pt.stack([pieces[j] for j in slopes_idx]) if slopes_idx else None
    X_slopes = spec.X[:, slopes_idx]
    if "Intercept" in names:
        center = X_slopes.mean(axis=0)
        intercept_c = priors.fixed["Intercept"].pymc("b_Intercept_centered")
        mu = intercept_c + (pt.dot(X_slopes - center, slopes) if slopes_idx else 0.0)
        intercept = intercept_c - (pt.dot(center, slopes) if slopes_idx else 0.0)
        pieces[names.index("Intercept")] = intercept
    else:
        mu = pt.dot(X_slopes, slopes)
    pm.Deterministic("b", pt.stack([pieces[j] for j in range(len(names))]), dims="coef")
    return mu


def covariance_part(group: FactorTerms, priors: ResolvedPriors, pt) -> list[tuple]:
    """Priors of one factor's covariance parameters: per block (block, Cholesky factor of
    G (q x q), SDs).  Registers the public ``sd_<f>`` and ``cor_<f>`` Deterministics."""
    import pymc as pm

    factor = group.factor
    out = []
    for k, block in enumerate(group.blocks):
        q = block.q
        sd_priors = [priors.sd[factor][t] for t in block.terms]
        suffix = "" if len(group.blocks) == 1 else f"_{k}"
        if block.structure in ("cs", "ar1"):
            out.append(_patterned_part(group, k, block, sd_priors, suffix, pt))
            continue
        if block.correlated and q >= 2:
            chol, corr, stds = pm.LKJCholeskyCov(
                f"chol_{factor}{suffix}", n=q, eta=priors.cor[factor].eta,
                sd_dist=_sd_dist(sd_priors, q), compute_corr=True, store_in_trace=False,
            )
            pm.Deterministic(cor_name(group, k), corr, dims=cor_dims(group, k))
            out.append((block, chol, stds))
        else:
            if len({type(p) for p in sd_priors}) > 1:
                raise ValueError(f"SD priors of one block of {factor!r} must share a family")
            params = {key: np.array([p.params()[key] for p in sd_priors])
                      for key in sd_priors[0].params()}
            sd = _named(sd_priors[0], f"sd_{factor}{suffix}_raw", params, q)
            chol = sd.reshape((1, 1)) if q == 1 else pt.diag(sd)
            out.append((block, chol, sd))
    sds = [entry[2] for entry in out]
    pm.Deterministic(f"sd_{factor}", pt.concatenate(sds) if len(sds) > 1 else sds[0],
                     dims=group.term_dim)
    return out


def _patterned_part(group: FactorTerms, k: int, block: RandomBlock, sd_priors: list[Prior],
                    suffix: str, pt) -> tuple:
    """A cs() or ar1() G pattern: SDs (one per term for cs, one for ar1) and rho ~
    Uniform(-1 / (q - 1), 1) (``rho_<f>``) or phi ~ Uniform(-1, 1) (``phi_<f>``); the
    correlation matrix is recorded as ``cor_<f>``."""
    import pymc as pm

    factor, q = group.factor, block.q
    if len({type(p) for p in sd_priors}) > 1:
        raise ValueError(f"SD priors of one block of {factor!r} must share a family")
    if block.structure == "cs":
        params = {key: np.array([p.params()[key] for p in sd_priors])
                  for key in sd_priors[0].params()}
        sd = _named(sd_priors[0], f"sd_{factor}{suffix}_raw", params, q)
        rho = pm.Uniform(f"rho_{factor}{suffix}", -1.0 / (q - 1), 1.0)
        corr = rho + (1.0 - rho) * pt.eye(q)
    else:
        one = sd_priors[0].pymc(f"sd_{factor}{suffix}_raw", shape=1)
        sd = pt.repeat(one, q)
        phi = pm.Uniform(f"phi_{factor}{suffix}", -1.0, 1.0)
        lags = np.abs(np.subtract.outer(np.arange(q), np.arange(q)))
        corr = pt.stack([phi**j for j in range(q)])[lags]
    pm.Deterministic(cor_name(group, k), corr, dims=cor_dims(group, k))
    chol = sd[:, None] * _small_cholesky(corr, q, pt)
    return block, chol, sd


def _small_cholesky(matrix, q: int, pt):
    """Cholesky factor of a small q x q symmetric matrix as unrolled scalar operations: a
    graph of O(q^3) scalar nodes, which PyMC's NUTS runs far faster than the Cholesky Op."""
    entries = [[None] * q for _ in range(q)]
    zero = pt.as_tensor_variable(0.0)
    for i in range(q):
        for j in range(i + 1):
            acc = matrix[i, j] - sum((entries[i][m] * entries[j][m] for m in range(j)), zero)
            entries[i][j] = pt.sqrt(acc) if i == j else acc / entries[j][j]
    return pt.stack([pt.stack([entries[i][j] if j <= i else zero for j in range(q)])
                     for i in range(q)])


def _factor_part(group: FactorTerms, priors: ResolvedPriors, centered: bool, pt):
    import pymc as pm

    factor = group.factor
    m = len(group.levels)
    effects = []
    for k, (block, chol, sd) in enumerate(covariance_part(group, priors, pt)):
        q = block.q
        suffix = "" if len(group.blocks) == 1 else f"_{k}"
        if centered:
            name = f"r_{factor}{suffix}_centered"
            r = (pm.MvNormal(name, mu=np.zeros(q), chol=chol, shape=(m, q)) if q >= 2
                 and block.correlated else pm.Normal(name, 0.0, sd, shape=(m, q)))
        else:
            z = pm.Normal(f"z_{factor}{suffix}", 0.0, 1.0, shape=(m, q))
            r = pt.dot(z, chol.T) if q >= 2 and block.correlated else z * sd
        effects.append(r)
    r_all = pt.concatenate(effects, axis=1) if len(effects) > 1 else effects[0]
    pm.Deterministic(f"r_{factor}", r_all, dims=(group.level_dim, group.term_dim))
    columns = group.columns
    if columns.shape[1] == 1:
        return r_all[group.codes, 0] * columns[:, 0]
    return (r_all[group.codes] * columns).sum(axis=1)


def model_coords(spec: ModelSpec, groups: list[FactorTerms]) -> dict[str, list]:
    coords: dict[str, list] = {"coef": list(spec.x_names), "obs": np.arange(spec.n)}
    for group in groups:
        coords[group.level_dim] = list(group.levels)
        coords[group.term_dim] = group.terms
        for k in group.correlated_blocks():
            d1, d2 = cor_dims(group, k)
            coords[d1] = coords[d2] = list(group.blocks[k].terms)
    return coords


def build_partial_model(spec: ModelSpec, priors: ResolvedPriors, structure,
                        mu0: np.ndarray, inv_scale: np.ndarray, centered: dict[str, bool]):
    """PyMC model with beta, the largest block and the small ones integrated out
    (``bayes/partial.py``): NUTS keeps the other blocks' effects (``r_<f>``, centered or not
    per ``centered``)."""
    import pymc as pm
    import pytensor.tensor as pt

    from .partial_op import PartialLogp

    groups = group_factors(spec)
    inner = {b.factor for b in [structure.first, *structure.integrated]}
    with pm.Model(coords=model_coords(spec, groups)) as model:
        chol_of = {}
        kept_part = 0.0
        for group in groups:
            if group.factor in inner:
                for block, chol, _ in covariance_part(group, priors, pt):
                    chol_of[id(block)] = chol
            else:
                kept_part = kept_part + _factor_part(group, priors,
                                                     centered.get(group.factor, False), pt)
        sigma = priors.sigma.pymc("sigma")
        logp = PartialLogp(structure, mu0, inv_scale)(
            chol_of[id(structure.first)], sigma, spec.y - kept_part,
            *[chol_of[id(b)] for b in structure.integrated])[0]
        pm.Potential("marginal_loglik", logp)
    return model


def build_marginal_model(spec: ModelSpec, priors: ResolvedPriors, structure,
                         mu0: np.ndarray, inv_scale: np.ndarray):
    """PyMC model of the covariance parameters only, with b and beta integrated out
    (``bayes/marginal.py``): the same priors and public ``sd_<f>``/``cor_<f>``/``sigma``."""
    import pymc as pm
    import pytensor.tensor as pt

    from .marginal_op import MarginalLogp

    groups = group_factors(spec)
    with pm.Model(coords=model_coords(spec, groups)) as model:
        chol_of = {}
        sd_of = {}
        for group in groups:
            for block, chol, sd in covariance_part(group, priors, pt):
                chol_of[id(block)], sd_of[id(block)] = chol, sd
        sigma = priors.sigma.pymc("sigma")
        first = structure.blocks[0]
        sd_rest = pt.stack([sd_of[id(block)][0] for block in structure.blocks[1:]]) \
            if len(structure.blocks) > 1 else pt.zeros(0)
        logp = MarginalLogp(structure, mu0, inv_scale)(chol_of[id(first)], sd_rest, sigma)[0]
        pm.Potential("marginal_loglik", logp)
    return model


def build_residual_marginal_model(spec: ModelSpec, priors: ResolvedPriors, residual, marginal):
    """PyMC model of the covariance parameters of a model with an R-side structure, beta and
    the residual groups' random effects integrated out (``bayes/residual_marginal.py``):
    the full model's priors and public variables but ``b`` and ``r_<f>``."""
    import pymc as pm
    import pytensor.tensor as pt

    from .residual_op import ResidualMarginalLogp
    from .residual_terms import add_residual_parameters, residual_coords

    groups = group_factors(spec)
    coords = model_coords(spec, groups)
    coords.update(residual_coords(residual))
    with pm.Model(coords=coords) as model:
        g = pt.zeros((0, 0))
        for group in groups:  # at most one factor: the residual's group
            covs = [pt.dot(chol, chol.T) for _, chol, _ in covariance_part(group, priors, pt)]
            q = sum(block.q for block in group.blocks)
            g = pt.zeros((q, q))
            at = 0
            for block, cov in zip(group.blocks, covs, strict=True):
                g = pt.set_subtensor(g[at:at + block.q, at:at + block.q], cov)
                at += block.q
        kind, cov_full = add_residual_parameters(residual, priors.residual, priors.sigma)
        if kind != "cov":  # pragma: no cover - ResidualMarginal.unavailable refuses these
            raise ValueError("the residual marginal sampler needs an occasion covariance")
        logp = ResidualMarginalLogp(marginal)(cov_full, g)[0]
        pm.Potential("marginal_loglik", logp)
    return model
