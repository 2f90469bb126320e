"""InstEval (lme4): 73,421 lecture ratings, 2,972 students x 1,128 lecturers, crossed.

REML fit of the full crossed model (seconds; lme4 takes about 20 s on the same machine), then
the Bayesian fit of the same model.  It runs on the "partial" sampler: the fixed effects and
the 2,972 student effects are integrated out exactly, NUTS (nutpie) walks the 1,156 lecturer
and department-by-service effects and the 4 covariance parameters (~15 leapfrog steps per
draw; full NUTS over all 4,128 effects needs ~1,000), and the student effects are drawn from
their exact conditional afterwards.  4 chains x 1000 draws take about 3 minutes on 2
cores.

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

start = time.perf_counter()
fit = bayeslmm.fit(formula, data, draws=DRAWS, tune=DRAWS, chains=4 if DRAWS >= 500 else 2,
                   random_seed=1, progressbar=False)
print(f"\nBayesian fit ({fit.sampler} sampler, {DRAWS} draws per chain): "
      f"{time.perf_counter() - start:.1f} s")
print(fit.compare_reml().round(4).to_string())
print("\nhighest-rated lecturers (posterior mean of their effect):")
lecturers = fit.posterior["r_d"].sel(d_term="Intercept").mean(("chain", "draw"))
print(lecturers.to_series().sort_values(ascending=False).head(5).round(3).to_string())
