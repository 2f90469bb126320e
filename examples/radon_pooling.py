"""Radon in Minnesota homes (Gelman & Hill): no pooling, complete pooling, partial pooling.

log_radon ~ floor + (1 | county): 85 counties with 1 to 116 homes each.  No pooling fits
each county's own intercept; complete pooling ignores counties; the mixed model shrinks
small counties toward the state mean.

Run: python examples/radon_pooling.py
"""

import matplotlib.pyplot as plt
import numpy as np
from _common import OUTPUT, SAMPLING

import bayeslmm

data = bayeslmm.datasets.load("radon")
counts = data.county.value_counts().sort_index()

# complete pooling: one regression for the state
X = np.column_stack([np.ones(len(data)), data.floor])
pooled = np.linalg.lstsq(X, data.log_radon, rcond=None)[0]
# no pooling: a county intercept each, common floor effect
county_dummies = np.eye(len(counts))[data.county.cat.codes]
unpooled = np.linalg.lstsq(np.column_stack([county_dummies, data.floor]), data.log_radon,
                           rcond=None)[0][:-1]
# partial pooling
fit = bayeslmm.fit("log_radon ~ floor + (1 | county)", data, **SAMPLING)
print(fit.compare_reml().round(3).to_string())
post = fit.posterior
partial = (post["b"].sel(coef="Intercept") + post["r_county"].sel(county_term="Intercept"))
partial_mean = partial.mean(("chain", "draw")).to_numpy()
partial_sd = partial.std(("chain", "draw")).to_numpy()

fig, ax = plt.subplots(figsize=(8, 5))
n = counts.to_numpy()
ax.scatter(n, unpooled, s=12, color="k", label="no pooling")
ax.errorbar(n * 1.05, partial_mean, partial_sd, fmt="o", ms=3, color="C1", alpha=0.7,
            label="partial pooling (posterior mean ± sd)")
ax.axhline(pooled[0], color="C0", label="complete pooling")
ax.set_xscale("log")
ax.set_xlabel("homes measured in the county")
ax.set_ylabel("county intercept (log radon, basement)")
ax.legend(fontsize=8)
fig.tight_layout()
fig.savefig(OUTPUT / "radon_pooling.png", dpi=80)
small = n <= 2
print(f"counties with <= 2 homes: spread of no-pooling estimates {np.std(unpooled[small]):.2f}, "
      f"of partial-pooling estimates {np.std(partial_mean[small]):.2f}")
