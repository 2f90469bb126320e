"""InstEval (lme4): 73,421 lecture ratings, 2,972 students x 1,128 lecturers, crossed.

REML fit of the full crossed model (seconds; lme4 takes about 20 s on the same machine), and
a Bayesian fit of all 73,421 rows with the lecturer and department-by-service effects (the
marginal sampler integrates the 1,156 random effects and the fixed effects out, so NUTS walks
3 dimensions).  The Bayesian fit of the full crossed model with students is the subject of
the issue "Fast Bayesian inference": full NUTS over 4,128 effects needs ~1,000 leapfrog steps
per draw here.

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

formula = "y ~ 1 + service + (1 | d) + (1 | dept:service)"
start = time.perf_counter()
fit = bayeslmm.fit(formula, data, draws=DRAWS, tune=DRAWS, chains=4 if DRAWS >= 500 else 2,
                   random_seed=1, progressbar=False, log_likelihood=False)
print(f"\nBayesian fit of {formula!r} ({fit.sampler} sampler, {DRAWS} draws per chain): "
      f"{time.perf_counter() - start:.1f} s")
print(fit.compare_reml().round(4).to_string())
