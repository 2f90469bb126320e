"""Plots for notebooks (matplotlib).  Every function takes ``ax=`` and returns the Axes
(or an array of Axes) it drew on.

* :func:`caterpillar` - random effects of one factor and term with intervals, sorted;
* :func:`shrinkage` - per-group least-squares estimates vs REML BLUPs vs posterior means;
* :func:`varcomp` - posterior of each SD, correlation and sigma with the REML estimate marked;
* :func:`ppc` - posterior predictive check (``az.plot_ppc`` with defaults that suit LMMs).
"""

from __future__ import annotations

import numpy as np

__all__ = ["caterpillar", "shrinkage", "varcomp", "ppc"]


def _plt():
    import matplotlib.pyplot as plt

    return plt


def _is_bayes(fit) -> bool:
    return hasattr(fit, "posterior")


def _factor_and_term(fit, factor, term):
    blocks = fit.spec.blocks
    factor = factor or blocks[0].factor
    terms = [t for b in blocks if b.factor == factor for t in b.terms]
    if not terms:
        raise ValueError(f"no grouping factor {factor!r}; factors: "
                         f"{sorted({b.factor for b in blocks})}")
    term = term or terms[0]
    if term not in terms:
        raise ValueError(f"factor {factor!r} has no term {term!r}; terms: {terms}")
    return factor, term


def caterpillar(fit, factor: str | None = None, term: str | None = None, prob: float = 0.95,
                ax=None):
    """Random effects of ``factor``/``term`` sorted by estimate, with central intervals
    (posterior quantiles for a Bayesian fit; points only for a REML fit)."""
    plt = _plt()
    factor, term = _factor_and_term(fit, factor, term)
    if _is_bayes(fit):
        draws = fit.posterior[f"r_{factor}"].sel({f"{factor}_term": term})
        values = draws.stack(_draws_=("chain", "draw")).to_numpy()  # (levels, draws)
        draws = draws.isel(chain=0, draw=0)
        est = values.mean(axis=1)
        lo, hi = np.quantile(values, [(1 - prob) / 2, (1 + prob) / 2], axis=1)
        labels = [str(v) for v in draws[draws.dims[-1]].values]
    else:
        frame = fit.ranef[factor]
        est = frame[term].to_numpy()
        lo = hi = None
        labels = list(frame.index)
    order = np.argsort(est)
    if ax is None:
        _, ax = plt.subplots(figsize=(5, max(2.5, 0.18 * len(est))))
    pos = np.arange(len(est))
    if lo is not None:
        ax.hlines(pos, lo[order], hi[order], color="C0", alpha=0.6)
    ax.plot(est[order], pos, "o", color="C0", ms=3)
    ax.axvline(0, color="grey", lw=0.8)
    if len(est) <= 60:
        ax.set_yticks(pos, [str(labels[i]) for i in order], fontsize=7)
    ax.set_xlabel(f"r_{factor}[{term}]")
    ax.set_title(f"{factor}: {term}" + (f" ({100 * prob:g}% intervals)" if lo is not None
                                        else " (conditional modes)"))
    return ax


def _group_least_squares(spec, factor: str) -> tuple[np.ndarray, list[str], list[str]]:
    """Per-level least-squares coefficients of y on the factor's random-effect columns."""
    blocks = [b for b in spec.blocks if b.factor == factor]
    columns = np.column_stack([b.columns for b in blocks])
    terms = [t for b in blocks for t in b.terms]
    codes, levels = blocks[0].codes, blocks[0].levels
    out = np.full((len(levels), len(terms)), np.nan)
    for j in range(len(levels)):
        rows = codes == j
        if rows.sum() >= len(terms):
            out[j] = np.linalg.lstsq(columns[rows], spec.y[rows], rcond=None)[0]
    return out, terms, levels


def _group_coefficients(fixef: dict, effects: np.ndarray, terms: list[str]) -> np.ndarray:
    return effects + np.array([fixef.get(t, 0.0) for t in terms])


