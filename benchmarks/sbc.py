"""Simulation-based calibration (Talts et al. 2018) of the marginal sampler.

    python benchmarks/sbc.py [--reps 100] [--draws 500] [--bins 10]

Model: y ~ x + (1 + x | g1) + (1 | g2), 15 x 8 crossed levels, 2 rows per cell, with fixed
(data-independent) priors.  Each replicate draws every parameter from its prior, simulates y,
fits with the marginal sampler (2 chains), thins to L = 99 draws and records the rank of the
true value among them.  If the sampler is right the ranks are uniform: the script prints each
parameter's rank histogram and the chi-square p-value of uniformity.
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import pandas as pd
from scipy import stats

from bayeslmm.bayes import LKJ, HalfNormal, Model, Normal

PRIORS = {"Intercept": Normal(0, 2), "x": Normal(0, 1), "sd": HalfNormal(1), "cor": LKJ(2),
          "sigma": HalfNormal(1)}
N1, N2, REPS_PER_CELL = 15, 8, 2


def design(rng) -> pd.DataFrame:
    g1, g2 = np.meshgrid(np.arange(N1), np.arange(N2), indexing="ij")
    g1 = np.repeat(g1.ravel(), REPS_PER_CELL)
    g2 = np.repeat(g2.ravel(), REPS_PER_CELL)
    return pd.DataFrame({"x": rng.uniform(-1, 2, g1.size), "g1": g1, "g2": g2})


def lkj_draw(eta: float, rng) -> float:
    """Correlation of a 2 x 2 LKJ(eta) matrix: (r + 1) / 2 ~ Beta(eta, eta)."""
    return 2 * rng.beta(eta, eta) - 1


def simulate(data: pd.DataFrame, rng) -> tuple[np.ndarray, dict]:
    xc = data.x - data.x.mean()
    alpha, slope = rng.normal(0, 2), rng.normal(0, 1)
    sd1 = np.abs(rng.normal(0, 1, 2))
    cor = lkj_draw(2.0, rng)
    sd2, sigma = abs(rng.normal(0, 1)), abs(rng.normal(0, 1))
    cov = np.array([[1, cor], [cor, 1]]) * np.outer(sd1, sd1)
    u1 = rng.multivariate_normal([0, 0], cov, N1)
    u2 = rng.normal(0, sd2, N2)
    y = (alpha + slope * xc + u1[data.g1, 0] + u1[data.g1, 1] * data.x + u2[data.g2]
         + rng.normal(0, sigma, len(data)))
    truth = {"b[Intercept]": alpha - slope * data.x.mean(), "b[x]": slope,
             "sd_g1[Intercept]": sd1[0], "sd_g1[x]": sd1[1], "cor_g1": cor,
             "sd_g2[Intercept]": sd2, "sigma": sigma}
    return np.asarray(y), truth


def posterior_draws(fit) -> dict[str, np.ndarray]:
    post = fit.posterior
    flat = {
        "b[Intercept]": post["b"].sel(coef="Intercept"), "b[x]": post["b"].sel(coef="x"),
        "sd_g1[Intercept]": post["sd_g1"].sel(g1_term="Intercept"),
        "sd_g1[x]": post["sd_g1"].sel(g1_term="x"),
        "cor_g1": post["cor_g1"].sel(g1_term="Intercept", g1_term_2="x"),
        "sd_g2[Intercept]": post["sd_g2"].sel(g2_term="Intercept"), "sigma": post["sigma"],
    }
    return {k: v.to_numpy().reshape(-1) for k, v in flat.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=100)
    parser.add_argument("--draws", type=int, default=500)
    parser.add_argument("--bins", type=int, default=10)
    parser.add_argument("--seed", type=int, default=2018)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    thin_to = 99
    ranks: dict[str, list[int]] = {}
    start = time.perf_counter()
    for rep in range(args.reps):
        data = design(rng)
        data["y"], truth = simulate(data, rng)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = Model("y ~ x + (1 + x | g1) + (1 | g2)", data, priors=PRIORS)
            fit = model.fit(draws=args.draws, tune=args.draws, chains=2, random_seed=rep,
                            progressbar=False, sampler="marginal", log_likelihood=False)
        draws = posterior_draws(fit)
        for name, value in truth.items():
            values = draws[name]
            keep = values[np.linspace(0, len(values) - 1, thin_to).astype(int)]
            ranks.setdefault(name, []).append(int((keep < value).sum()))
        print(f"replicate {rep + 1}/{args.reps} ({time.perf_counter() - start:.0f} s)",
              flush=True)
    print(f"\nSBC of the marginal sampler: {args.reps} replicates, ranks among {thin_to} "
          f"thinned draws (2 chains x {args.draws}), {args.bins} bins")
    print(f"{'parameter':18s} {'chi2 p':>7s}  histogram")
    for name, values in ranks.items():
        counts = np.histogram(values, bins=args.bins, range=(0, thin_to + 1))[0]
        p_value = stats.chisquare(counts).pvalue
        print(f"{name:18s} {p_value:7.3f}  {' '.join(f'{c:2d}' for c in counts)}")


if __name__ == "__main__":
    main()
