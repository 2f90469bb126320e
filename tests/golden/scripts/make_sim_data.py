"""Simulated data sets behind tests/golden/lme4_round2.json (run once; seeds fixed).

    python tests/golden/scripts/make_sim_data.py   # writes tests/golden/data/*.csv

small_slopes.csv: 60 data sets of ``y ~ x + (x | g)`` with 3-8 groups and 100 rows (the
    shape of bambi's ``data_random_n100`` fixture), where BOBYQA with a 0.1 first step
    stopped early (issue 10).
vcomp2.csv: statsmodels' ``test_vcomp_2`` model shape,
    ``y ~ x1 + x2 + (0 + z1 + z2 | groups) + (1 | v1) + (1 | v2)``.
kb07.csv: kb07-shaped maximal crossed design (56 subjects x 32 items, 1,790 rows, three
    +-1-coded within factors, 4 x 4 G per factor).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

OUT = Path(__file__).resolve().parents[1] / "data"


def small_slopes(rng: np.random.Generator) -> pd.DataFrame:
    frames = []
    for k in range(60):
        groups = int(rng.integers(3, 9))
        g = rng.integers(0, groups, 100)
        g[:groups] = np.arange(groups)  # every group present
        x = rng.normal(size=100)
        sd = rng.uniform(0.0, 1.5, 2)
        b = rng.normal(size=(groups, 2)) * sd
        y = 1.0 + 0.5 * x + b[g, 0] + b[g, 1] * x + rng.normal(size=100)
        frames.append(pd.DataFrame({"dataset": k, "g": [f"g{v}" for v in g], "x": x, "y": y}))
    return pd.concat(frames, ignore_index=True)


def vcomp2(rng: np.random.Generator) -> pd.DataFrame:
    n, groups, nv1, nv2 = 600, 30, 12, 8
    g = rng.integers(0, groups, n)
    v1, v2 = rng.integers(0, nv1, n), rng.integers(0, nv2, n)
    x1, x2, z1, z2 = rng.normal(size=(4, n))
    b = rng.normal(size=(groups, 2)) * [1.0, 0.6]
    y = (1 + 0.5 * x1 - 0.3 * x2 + b[g, 0] * z1 + b[g, 1] * z2
         + rng.normal(size=nv1)[v1] * 0.8 + rng.normal(size=nv2)[v2] * 0.5
         + rng.normal(size=n))
    return pd.DataFrame({"y": y, "x1": x1, "x2": x2, "z1": z1, "z2": z2,
                         "groups": [f"G{v}" for v in g], "v1": [f"a{v}" for v in v1],
                         "v2": [f"b{v}" for v in v2]})


def kb07(rng: np.random.Generator) -> pd.DataFrame:
    subj, item = np.meshgrid(np.arange(56), np.arange(32), indexing="ij")
    subj, item = subj.ravel(), item.ravel()
    # within-subject and within-item factors, +-1 coded, balanced Latin-square style (each
    # factor varies within every subject and within every item, as in kb07; until round 2
    # session 6 spkr was constant within items, leaving (1 + spkr | item) not identified)
    spkr = np.where(((item + subj) % 2) == 0, 1.0, -1.0)
    prec = np.where(((item // 2 + subj // 2) % 2) == 0, 1.0, -1.0)
    load = np.where(((item // 4 + subj // 4) % 2) == 0, 1.0, -1.0)
    design = np.column_stack([np.ones_like(spkr), spkr, prec, load])

    def effects(levels, sds, rho):
        cov = rho * np.outer(sds, sds) + (1 - rho) * np.diag(sds**2)
        return rng.multivariate_normal(np.zeros(4), cov, size=levels)

    bs = effects(56, np.array([300.0, 60.0, 40.0, 20.0]), 0.3)
    bi = effects(32, np.array([350.0, 50.0, 100.0, 30.0]), 0.2)
    beta = np.array([2180.0, 68.0, -330.0, 80.0])
    rt = (design @ beta + (design * bs[subj]).sum(1) + (design * bi[item]).sum(1)
          + rng.normal(scale=670.0, size=subj.size))
    frame = pd.DataFrame({"subj": [f"S{s:02d}" for s in subj], "item": [f"I{i:02d}" for i in item],
                          "spkr": spkr, "prec": prec, "load": load, "rt": rt})
    return frame.drop(index=[17, 1000]).reset_index(drop=True)  # 1,790 rows, as kb07


def main() -> None:
    OUT.mkdir(exist_ok=True)
    rng = np.random.default_rng(20261201)
    small_slopes(rng).to_csv(OUT / "small_slopes.csv", index=False)
    vcomp2(rng).to_csv(OUT / "vcomp2.csv", index=False)
    kb07(rng).to_csv(OUT / "kb07.csv", index=False)


if __name__ == "__main__":
    main()
