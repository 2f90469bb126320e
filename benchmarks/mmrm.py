"""Unstructured MMRM speed, bayeslmm vs glmmTMB and nlme's gls, same data, one run.

    python benchmarks/mmrm.py [--no-r] [--no-bayes] [--gls-max-rows 10000]

Two data sets simulated like the mmrm package's benchmarks (seeded, written to a temporary
directory and read by both sides): an FEV-shaped one (200 subjects x 4 visits = 800 rows)
and a BCVA-shaped one (1,000 subjects x 10 visits = 10,000 rows), each with about 10% of the
visits missing at random, two arms, a three-level race, sex and a baseline covariate:

    y ~ race + sex + base + arm * visit,   residual = us(visit | id)

bayeslmm: ``bayeslmm.fit(..., method="reml", residual="us(visit | id)")``.  glmmTMB:
``y ~ ... + us(visit + 0 | id), dispformula = ~ 0, REML = TRUE`` (how mmrm's benchmarks and
glmmTMB's docs fit an MMRM).  gls: ``correlation = corSymm(form = ~ vnum | id), weights =
varIdent(form = ~ 1 | visit)``.  Prints wall seconds, the REML log likelihood of each, the
speed ratio, and the BLAS that ran; then the Bayesian fit of the same model
(``bayeslmm.fit(..., residual="us(visit | id)")`` with each sampler, marginal and full, 4
chains x 1000 draws after 1000 tuning
steps, the REML start included) with its min bulk ESS, divergences and worst R-hat.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from _common import blas_info

import bayeslmm

ROOT = Path(__file__).resolve().parents[1]
SHAPES = {"fev": (200, 4), "bcva": (1000, 10)}
FORMULA = "y ~ race + sex + base + arm * visit"


def simulate(n_subjects: int, n_visits: int, seed: int) -> pd.DataFrame:
    """An MMRM data set: unstructured AR-like correlation with rising SDs."""
    rng = np.random.default_rng(seed)
    visits = [f"VIS{k:02d}" for k in range(1, n_visits + 1)]
    ids = np.repeat(np.arange(n_subjects), n_visits)
    vnum = np.tile(np.arange(1, n_visits + 1), n_subjects)
    arm = rng.integers(0, 2, n_subjects)[ids]
    race = rng.choice(["Asian", "Black", "White"], n_subjects)[ids]
    sex = rng.choice(["F", "M"], n_subjects)[ids]
    base = rng.normal(50, 10, n_subjects)[ids]
    lags = np.abs(np.subtract.outer(np.arange(n_visits), np.arange(n_visits)))
    sds = np.linspace(2.0, 4.0, n_visits)
    cov = np.outer(sds, sds) * (0.5 ** (lags / 2.0) * 0.8 + 0.2 * (lags == 0))
    noise = (rng.standard_normal((n_subjects, n_visits)) @ np.linalg.cholesky(cov).T).ravel()
    y = (20 + 0.3 * base + 0.5 * vnum + 0.4 * arm * vnum + (race == "Black") * 1.0
         + (sex == "M") * 0.5 + noise)
    frame = pd.DataFrame({"id": [f"P{i:04d}" for i in ids], "visit": [visits[v - 1] for v in vnum],
                          "vnum": vnum, "arm": np.where(arm == 1, "TRT", "PBO"), "race": race,
                          "sex": sex, "base": base, "y": y})
    keep = rng.random(len(frame)) > 0.10
    return frame[keep].reset_index(drop=True)


def read(path: Path) -> pd.DataFrame:
    """A simulated data set as both sides read it (visits as an ordered categorical)."""
    data = pd.read_csv(path)
    data["visit"] = pd.Categorical(data["visit"], sorted(data["visit"].unique()))
    return data


def ours(path: Path) -> dict:
    data = read(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        start = time.perf_counter()
        fit = bayeslmm.fit(FORMULA, data, method="reml", residual="us(visit | id)")
        wall = time.perf_counter() - start
    return {"wall": wall, "loglik": fit.loglik, "evals": fit.n_evals, "ok": fit.converged}


def bayes(path: Path) -> list[dict]:
    """The Bayesian fit with each sampler (marginal: beta integrated out; full), and which
    one ``sampler="auto"`` takes."""
    data = read(path)
    out = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        auto = bayeslmm.Model(FORMULA, data, residual="us(visit | id)").choose_sampler()
        for sampler in ("marginal", "full"):
            start = time.perf_counter()
            fit = bayeslmm.fit(FORMULA, data, residual="us(visit | id)", draws=1000,
                               tune=1000, chains=4, random_seed=1, progressbar=False,
                               sampler=sampler)
            wall = time.perf_counter() - start
            d = fit.diagnostics()
            steps = float(fit.idata.sample_stats["n_steps"].mean())
            out.append({"sampler": sampler + (" (auto)" if sampler == auto else ""),
                        "wall": wall, "ess": d["min_ess_bulk"], "div": d["divergences"],
                        "rhat": d["max_rhat"], "steps": steps})
    return out


def peers(path: Path, with_gls: bool) -> dict:
    res = subprocess.run(["Rscript", str(ROOT / "benchmarks" / "r" / "mmrm_peers.R"), str(path),
                          "1" if with_gls else "0"], capture_output=True, text=True)
    if res.returncode != 0:
        print("R failed:", res.stderr[-1500:])
        return {}
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-r", action="store_true", help="skip glmmTMB and gls")
    parser.add_argument("--no-bayes", action="store_true", help="skip the Bayesian fits")
    parser.add_argument("--gls-max-rows", type=int, default=10_000,
                        help="run gls only on data sets up to this many rows")
    args = parser.parse_args()
    print(f"BLAS: {blas_info()}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, (n_sub, n_vis) in SHAPES.items():
            path = Path(tmp) / f"{name}.csv"
            data = simulate(n_sub, n_vis, seed=11)
            data.to_csv(path, index=False)
            mine = ours(path)
            other = {} if args.no_r else peers(path, len(data) <= args.gls_max_rows)
            posterior = None if args.no_bayes else bayes(path)
            rows.append((name, len(data), mine, other, posterior))
    print("\n| data | rows | bayeslmm s | evals | glmmTMB s | gls s | glmmTMB/ours | "
          "logLik ours | logLik - glmmTMB | logLik - gls |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, n, mine, other, _posterior in rows:
        tmb, gls = other.get("glmmtmb", {}), other.get("gls", {})
        ratio = tmb["wall"] / mine["wall"] if tmb else float("nan")
        print(f"| {name} | {n} | {mine['wall']:.2f} | {mine['evals']} | "
              f"{tmb.get('wall', float('nan')):.2f} | {gls.get('wall', float('nan')):.2f} | "
              f"{ratio:.1f} | {mine['loglik']:.4f} | "
              f"{mine['loglik'] - tmb.get('loglik', float('nan')):.2e} | "
              f"{mine['loglik'] - gls.get('loglik', float('nan')):.2e} |")
    if not args.no_bayes:
        print("\n| data | sampler | Bayesian s | min bulk ESS | ESS/s | divergences | max R-hat "
              "| steps/draw |")
        print("|---|---|---|---|---|---|---|---|")
        for name, _n, _mine, _other, posts in rows:
            for post in posts:
                print(f"| {name} | {post['sampler']} | {post['wall']:.1f} | {post['ess']:.0f} | "
                      f"{post['ess'] / post['wall']:.1f} | {post['div']} | "
                      f"{post['rhat']:.3f} | {post['steps']:.1f} |")


if __name__ == "__main__":
    main()
