"""Bayesian InstEval: the whole fit on this machine, one run, printed as a table.

    python benchmarks/bayes_insteval.py [--draws 1000] [--chains 4] [--lme4] [--dept]

``y ~ 1 + service + (1|s) + (1|d) + (1|dept:service)`` (73,421 rows, 4,128 random effects)
with the default sampler (``"partial"`` on nutpie: beta and the 2,972 student effects
integrated out, NUTS over the covariance parameters and the 1,156 other effects): wall time
of ``fit()``, peak memory of the process, divergences, worst R-hat, smallest bulk ESS, mean
leapfrog steps, and each SD's and sigma's posterior mean beside the REML estimate.
``--lme4`` also times ``lmer`` (REML) on the same data, for scale: a frequentist fit, not a
posterior (full NUTS needs ~1,000 steps per draw here).  ``--dept`` fits MixedModels.jl's
InstEval model ``y ~ 1 + service + (1|s) + (1|d) + (1 + service|dept)`` instead: the
partial sampler keeps the lecturers' effects and integrates out a correlated 2 x 2 block per
department (``--keep-small``: keeps it too, the A/B of that choice).

``--grid`` checks sd(dept:service), the one SD whose posterior mean is far from REML (28
levels: a skewed posterior), independently of any sampler: the exact marginal likelihood
(all 4,128 effects and beta integrated out, the numpy reference ``MarginalStructure``, dense
1,159 x 1,159 system, ~1 s per point) times its prior on a grid, with the other SDs and
sigma fixed at their posterior means (their posteriors are ~2% wide).
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import time
import warnings

import bayeslmm

FORMULA = "y ~ 1 + service + (1 | s) + (1 | d) + (1 | dept:service)"
# --dept: MixedModels.jl's InstEval model, a correlated 2 x 2 block per department
DEPT_FORMULA = "y ~ 1 + service + (1 | s) + (1 | d) + (1 + service | dept)"

LME4 = """
suppressMessages(library(lme4))
d <- read.csv(gzfile("{csv}"), colClasses = c(s = "factor", d = "factor", dept = "factor",
              service = "factor"))
t <- system.time(m <- lmer(y ~ 1 + service + (1|s) + (1|d) + (1|dept:service), d))
cat(t[["elapsed"]], "\\n")
"""


def grid_check(fit) -> tuple[float, float, float]:
    """Posterior mean, sd and mode of sd(dept:service) on a grid (see the module docstring)."""
    import numpy as np
    from scipy import stats

    from bayeslmm.bayes import marginal

    marginal.MAX_REST = 2000  # the sampler's limit; a dense 1,159 system is fine for a check
    model = fit.model
    structure = marginal.MarginalStructure(model.spec)
    mu0, inv_scale = structure.prior_arrays(model.priors)
    post = {name: float(fit.posterior[name].mean()) for name in ("sd_s", "sd_d", "sigma")}
    prior = model.priors.sd["dept:service"]["Intercept"]
    grid = np.linspace(0.04, 0.26, 45)
    logp = []
    for value in grid:
        sd_rest = [post["sd_d"] if b.factor == "d" else value for b in structure.blocks[1:]]
        loglik = structure.logp_and_grad(np.array([[post["sd_s"]]]), np.array(sd_rest),
                                         post["sigma"], mu0, inv_scale)[0]
        logp.append(loglik + stats.t(prior.nu, scale=prior.sigma).logpdf(value))
    weights = np.exp(np.array(logp) - max(logp))
    weights /= weights.sum()
    mean = float((weights * grid).sum())
    return mean, float(np.sqrt((weights * (grid - mean) ** 2).sum())), float(
        grid[np.argmax(logp)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--lme4", action="store_true", help="also time lmer (needs R + lme4)")
    parser.add_argument("--grid", action="store_true", help="grid check of sd(dept:service)")
    parser.add_argument("--dept", action="store_true",
                        help=f"fit {DEPT_FORMULA!r} instead (2 x 2 department block)")
    parser.add_argument("--keep-small", action="store_true",
                        help="A/B: NUTS keeps the small blocks' effects too (as before "
                             "round 2 session 9) instead of integrating them out")
    args = parser.parse_args()
    if args.keep_small:
        from bayeslmm.bayes import partial

        partial.choose_integrated = lambda *a, **k: set()
    formula = DEPT_FORMULA if args.dept else FORMULA
    if args.dept and args.grid:
        parser.error("--grid checks sd(dept:service) of the default formula")
    data = bayeslmm.datasets.load("insteval")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        start = time.perf_counter()
        fit = bayeslmm.fit(formula, data, draws=args.draws, tune=args.draws,
                           chains=args.chains, random_seed=args.seed, progressbar=False)
        wall = time.perf_counter() - start
        diag = fit.diagnostics()
        table = fit.compare_reml()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    steps = float(fit.idata.sample_stats["n_steps"].mean())
    integrated = [b.factor for b in fit.model.partial_structure().integrated]
    print(f"InstEval {formula!r}, {args.chains} chains x {args.draws} draws "
          f"(tune {args.draws}), sampler {fit.sampler!r}, integrated with the first factor: "
          f"{integrated or 'none'}")
    print(f"fit() wall {wall:.1f} s, peak RSS {peak:.0f} MB, divergences "
          f"{diag['divergences']}, max R-hat {diag['max_rhat']:.3f}, min bulk ESS "
          f"{diag['min_ess_bulk']:.0f}, {steps:.1f} leapfrog steps per draw")
    rows = table[table["class"].isin(["sd", "cor", "sigma"])]
    print(f"{'parameter':30s} {'REML':>9s} {'post. mean':>10s} {'rel. diff':>9s} "
          f"{'post. sd':>9s}")
    for name, row in rows.iterrows():
        rel = row["mean"] / row["reml"] - 1
        print(f"{name:30s} {row['reml']:9.4f} {row['mean']:10.4f} {rel:9.2%} {row['sd']:9.4f}")
    if args.grid:
        mean, sd, mode = grid_check(fit)
        print(f"grid posterior of sd_dept:service given the other parameters: mean {mean:.4f}, "
              f"sd {sd:.4f}, mode {mode:.4f}")
    if args.lme4:
        csv = str(bayeslmm.datasets.__path__[0]) + "/data/insteval.csv.gz"
        out = subprocess.run(["Rscript", "-e", LME4.format(csv=csv)], capture_output=True,
                             text=True)
        print(f"lme4 lmer (REML) on the same data: {out.stdout.strip() or out.stderr[-300:]} s")


if __name__ == "__main__":
    main()
