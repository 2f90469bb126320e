"""Bayesian residual structures: priors, the PyMC likelihood, and the per-draw maps back.

For ``residual="STRUCT(occasion | group)"`` the full PyMC model (and the residual marginal
sampler's, ``residual_marginal.py``, through ``add_residual_parameters``) replaces
``y ~ Normal(mu, sigma)`` by one multivariate normal per group: its rows' residuals y - mu
have covariance Sigma restricted to the occasions it has (the same batching by size and
pattern of occasions as the REML engine, ``residual/model.py``), evaluated with one batched
Cholesky per batch.  Posterior variables (public names):

=========  =========================================  ======================================
structure  variables                                   default priors
=========  =========================================  ======================================
us         ``sigma`` (occasion), ``cor_residual``      sigma prior per occasion, LKJ(1)
diag       ``sigma`` (occasion)                        sigma prior per occasion
cs         ``sigma``, ``rho``                          rho ~ Uniform(-1 / (T_max - 1), 1)
csh        ``sigma`` (occasion), ``rho``               as cs, sigma prior per occasion
ar1        ``sigma``, ``phi``                          phi ~ Uniform(-1, 1)
car1       ``sigma``, ``phi``                          phi ~ Uniform(0, 1)
toep       ``sigma``, ``pacf`` (lag), ``rho_lag``      partial autocorrelations Uniform(-1, 1)
sigma="~f" ``sigma`` (level of f)                      sigma prior per level
=========  =========================================  ======================================

(the sigma prior is the one of an iid model: HalfStudentT(3, sd(y)) unless set by
``priors={"sigma": ...}``; ``"phi"``, ``"rho"``, ``"pacf"`` take a ``Uniform`` within those
bounds and ``"cor_residual"`` an ``LKJ``.)  ``cor_residual`` (occasion x occasion) is also
recorded for cs, csh, ar1 and toep.  Every draw maps back to the REML engine's
unconstrained parameters (``unconstrained``), so log likelihoods per group, posterior
predictive noise and ``residual_cov()`` reuse ``ResidualModel``'s whitening.
"""

from __future__ import annotations

import numpy as np

from ..core.covariance import logit
from ..residual.model import ResidualModel
from ..residual.structures import (
    AutoRegressive,
    CompoundSymmetry,
    ContinuousAutoRegressive,
    DiagonalResidual,
    Toeplitz,
    UnstructuredResidual,
)
from .priors import LKJ, Uniform

__all__ = ["residual_defaults", "residual_names", "add_residual_likelihood",
           "add_residual_parameters", "occasion_covariances", "unconstrained",
           "OCCASION_DIM", "LEVEL_DIM", "LAG_DIM", "check_bayes_residual"]

OCCASION_DIM = "occasion"
LEVEL_DIM = "sigma_level"
LAG_DIM = "lag"


def check_bayes_residual(residual: ResidualModel) -> None:
    """What the Bayesian engine does not take (yet), refused with a message."""
    if residual.structure is not None and residual.n_variance:
        raise NotImplementedError(
            "Bayesian fits take a residual structure or sigma='~ f', not both yet "
            "(method='reml' fits both)")


def residual_defaults(residual: ResidualModel) -> dict[str, tuple]:
    """name -> (default prior, kind, bounds) of the structure's non-sigma parameters."""
    s = residual.structure
    if isinstance(s, CompoundSymmetry):
        lo = s.lowest
        return {"rho": (Uniform(lo, 1.0), "bounded", (lo, 1.0))}
    if isinstance(s, ContinuousAutoRegressive):
        return {"phi": (Uniform(0.0, 1.0), "bounded", (0.0, 1.0))}
    if isinstance(s, AutoRegressive):
        return {"phi": (Uniform(-1.0, 1.0), "bounded", (-1.0, 1.0))}
    if isinstance(s, Toeplitz):
        return {"pacf": (Uniform(-1.0, 1.0), "bounded", (-1.0, 1.0))}
    if isinstance(s, UnstructuredResidual):
        return {"cor_residual": (LKJ(1.0), "corr", None)}
    return {}


