"""Inference speed, bayeslmm vs lmerTest / lme4 in one run.

    python benchmarks/inference.py [--no-r] [--boot 10000] [--r-boot 1000]

Cases: sleepstudy ``Reaction ~ Days + (Days | Subject)`` and the kb07-shaped crossed design
``rt ~ 1 + spkr + prec + load + (1 + spkr | subj) + (1 | item)`` (tests/golden/data).
Times (seconds, each on an already fitted REML model): the Satterthwaite coefficient table
(lmerTest: ``as_lmerModLmerTest`` + ``summary``, where its Hessian is computed), the
Kenward-Roger table, lme4's profile intervals (``confint(method = "profile")``), the
parametric bootstrap of sleepstudy (ours: ``--boot`` replicates; lme4's ``bootMer``:
``--r-boot``, compared per replicate), and the log marginal likelihood of the Bayesian fit
(importance sampling beyond the fit; its MCSE).  Prints the BLAS that ran.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import time
import warnings
from pathlib import Path

import pandas as pd
from _common import blas_info

import bayeslmm
from bayeslmm.bayes import Normal

ROOT = Path(__file__).resolve().parents[1]
KB07 = ROOT / "tests" / "golden" / "data" / "kb07.csv"
SLEEP = ROOT / "bayeslmm" / "datasets" / "data" / "sleepstudy.csv"
FORMULAS = {"sleepstudy": "Reaction ~ Days + (Days | Subject)",
            "kb07": "rt ~ 1 + spkr + prec + load + (1 + spkr | subj) + (1 | item)"}


def timed(func):
    start = time.perf_counter()
    value = func()
    return time.perf_counter() - start, value


def ours(n_boot: int) -> dict:
    data = {"sleepstudy": bayeslmm.datasets.load("sleepstudy"), "kb07": pd.read_csv(KB07)}
    out = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        warm = bayeslmm.fit("Reaction ~ Days + (1 | Subject)", data["sleepstudy"], method="reml")
        warm.coef_table(), warm.coef_table("kenward-roger"), warm.confint("profile")  # imports
        warm.bootstrap(5, progressbar=False)  # loads the compiled refits (numba cache)
        for case, formula in FORMULAS.items():
            fit = bayeslmm.fit(formula, data[case], method="reml")
            sat = timed(lambda f=fit: f.coef_table("satterthwaite"))[0]
            kr = timed(lambda f=fit: f.coef_table("kenward-roger"))[0]
            prof = timed(lambda f=fit: f.confint("profile"))[0]
            out[case] = {"satterthwaite": sat, "kenward_roger": kr, "profile": prof}
        fit = bayeslmm.fit(FORMULAS["sleepstudy"], data["sleepstudy"], method="reml")
        out["bootstrap"] = {"n": n_boot, "seconds": timed(
            lambda: fit.bootstrap(n_boot, random_seed=1, progressbar=False))[0]}
        priors = {"Intercept": Normal(250, 50), "Days": Normal(0, 20)}
        bayes = bayeslmm.fit(FORMULAS["sleepstudy"], data["sleepstudy"], priors=priors,
                             random_seed=1, progressbar=False)
        seconds, (value, mcse) = timed(bayes.log_marginal_likelihood)
        out["logml"] = {"seconds": seconds, "value": value, "mcse": mcse,
                        "fit": bayes.elapsed}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-r", action="store_true")
    parser.add_argument("--boot", type=int, default=10_000)
    parser.add_argument("--r-boot", type=int, default=1000)
    args = parser.parse_args()
    print(f"BLAS: {blas_info()}")
    mine = ours(args.boot)
    peer = {}
    if not args.no_r:
        res = subprocess.run(["Rscript", str(ROOT / "benchmarks" / "r" / "inference_peers.R"),
                              str(SLEEP), str(KB07), str(args.r_boot)], capture_output=True,
                             text=True)
        if res.returncode == 0:
            peer = json.loads(res.stdout.strip().splitlines()[-1])
        else:
            print("R failed:", res.stderr[-1500:])
    nan = float("nan")
    print("\n| case | step | bayeslmm s | R s | R / ours |")
    print("|---|---|---|---|---|")
    for case in FORMULAS:
        for step, label in (("satterthwaite", "Satterthwaite table (lmerTest)"),
                            ("kenward_roger", "Kenward-Roger table (lmerTest/pbkrtest)"),
                            ("profile", "profile intervals (lme4)")):
            a = mine[case][step]
            b = peer.get(case, {}).get(step, nan)
            print(f"| {case} | {label} | {a:.3f} | {b:.3f} | {b / a:.1f} |")
    boot = mine["bootstrap"]
    rb = peer.get("bootstrap", {"n": args.r_boot, "seconds": nan})
    per_ours = 1000 * boot["seconds"] / boot["n"]
    per_r = 1000 * rb["seconds"] / rb["n"]
    print(f"| sleepstudy | parametric bootstrap, ms per replicate (ours {boot['n']} in "
          f"{boot['seconds']:.1f} s; bootMer {rb['n']}) | {per_ours:.2f} | {per_r:.2f} | "
          f"{per_r / per_ours:.1f} |")
    lm = mine["logml"]
    print(f"\nlog marginal likelihood (sleepstudy, Normal fixed-effect priors): "
          f"{lm['value']:.4f} +- {lm['mcse']:.4f} (MCSE) in {lm['seconds']:.2f} s beyond the "
          f"{lm['fit']:.1f} s fit")


if __name__ == "__main__":
    main()
