"""InstEval (lme4): 73,421 lecture ratings, 2,972 students x 1,128 lecturers, crossed.

REML fit (seconds; lme4 takes about 20 s on the same machine) and a Bayesian fit, timed.

Run: python examples/insteval.py
"""

import time

from _common import DRAWS

import bayeslmm

data = bayeslmm.datasets.load("insteval")
formula = "y ~ 1 + service + (1 | s) + (1 | d) + (1 | dept:service)"
start = time.perf_counter()
reml = bayeslmm.fit(formula, data, method="reml")
print(reml.summary())
print(f"\nREML: {time.perf_counter() - start:.1f} s ({reml.n_evals} criterion evaluations)")

draws = min(DRAWS, 200)
start = time.perf_counter()
fit = bayeslmm.fit(formula, data, draws=draws, tune=draws, chains=2, random_seed=1,
                   progressbar=False, log_likelihood=False)
print(f"\nBayesian fit (full NUTS over 4,128 random effects, 2 chains x {draws} draws): "
      f"{time.perf_counter() - start:.1f} s")
print(fit.compare_reml().round(4).to_string())
