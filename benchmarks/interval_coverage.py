"""Frequentist coverage of central 90% posterior intervals on simulated LMMs.

    python benchmarks/interval_coverage.py [--reps 20] [--draws 500]

Three designs (a correlated intercept/slope block, two crossed factors, a nested pair);
each replicate simulates data from known parameters, fits the default Bayesian model and
records whether every parameter's central 90% interval covers its true value.  Prints
coverage per design and parameter class with its binomial standard error.  With weakly
informative priors, coverage should be near 0.90 (it is not exact: the posterior is not a
confidence procedure, and SDs with few groups are pulled by the prior).
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import pandas as pd

import bayeslmm


def correlated_slopes(rng):
    groups, per = 30, 8
    beta, sd, cor, sigma = np.array([1.0, 0.5]), np.array([1.0, 0.4]), 0.3, 0.8
    cov = np.array([[1, cor], [cor, 1]]) * np.outer(sd, sd)
    u = rng.multivariate_normal([0, 0], cov, groups)
    g = np.repeat(np.arange(groups), per)
    x = rng.uniform(0, 4, groups * per)
    y = beta[0] + u[g, 0] + (beta[1] + u[g, 1]) * x + rng.normal(0, sigma, len(x))
    data = pd.DataFrame({"y": y, "x": x, "g": g})
    truth = {"b[Intercept]": 1.0, "b[x]": 0.5, "sd_g[Intercept]": 1.0, "sd_g[x]": 0.4,
             "cor_g[Intercept, x]": cor, "sigma": sigma}
    return "y ~ x + (x | g)", data, truth


def crossed(rng):
    na, nb = 20, 12
    a, b = np.meshgrid(np.arange(na), np.arange(nb), indexing="ij")
    a, b = a.ravel(), b.ravel()
    y = 2.0 + rng.normal(0, 0.8, na)[a] + rng.normal(0, 0.5, nb)[b] + rng.normal(0, 1, a.size)
    data = pd.DataFrame({"y": y, "a": a, "b": b})
    truth = {"b[Intercept]": 2.0, "sd_a[Intercept]": 0.8, "sd_b[Intercept]": 0.5,
             "sigma": 1.0}
    return "y ~ 1 + (1 | a) + (1 | b)", data, truth


def nested(rng):
    batches, casks, reps = 10, 4, 3
    batch = np.repeat(np.arange(batches), casks * reps)
    cask = np.tile(np.repeat(np.arange(casks), reps), batches)
    y = (5.0 + rng.normal(0, 1.0, batches)[batch]
         + rng.normal(0, 0.6, batches * casks)[batch * casks + cask]
         + rng.normal(0, 0.7, batch.size))
    data = pd.DataFrame({"y": y, "batch": batch, "cask": cask})
    truth = {"b[Intercept]": 5.0, "sd_batch[Intercept]": 1.0,
             "sd_batch:cask[Intercept]": 0.6, "sigma": 0.7}
    return "y ~ 1 + (1 | batch/cask)", data, truth


DESIGNS = {"correlated slope": correlated_slopes, "crossed": crossed, "nested": nested}


def interval_hits(fit, truth: dict, prob: float = 0.90) -> dict:
    table = fit.compare_reml(prob=prob)
    lo, hi = table.columns[4], table.columns[5]
    return {name: bool(table.loc[name, lo] <= value <= table.loc[name, hi])
            for name, value in truth.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=20)
    parser.add_argument("--draws", type=int, default=500)
    parser.add_argument("--seed", type=int, default=20261123)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    rows = []
    start = time.perf_counter()
    for design, make in DESIGNS.items():
        for rep in range(args.reps):
            formula, data, truth = make(rng)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                fit = bayeslmm.fit(formula, data, draws=args.draws, tune=args.draws, chains=2,
                                   random_seed=rep, progressbar=False)
            for name, hit in interval_hits(fit, truth).items():
                kind = name.split("[")[0].split("_")[0] if name != "sigma" else "sigma"
                rows.append((design, kind, name, hit))
            print(f"{design} {rep + 1}/{args.reps} ({time.perf_counter() - start:.0f} s)",
                  flush=True)
    frame = pd.DataFrame(rows, columns=["design", "class", "parameter", "covered"])
    print(f"\ncentral 90% interval coverage, {args.reps} replicates per design, "
          f"2 chains x {args.draws} draws")
    table = frame.groupby(["design", "class"])["covered"].agg(["mean", "count"])
    table["se"] = np.sqrt(0.9 * 0.1 / table["count"])
    print(table.round(3).to_string())
    overall = frame["covered"].mean()
    print(f"overall: {overall:.3f} over {len(frame)} intervals "
          f"(binomial se {np.sqrt(0.09 / len(frame)):.3f})")


if __name__ == "__main__":
    main()
