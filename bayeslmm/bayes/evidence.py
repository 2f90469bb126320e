"""The log marginal likelihood log p(y) of a Bayesian fit, and Bayes factors.

beta and b are integrated analytically (the marginal sampler's density, ``marginal.py``),
so only the few covariance parameters theta (log SDs, CPCs, log sigma; ``marginal_posterior``)
need a numerical integral:

    p(y) = int p(y | theta) p(theta) d theta,

estimated by importance sampling from a multivariate Student t (nu = 5) fitted to the
posterior draws of theta (their mean and 1.2^2 x their covariance): with weights
w = p(y | theta) p(theta) / q(theta) over M proposal draws, log p(y) = log mean(w), and its
Monte Carlo SE is sd(w) / (mean(w) sqrt(M)) (delta method).  The sampler's log density drops
constants; the ones restored here (``normalizing_constant``) are

* the fixed effects' Normal priors: -p/2 log(2 pi) - sum_j log s0_j (the kernel's Gaussian
  integral uses n - p degrees of freedom),
* each SD prior's normalization (HalfNormal, HalfStudentT, HalfCauchy, Exponential),
* LKJ(eta): each canonical partial correlation z = tanh(y) is an independent symmetric Beta(b, b)
  on (-1, 1), b = eta + (q - 2 - j) / 2, whose density in y is
  (1 - z^2)^b / (2^(2b - 1) B(b, b)).

Flat fixed-effect priors make p(y) improper: refused.  Tests check the normalized density
against a dense multivariate normal and the integral against quadrature.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import special, stats

__all__ = ["log_marginal_likelihood", "normalizing_constant", "bayes_factor"]

PROPOSAL_DF = 5.0
PROPOSAL_INFLATION = 1.2
N_PROPOSAL = 20_000


def _scale_constant(prior) -> float:
    from .priors import Exponential, HalfCauchy, HalfNormal, HalfStudentT

    if isinstance(prior, HalfNormal):
        return 0.5 * math.log(2.0 / math.pi) - math.log(prior.sigma)
    if isinstance(prior, HalfStudentT):
        nu = prior.nu
        return (math.log(2.0) + special.gammaln((nu + 1) / 2) - special.gammaln(nu / 2)
                - 0.5 * math.log(nu * math.pi) - math.log(prior.sigma))
    if isinstance(prior, HalfCauchy):
        return math.log(2.0 / math.pi) - math.log(prior.beta)
    if isinstance(prior, Exponential):
        return math.log(prior.lam)
    raise ValueError(f"no normalizing constant for prior {prior}")


def _lkj_constant(q: int, eta: float) -> float:
    total = 0.0
    for i in range(1, q):
        for j in range(i):
            b = eta + 0.5 * (q - 2 - j)
            total -= (2.0 * b - 1.0) * math.log(2.0) + special.betaln(b, b)
    return total


def normalizing_constant(model) -> float:
    """What the marginal sampler's log density drops (module docstring)."""
    from .priors import Normal

    priors = model.priors
    structure = model.marginal_parts()[0]
    total = 0.0
    for name in model.spec.x_names:
        prior = priors.fixed[name]
        if not isinstance(prior, Normal):
            raise ValueError(f"the log marginal likelihood needs proper (Normal) priors on every "
                             f"fixed effect; {name!r} has {prior}: set priors={{'{name}': "
                             "bayeslmm.Normal(...)}}")
        total -= 0.5 * math.log(2.0 * math.pi) + math.log(prior.sigma)
    for block in structure.blocks:
        for term in block.terms:
            total += _scale_constant(priors.sd[block.factor][term])
        if block.correlated and block.q >= 2:
            total += _lkj_constant(block.q, float(priors.cor[block.factor].eta))
    return total + _scale_constant(priors.sigma)


def theta_draws(fit) -> np.ndarray:
    """The posterior draws on the marginal sampler's unconstrained scale (D, ndim)."""
    model = fit.model
    post = model.marginal_posterior()
    blocks = post.structure.blocks
    covs = model.block_covariances(fit.posterior)
    sigma = fit.posterior["sigma"].to_numpy().reshape(-1)
    out = np.empty((sigma.size, post.ndim))
    for d in range(sigma.size):
        sds, corrs = [], []
        for block in blocks:
            cov = covs[id(block)][d]
            sd = np.sqrt(np.diag(cov))
            sds.append(sd)
            corrs.append(cov / np.outer(sd, sd))
        rest = np.concatenate(sds[1:]) if len(sds) > 1 else np.zeros(0)
        out[d] = post.unconstrain(sds[0], corrs[0], rest, sigma[d], rest_corr=corrs[1:])
    return out


def log_marginal_likelihood(fit, n_proposal: int = N_PROPOSAL,
                            random_seed: int | None = 0) -> tuple[float, float]:
    """(log p(y), its Monte Carlo SE) of a fit sampled by the marginal sampler."""
    if fit.model.residual_model is not None:
        raise ValueError("log_marginal_likelihood is not built for residual structures yet "
                         "(it needs the covariance parameters' own density; see "
                         "docs/residuals.md)")
    if fit.sampler != "marginal":
        raise ValueError(f"log_marginal_likelihood needs the marginal sampler (this fit used "
                         f"the {fit.sampler!r} one): refit with sampler='marginal'")
    model = fit.model
    constant = normalizing_constant(model)
    post = model.marginal_posterior()
    draws = theta_draws(fit)
    mean = draws.mean(axis=0)
    cov = np.atleast_2d(np.cov(draws, rowvar=False)) * PROPOSAL_INFLATION**2
    cov += 1e-10 * np.eye(len(mean))
    proposal = stats.multivariate_t(loc=mean, shape=cov, df=PROPOSAL_DF,
                                    seed=np.random.default_rng(random_seed))
    points = np.atleast_2d(proposal.rvs(size=n_proposal)).reshape(n_proposal, -1)
    log_q = proposal.logpdf(points)
    log_target = np.array([post.logp_and_grad(x)[0] for x in points]) + constant
    log_w = log_target - log_q
    log_w = np.where(np.isfinite(log_w), log_w, -np.inf)
    top = float(log_w.max())
    w = np.exp(log_w - top)
    value = top + math.log(w.mean())
    mcse = float(w.std(ddof=1) / (w.mean() * math.sqrt(n_proposal)))
    return float(value), mcse


def bayes_factor(fit1, fit2, **kwargs) -> tuple[float, float]:
    """(log BF_12 = log p(y | model 1) - log p(y | model 2), its Monte Carlo SE)."""
    if fit1.spec.n != fit2.spec.n or not np.array_equal(fit1.spec.response_values,
                                                        fit2.spec.response_values):
        raise ValueError("a Bayes factor compares models of the same response rows")
    a, sa = log_marginal_likelihood(fit1, **kwargs)
    b, sb = log_marginal_likelihood(fit2, **kwargs)
    return a - b, float(math.hypot(sa, sb))
