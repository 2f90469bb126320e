"""Orthodontic growth curves (Potthoff & Roy; nlme::Orthodont), after de Leeuw's analysis.

distance ~ age * Sex + (age | Subject): each child's own least-squares line against the
REML (BLUP) line and the posterior-mean line, one panel per sex: the mixed model pulls each
child's line toward the sex-specific mean curve, most for children whose own line is noisy.

Run: python examples/orthodont_growth.py
"""

import matplotlib.pyplot as plt
import numpy as np
from _common import OUTPUT, SAMPLING

import bayeslmm

data = bayeslmm.datasets.load("orthodont")
formula = "distance ~ age * Sex + (age | Subject)"
reml = bayeslmm.fit(formula, data, method="reml")
print(reml.summary())
fit = bayeslmm.fit(formula, data, **SAMPLING)
print(fit.compare_reml().round(3).to_string())

ages = np.array([8.0, 14.0])
post = fit.posterior
b = post["b"].mean(("chain", "draw")).to_series()
r = post["r_Subject"].mean(("chain", "draw")).to_pandas()
blup = reml.ranef["Subject"]
fe = reml.fixef

fig, axes = plt.subplots(1, 2, figsize=(11, 4.5), sharey=True)
for ax, sex in zip(axes, ["Male", "Female"], strict=True):
    female = float(sex == "Female")
    for subject, rows in data[data.Sex == sex].groupby("Subject", observed=True):
        slope, intercept = np.polyfit(rows.age, rows.distance, 1)
        ax.plot(ages, intercept + slope * ages, color="grey", lw=0.8, alpha=0.6)
        s = str(subject)
        i_reml = fe["Intercept"] + fe["Sex[Female]"] * female + blup.loc[s, "Intercept"]
        s_reml = fe["age"] + fe["age:Sex[Female]"] * female + blup.loc[s, "age"]
        ax.plot(ages, i_reml + s_reml * ages, color="C0", lw=0.8)
        i_post = b["Intercept"] + b["Sex[Female]"] * female + r.loc[s, "Intercept"]
        s_post = b["age"] + b["age:Sex[Female]"] * female + r.loc[s, "age"]
        ax.plot(ages, i_post + s_post * ages, color="C1", lw=0.8, ls="--")
    mean_i = fe["Intercept"] + fe["Sex[Female]"] * female
    mean_s = fe["age"] + fe["age:Sex[Female]"] * female
    ax.plot(ages, mean_i + mean_s * ages, color="k", lw=2.5)
    ax.set_title(f"{sex}: least squares (grey), BLUP (blue), posterior mean (orange dashed)",
                 fontsize=8)
    ax.set_xlabel("age (years)")
axes[0].set_ylabel("distance (mm)")
fig.tight_layout()
fig.savefig(OUTPUT / "orthodont_shrinkage.png", dpi=80)
print("saved", OUTPUT / "orthodont_shrinkage.png")
