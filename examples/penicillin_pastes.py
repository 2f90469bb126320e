"""Crossed (Penicillin: plate x sample) and nested (Pastes: cask within batch) factors.

Run: python examples/penicillin_pastes.py
"""

import matplotlib.pyplot as plt
from _common import OUTPUT, SAMPLING

import bayeslmm
from bayeslmm import plots

for name, formula in [("penicillin", "diameter ~ 1 + (1 | plate) + (1 | sample)"),
                      ("pastes", "strength ~ 1 + (1 | batch/cask)")]:
    data = bayeslmm.datasets.load(name)
    reml = bayeslmm.fit(formula, data, method="reml")
    print(reml.summary())
    fit = bayeslmm.fit(formula, data, **SAMPLING)
    print(f"\n{name}: REML vs posterior\n", fit.compare_reml().round(3).to_string(), "\n")
    factors = [g.factor for g in fit.model.groups]
    fig, axes = plt.subplots(1, len(factors), figsize=(5 * len(factors), 5))
    for ax, factor in zip(axes, factors, strict=True):
        plots.caterpillar(fit, factor, ax=ax)
    fig.tight_layout()
    fig.savefig(OUTPUT / f"{name}_caterpillar.png", dpi=80)
