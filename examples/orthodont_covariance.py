"""The classic growth-curve comparison on Potthoff & Roy's data (nlme::Orthodont): mean
structure x residual covariance, by deviance and parameter count.

Mean structures: one common line (distance ~ age), a line per sex (distance ~ age * Sex) and
a line per child (distance ~ 0 + Subject + Subject:age).  Residual covariance within a child
(4 ages): scalar sigma^2 I, diagonal (a variance per age) and free (unstructured); and, instead
of a structured Sigma, random coefficients (age | Subject) with scalar or diagonal residuals.
All fits are ML so that models with different mean structures compare (REML criteria of
different X do not).  Prints the deviance table and the free Sigma of the by-sex model, and
saves a deviance-vs-parameters plot.

Run: python examples/orthodont_covariance.py
"""

import warnings

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from _common import OUTPUT

import bayeslmm

data = bayeslmm.datasets.load("orthodont")
means = {"common": "distance ~ age", "by sex": "distance ~ age * Sex",
         "per child": "distance ~ 0 + Subject + Subject:age"}
sigmas = {"scalar": None, "diagonal": "diag(age | Subject)", "free": "us(age | Subject)"}
rows = []


def add(mean, sigma, random, formula, residual):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit = bayeslmm.fit(formula, data, method="ml", residual=residual)
    # a line per child fits two of a child's four points exactly, so a variance per age can
    # go to 0: the likelihood is unbounded there, and bayeslmm says so instead of a number
    degenerate = any("degenerate" in str(w.message) for w in caught)
    rows.append((mean, sigma, random, fit.n_params,
                 np.nan if degenerate else fit.deviance, np.nan if degenerate else fit.aic,
                 "unbounded likelihood" if degenerate else ""))


for mean, formula in means.items():
    for sigma, residual in sigmas.items():
        add(mean, sigma, "none", formula, residual)
    if mean != "per child":  # per-child lines leave nothing for random coefficients
        for sigma, residual in (("scalar", None), ("diagonal", "diag(age | Subject)")):
            add(mean, sigma, "(age | Subject)", formula + " + (age | Subject)", residual)
table = pd.DataFrame(rows, columns=["mean", "Sigma", "random", "n_params", "deviance", "AIC",
                                    "note"])
print("ML deviance (-2 log L) by mean structure and covariance model:")
print(table.to_string(index=False, float_format=lambda v: f"{v:.2f}"))

free = bayeslmm.fit(means["by sex"], data, method="reml", residual="us(age | Subject)")
print("\nFree Sigma of the by-sex model (REML), occasion x occasion:")
print(free.residual_cov().round(3).to_string())
print("\nIts parameters:")
print(free.residual_structure.round(4).to_string())

fig, ax = plt.subplots(figsize=(7, 4.5))
for (mean, group), marker in zip(table.groupby("mean", sort=False), "os^", strict=True):
    ax.scatter(group.n_params, group.deviance, marker=marker, label=mean)
    for _, row in group.iterrows():
        label = row.Sigma + ("+RE" if row.random != "none" else "")
        ax.annotate(label, (row.n_params, row.deviance), fontsize=7, xytext=(3, 3),
                    textcoords="offset points")
ax.set_xlabel("number of parameters")
ax.set_ylabel("ML deviance")
ax.legend(title="mean structure", fontsize=8)
fig.tight_layout()
fig.savefig(OUTPUT / "orthodont_covariance.png", dpi=80)
print("saved", OUTPUT / "orthodont_covariance.png")