def heterogeneous_sigma(residual: ResidualModel) -> str | None:
    """The dim of ``sigma`` when it has one (occasion or variance level), else None."""
    if residual.structure is not None and residual.structure.heterogeneous:
        return OCCASION_DIM
    if residual.n_variance:
        return LEVEL_DIM
    return None


def residual_names(residual: ResidualModel) -> list[str]:
    """Public posterior variables besides ``sigma``."""
    s = residual.structure
    names = [n for n in residual_defaults(residual) if n != "cor_residual"]
    if isinstance(s, Toeplitz):
        names.append("rho_lag")
    if s is not None and not isinstance(s, (DiagonalResidual, ContinuousAutoRegressive)):
        names.append("cor_residual")
    return names


def residual_coords(residual: ResidualModel) -> dict[str, list]:
    coords: dict[str, list] = {}
    s = residual.structure
    if s is not None and not isinstance(s, ContinuousAutoRegressive):
        coords[OCCASION_DIM] = list(s.labels)
        coords[f"{OCCASION_DIM}_2"] = list(s.labels)
    if isinstance(s, Toeplitz):
        coords[LAG_DIM] = list(range(1, s.n_positions))
    if residual.n_variance:
        coords[LEVEL_DIM] = list(residual.variance_labels)
    return coords


def _durbin_levinson(partial, k: int, pt):
    """Autocorrelations rho_0 .. rho_k of k partial autocorrelations (pytensor, unrolled)."""
    rho = [pt.as_tensor_variable(1.0)]
    phi: list = []
    for j in range(int(k)):
        a = partial[j]
        var = 1.0 - sum((phi[i] * rho[i + 1] for i in range(j)), pt.as_tensor_variable(0.0))
        new = sum((phi[i] * rho[j - i] for i in range(j)), pt.as_tensor_variable(0.0)) + a * var
        rho.append(new)
        phi = [phi[i] - a * phi[j - 1 - i] for i in range(j)] + [a]
    return pt.stack(rho)


def add_residual_parameters(residual: ResidualModel, priors, sigma_prior) -> tuple:
    """Inside an active ``pm.Model``: the residual structure's parameters (with ``priors``,
    a dict name -> Prior) and their public Deterministics.  Returns ("levels", row SDs)
    for ``sigma="~ f"`` alone, ("car1", sigma, phi), or ("cov", Sigma over every occasion
    (T x T))."""
    import pymc as pm
    import pytensor.tensor as pt

    s = residual.structure
    dim = heterogeneous_sigma(residual)
    if s is None:  # sigma = "~ f" only: a residual SD per level
        sigma = sigma_prior.pymc("sigma", dims=dim) if dim else sigma_prior.pymc("sigma")
        return "levels", sigma[residual.variance_codes] if dim else sigma
    t = s.n_positions
    if isinstance(s, UnstructuredResidual):
        chol, corr, stds = pm.LKJCholeskyCov(
            "chol_residual", n=t, eta=priors["cor_residual"].eta,
            sd_dist=sigma_prior.pymc(None, shape=t), compute_corr=True, store_in_trace=False)
        pm.Deterministic("sigma", stds, dims=OCCASION_DIM)
        pm.Deterministic("cor_residual", corr, dims=(OCCASION_DIM, f"{OCCASION_DIM}_2"))
        cov_full = pt.dot(chol, chol.T)
    else:
        if s.heterogeneous:
            sd = sigma_prior.pymc("sigma", dims=OCCASION_DIM)
        else:
            sd = sigma_prior.pymc("sigma")
        if isinstance(s, DiagonalResidual):
            corr = pt.eye(t)
        elif isinstance(s, CompoundSymmetry):
            rho = priors["rho"].pymc("rho")
            corr = rho + (1.0 - rho) * pt.eye(t)
        elif isinstance(s, ContinuousAutoRegressive):
            phi = priors["phi"].pymc("phi")
            corr = None
        elif isinstance(s, AutoRegressive):
            phi = priors["phi"].pymc("phi")
            powers = pt.stack([phi**k for k in range(t)])  # integer lags: no 0^0 gradient
            lags = np.abs(np.subtract.outer(np.arange(t), np.arange(t)))
            corr = powers[lags]
        elif isinstance(s, Toeplitz):
            pacf = priors["pacf"].pymc("pacf", dims=LAG_DIM)
            rho_lag = _durbin_levinson(pacf, t - 1, pt)
            pm.Deterministic("rho_lag", rho_lag[1:], dims=LAG_DIM)
            lags = np.abs(np.subtract.outer(np.arange(t), np.arange(t)))
            corr = rho_lag[lags]
        else:  # pragma: no cover - every structure is listed above
            raise NotImplementedError(s.kind)
        if corr is not None and not isinstance(s, DiagonalResidual):
            pm.Deterministic("cor_residual", corr, dims=(OCCASION_DIM, f"{OCCASION_DIM}_2"))
        if corr is None:  # car1: phi^|t - t'| at each pattern's times
            return "car1", sd, phi
        sd_vec = sd if s.heterogeneous else pt.ones(t) * sd
        cov_full = corr * pt.outer(sd_vec, sd_vec)
    return "cov", cov_full


