"""MovieLens-1M-shaped crossed random intercepts: REML (or Bayesian) time and peak memory.

    python benchmarks/movielens.py [--ratings 1000209] [--seed 1] [--bayes]

Simulated (seeded) with ML-1M's shape: 6,040 users x 3,706 movies, 1,000,209 ratings, every
user with at least 20 ratings and heavy-tailed activity (lognormal), movie popularity
Zipf-like; ``rating = 3.6 + u_user + m_movie + e`` (SDs 0.4, 0.5, 0.9) rounded and clipped to
1-5 as the real ratings are.  Fits ``rating ~ 1 + (1 | user) + (1 | movie)`` by REML and
prints wall seconds, evaluations, the peak resident memory of the process and the BLAS.

Peers (issue 10): lme4 took over 20 minutes on this shape here; MixedModels.jl reports
36.7 s for ml-1m on a 2018 desktop.  Target: <= 30 s and < 2 GB.

``--bayes``: the default Bayesian fit instead (``bayeslmm.fit(formula, data)``: REML start,
then the partial sampler on nutpie, 4 chains x 1000 draws after 1000 tuning steps, the users'
effects and the intercept drawn from their exact conditional afterwards), with its
diagnostics over every parameter (9,749 of them).  Target: <= 15 minutes within 4 GB.
"""

from __future__ import annotations

import argparse
import resource
import time
import warnings

import numpy as np
import pandas as pd
from _common import blas_info

import bayeslmm

N_USERS, N_MOVIES, N_RATINGS = 6040, 3706, 1_000_209


def simulate(n_ratings: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    activity = rng.lognormal(0.0, 1.1, N_USERS)
    counts = 20 + np.floor(activity / activity.sum() * (n_ratings - 20 * N_USERS)).astype(int)
    counts = np.minimum(counts, N_MOVIES)                    # nobody rates a movie twice
    while counts.sum() < n_ratings:                          # exactly n_ratings in all
        room = np.flatnonzero(counts < N_MOVIES)
        counts[room[: n_ratings - counts.sum()]] += 1
    popularity = 1.0 / np.arange(1, N_MOVIES + 1) ** 0.9
    popularity /= popularity.sum()
    users = np.repeat(np.arange(N_USERS), counts)
    movies = np.concatenate([rng.choice(N_MOVIES, size=c, replace=False, p=popularity)
                             for c in counts])
    u = rng.normal(0.0, 0.4, N_USERS)
    m = rng.normal(0.0, 0.5, N_MOVIES)
    rating = np.clip(np.round(3.6 + u[users] + m[movies] + rng.normal(0.0, 0.9, users.size)),
                     1, 5)
    return pd.DataFrame({"rating": rating, "user": users.astype(str),
                         "movie": movies.astype(str)})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ratings", type=int, default=N_RATINGS)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--bayes", action="store_true", help="the default Bayesian fit")
    parser.add_argument("--draws", type=int, default=1000, help="with --bayes (tune alike)")
    args = parser.parse_args()
    print(f"BLAS: {blas_info()}")
    start = time.perf_counter()
    data = simulate(args.ratings, args.seed)
    print(f"simulated {len(data):,} ratings, {data['user'].nunique():,} users x "
          f"{data['movie'].nunique():,} movies in {time.perf_counter() - start:.1f} s")
    if args.bayes:
        bayes(data, args.draws)
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        start = time.perf_counter()
        fit = bayeslmm.fit("rating ~ 1 + (1 | user) + (1 | movie)", data, method="reml")
        wall = time.perf_counter() - start
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    sds = fit.varcorr
    print("\n| model | rows | bayeslmm REML s | evals | peak RSS GB | target |")
    print("|---|---|---|---|---|---|")
    print(f"| (1 | user) + (1 | movie) | {len(data):,} | {wall:.1f} | {fit.n_evals} | "
          f"{peak_gb:.2f} | <= 30 s, < 2 GB |")
    print(f"\nREML criterion {fit.reml_criterion:.4f}; estimates:\n{sds}")


def bayes(data: pd.DataFrame, draws: int) -> None:
    """The default Bayesian fit, timed from the formula to the result, and its diagnostics."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        start = time.perf_counter()
        fit = bayeslmm.fit("rating ~ 1 + (1 | user) + (1 | movie)", data, draws=draws,
                           tune=draws, random_seed=1, progressbar=False)
        wall = time.perf_counter() - start
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    diag = fit.diagnostics()
    stats = fit.idata.sample_stats
    steps = float(stats["n_steps"].mean()) if "n_steps" in stats else float("nan")
    print("\n| model | sampler | wall s | peak RSS GB | min bulk ESS | max R-hat | divergences "
          "| steps/draw | target |")
    print("|---|---|---|---|---|---|---|---|---|")
    print(f"| (1 | user) + (1 | movie) | {fit.sampler} | {wall:.0f} | {peak_gb:.2f} | "
          f"{diag['min_ess_bulk']:.0f} | {diag['max_rhat']:.3f} | {diag['divergences']} | "
          f"{steps:.1f} | <= 900 s, < 4 GB |")
    for w in caught:
        print(f"warning: {w.message}")
    reml = fit.model.fit_reml()  # the start, already fitted: posterior means beside it
    print("posterior means:", fit.posterior[["sd_user", "sd_movie", "sigma"]].mean()
          .to_pandas().round(4).to_dict())
    print(f"REML:\n{reml.varcorr}")


if __name__ == "__main__":
    main()