def shrinkage(fit, reml=None, factor: str | None = None, ax=None):
    """Per-group least-squares estimates (open circles) vs REML BLUP-based group coefficients
    (fixed + conditional mode) and posterior means, with arrows showing the shrinkage toward
    the population.  Two terms: a 2-D plot (first term on x); one term: a dot plot by group.

    ``fit`` may be a BayesFit (``reml`` defaults to its REML fit) or a RemlFit.
    """
    plt = _plt()
    spec = fit.spec
    factor = factor or spec.blocks[0].factor
    ols, terms, levels = _group_least_squares(spec, factor)
    estimates = []
    if _is_bayes(fit):
        reml = reml if reml is not None else fit.model.fit_reml()
        post = fit.posterior
        b = post["b"].mean(("chain", "draw")).to_series().to_dict() if spec.p else {}
        r = post[f"r_{factor}"].mean(("chain", "draw")).to_numpy()
        estimates.append(("posterior mean", _group_coefficients(b, r, terms), "C1"))
    elif reml is None:
        reml = fit
    if reml is not None:
        blups = reml.ranef[factor][terms].to_numpy()
        estimates.insert(0, ("REML (BLUP)", _group_coefficients(reml.fixef.to_dict(), blups,
                                                                   terms), "C0"))
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 5))
    if len(terms) >= 2:
        ax.plot(ols[:, 0], ols[:, 1], "o", mfc="none", color="k", label="least squares")
        for label, est, color in estimates:
            ax.plot(est[:, 0], est[:, 1], "o", color=color, ms=4, label=label)
            for j in range(len(levels)):
                if np.isfinite(ols[j]).all():
                    ax.annotate("", est[j, :2], ols[j, :2],
                                arrowprops={"arrowstyle": "->", "color": color, "alpha": 0.4})
        ax.set_xlabel(terms[0])
        ax.set_ylabel(terms[1])
    else:
        order = np.argsort(ols[:, 0])
        pos = np.arange(len(levels))
        ax.plot(ols[order, 0], pos, "o", mfc="none", color="k", label="least squares")
        for label, est, color in estimates:
            ax.plot(est[order, 0], pos, "o", color=color, ms=4, label=label)
        ax.set_yticks(pos, [levels[i] for i in order], fontsize=7)
        ax.set_xlabel(terms[0])
    ax.set_title(f"Shrinkage of {factor} coefficients")
    ax.legend(fontsize=8)
    return ax


def varcomp(fit, reml=None, ax=None):
    """Posterior histogram of every SD, correlation and sigma, the REML estimate as a red
    line.  Returns an array of Axes (one per parameter)."""
    plt = _plt()
    from .bayes.result import compare

    table = compare(fit, reml)
    table = table[table["class"] != "fixed"]
    n = len(table)
    if ax is None:
        cols = min(3, n)
        rows = int(np.ceil(n / cols))
        _, axes = plt.subplots(rows, cols, figsize=(3.3 * cols, 2.4 * rows), squeeze=False)
        axes = axes.ravel()
    else:
        axes = np.atleast_1d(ax).ravel()
        if len(axes) < n:
            raise ValueError(f"varcomp needs {n} axes, got {len(axes)}")
    post = fit.posterior
    for axis, (name, row) in zip(axes, table.iterrows(), strict=False):
        axis.hist(_draws_of(post, fit, name), bins=40, color="C0", alpha=0.7, density=True)
        axis.axvline(row["reml"], color="C3", lw=2, label="REML")
        axis.set_title(name, fontsize=9)
        axis.set_yticks([])
    for axis in axes[n:]:
        axis.set_visible(False)
    axes[0].legend(fontsize=8)
    return axes


def _draws_of(post, fit, name: str) -> np.ndarray:
    from .bayes.builder import cor_dims, cor_name

    if name == "sigma":
        return post["sigma"].to_numpy().ravel()
    var, inner = name[:-1].split("[", 1)
    if var.startswith("sd_"):
        factor = var[3:]
        return post[var].sel({f"{factor}_term": inner}).to_numpy().ravel()
    first, second = (p.strip() for p in inner.split(", ", 1))
    for group in fit.model.groups:
        for k in group.correlated_blocks():
            if cor_name(group, k) == var:
                d1, d2 = cor_dims(group, k)
                return post[var].sel({d1: first, d2: second}).to_numpy().ravel()
    raise KeyError(name)


def ppc(fit, num_pp_samples: int = 100, random_seed: int | None = 0, ax=None, **kwargs):
    """Posterior predictive check: draws ``fit.posterior_predictive()`` if needed, then
    ``az.plot_ppc`` of the response with ``num_pp_samples`` replicated data sets."""
    import arviz as az

    if "posterior_predictive" not in fit.idata.groups():
        fit.posterior_predictive(random_seed=random_seed)
    return az.plot_ppc(fit.idata, num_pp_samples=num_pp_samples, ax=ax,
                       random_seed=random_seed, **kwargs)