def add_residual_likelihood(resid, residual: ResidualModel, priors, sigma_prior) -> None:
    """Inside an active ``pm.Model``: the residual structure's parameters
    (``add_residual_parameters``) and the log likelihood of ``resid`` (= y - mu) as a
    Potential."""
    import pymc as pm
    import pytensor.tensor as pt

    from .residual_op import Car1Logp, OccasionLogp

    kind, *parts = add_residual_parameters(residual, priors, sigma_prior)
    if kind == "levels":
        row_sd = parts[0]
        logp = (-0.5 * pt.sum((resid / row_sd) ** 2) - pt.sum(pt.log(row_sd) * np.ones(
            residual.n)) - 0.5 * residual.n * float(np.log(2.0 * np.pi)))
    elif kind == "car1":
        logp = Car1Logp(residual)(resid, *parts)[0]
    else:
        logp = OccasionLogp(residual)(resid, parts[0])[0]
    pm.Potential("y_loglik", logp)


def unconstrained(residual: ResidualModel, draws: dict[str, np.ndarray]) -> tuple[np.ndarray,
                                                                                   np.ndarray]:
    """Per draw the REML engine's residual parameters rho (``ResidualModel``'s, sigma
    profiled form) and sigma (first occasion's / first level's SD): (D, size), (D,)."""
    s = residual.structure
    sigma = np.asarray(draws["sigma"], dtype=float)
    n_draws = sigma.shape[0]
    if s is None:
        if sigma.ndim == 1:
            return np.zeros((n_draws, 0)), sigma
        return np.log(sigma[:, 1:] / sigma[:, :1]), sigma[:, 0]
    if isinstance(s, UnstructuredResidual):
        cov = draws["cor_residual"] * sigma[:, :, None] * sigma[:, None, :]
        rel = cov / sigma[:, :1, None] ** 2
        lower = np.linalg.cholesky(rel)
        rows, cols = np.tril_indices(s.n_positions, -1)
        diag = np.arange(1, s.n_positions)
        return (np.concatenate([lower[:, rows, cols], np.log(lower[:, diag, diag])], axis=1),
                sigma[:, 0])
    parts = []
    if isinstance(s, CompoundSymmetry):
        lo = s.lowest
        parts.append(logit((draws["rho"] - lo) / (1.0 - lo), eps=1e-15)[:, None])
    elif isinstance(s, ContinuousAutoRegressive):
        parts.append(logit(draws["phi"], eps=1e-15)[:, None])
    elif isinstance(s, AutoRegressive):
        parts.append(np.arctanh(np.clip(draws["phi"], -1 + 1e-15, 1 - 1e-15))[:, None])
    elif isinstance(s, Toeplitz):
        parts.append(np.arctanh(np.clip(draws["pacf"], -1 + 1e-15, 1 - 1e-15)))
    first = sigma if sigma.ndim == 1 else sigma[:, 0]
    if s.heterogeneous:  # diag, csh: log SD ratios to the first occasion
        parts.append(np.log(sigma[:, 1:] / sigma[:, :1]))
    return (np.concatenate(parts, axis=1) if parts else np.zeros((n_draws, 0))), first


