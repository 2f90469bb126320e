"""Sleep deprivation (lme4::sleepstudy): REML vs Bayes, posterior predictive check, LOO.

Run: python examples/sleepstudy.py
"""

import arviz as az
import matplotlib.pyplot as plt
from _common import OUTPUT, SAMPLING

import bayeslmm
from bayeslmm import plots

data = bayeslmm.datasets.load("sleepstudy")
formula = "Reaction ~ Days + (Days | Subject)"

reml = bayeslmm.fit(formula, data, method="reml")
print(reml.summary())

fit = bayeslmm.fit(formula, data, **SAMPLING)
print(fit)
print("\nREML vs posterior\n", fit.compare_reml().round(3).to_string())

# posterior predictive check
plots.ppc(fit, num_pp_samples=50)
plt.savefig(OUTPUT / "sleepstudy_ppc.png", dpi=80)

# random effects and shrinkage
fig, axes = plt.subplots(1, 2, figsize=(11, 5))
plots.caterpillar(fit, "Subject", "Days", ax=axes[0])
plots.shrinkage(fit, reml, ax=axes[1])
fig.tight_layout()
fig.savefig(OUTPUT / "sleepstudy_effects.png", dpi=80)
plots.varcomp(fit, reml)
plt.savefig(OUTPUT / "sleepstudy_varcomp.png", dpi=80)

# LOO: random intercept vs independent slope vs correlated slope
fits = {
    "(1 | Subject)": bayeslmm.fit("Reaction ~ Days + (1 | Subject)", data, **SAMPLING),
    "(Days || Subject)": bayeslmm.fit("Reaction ~ Days + (Days || Subject)", data, **SAMPLING),
    "(Days | Subject)": fit,
}
comparison = az.compare({name: f.idata for name, f in fits.items()})
print("\nLOO comparison\n", comparison[["rank", "elpd_loo", "p_loo", "elpd_diff", "dse"]])