def occasion_covariances(residual: ResidualModel, posterior) -> np.ndarray | None:
    """(draws, T, T) sigma^2 D C D over the occasions from the posterior's ``sigma`` and
    ``cor_residual``, for structures given by one occasion covariance (not car1, no
    variance function); else None."""
    s = residual.structure
    if s is None or isinstance(s, ContinuousAutoRegressive) or residual.n_variance:
        return None
    n = posterior.sizes["chain"] * posterior.sizes["draw"]
    t = s.n_positions
    sd = posterior["sigma"].to_numpy().reshape(n, -1) * np.ones((1, t))
    if "cor_residual" in posterior:
        cor = posterior["cor_residual"].to_numpy().reshape(n, t, t)
    else:
        cor = np.broadcast_to(np.eye(t), (n, t, t))
    return np.ascontiguousarray(cor * sd[:, :, None] * sd[:, None, :])


RESIDUAL_BOUNDS = {
    "phi": lambda r: ((0.0, 1.0) if isinstance(r.structure, ContinuousAutoRegressive)
                      else (-1.0, 1.0)),
    "rho": lambda r: (r.structure.lowest, 1.0),
    "pacf": lambda r: (-1.0, 1.0),
}


def residual_start(residual: ResidualModel, reml) -> dict[str, np.ndarray]:
    """Starting values of the residual variables from the REML fit of the same model."""
    s = residual.structure
    struct, var = residual.split(reml.residual_params)
    sigma = reml.sigma
    out: dict[str, np.ndarray] = {}
    if s is None:
        out["sigma"] = sigma * np.exp(np.concatenate([[0.0], var]))
        return out
    if isinstance(s, UnstructuredResidual):
        chol = np.linalg.cholesky(reml.residual_cov().to_numpy())
        out["chol_residual"] = chol[np.tril_indices(s.n_positions)]
        return out
    if s.heterogeneous:
        out["sigma"] = sigma * s.sd_ratios(struct)
    if isinstance(s, CompoundSymmetry):
        out["rho"] = np.asarray(s.rho(struct))
    elif isinstance(s, AutoRegressive):  # ar1 and car1
        out["phi"] = np.asarray(s.phi(struct))
    elif isinstance(s, Toeplitz):
        out["pacf"] = np.tanh(s.split(struct)[0])
    return out


def parameter_draws(residual: ResidualModel, posterior) -> dict[str, np.ndarray]:
    """Draws of every entry of ``RemlFit.residual_structure`` (same names), flattened."""
    s = residual.structure
    sigma = posterior["sigma"]
    out: dict[str, np.ndarray] = {}
    if sigma.ndim == 2:
        out["sigma"] = sigma.to_numpy().reshape(-1)
    else:
        dim = sigma.dims[-1]
        values = sigma.to_numpy().reshape(-1, sigma.shape[-1])
        out["sigma"] = values[:, 0]
        labels = list(sigma[dim].values)
        if dim == OCCASION_DIM:
            for k, lab in enumerate(labels):
                out[f"sd[{lab}]"] = values[:, k]
        else:
            for k, lab in enumerate(labels[1:], start=1):
                out[f"sd_ratio[{lab}]"] = values[:, k] / values[:, 0]
    for name in ("phi", "rho"):
        if name in posterior:
            out[name] = posterior[name].to_numpy().reshape(-1)
    if "rho_lag" in posterior:
        lags = posterior["rho_lag"].to_numpy().reshape(-1, s.n_positions - 1)
        for k in range(lags.shape[1]):
            out[f"rho[{k + 1}]"] = lags[:, k]
    if isinstance(s, UnstructuredResidual):
        cor = posterior["cor_residual"].to_numpy().reshape(-1, s.n_positions, s.n_positions)
        for a in range(s.n_positions):
            for b in range(a + 1, s.n_positions):
                out[f"cor[{s.labels[a]}, {s.labels[b]}]"] = cor[:, a, b]
    return out
