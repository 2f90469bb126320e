"""Bayesian speed on a kb07-shaped maximal crossed design, bayeslmm vs brms, one run.

    python benchmarks/bayes_kb07.py [--brms] [--draws 1000] [--chains 4]

56 subjects x 32 items crossed (1,790 rows, tests/golden/data/kb07.csv, simulated by
tests/golden/scripts/make_sim_data.py), three +-1-coded within factors and a 4 x 4 G on each
factor: ``rt ~ 1 + spkr + prec + load + (1 + spkr + prec + load | subj) + (1 + spkr + prec +
load | item)``.  bayeslmm's default fit (the marginal sampler on nutpie: 21 covariance
parameters; the 352 effects and 4 coefficients drawn from their exact conditional) with a
warm numba cache, and with ``--brms`` brms's default (``benchmarks/r/kb07_brms.R``:
compile and sampling apart).  Prints wall time, min bulk ESS over every parameter, ESS/s,
divergences, worst R-hat, and the BLAS that ran.
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

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "golden" / "data" / "kb07.csv"
FORMULA = ("rt ~ 1 + spkr + prec + load + (1 + spkr + prec + load | subj) + "
           "(1 + spkr + prec + load | item)")


def ours(draws: int, chains: int) -> dict:
    data = pd.read_csv(DATA)
    model = bayeslmm.Model(FORMULA, data)
    with warnings.catch_warnings():  # warm the numba cache and the REML start
        warnings.simplefilter("ignore")
        model.fit(draws=20, tune=20, chains=1, cores=1, progressbar=False, random_seed=0)
        start = time.perf_counter()
        fit = model.fit(draws=draws, tune=draws, chains=chains, random_seed=1,
                        progressbar=False)
        wall = time.perf_counter() - start
    d = fit.diagnostics()
    return {"wall": wall, "min_ess": d["min_ess_bulk"], "div": d["divergences"],
            "rhat": d["max_rhat"], "sampler": fit.sampler}


def brms() -> dict | None:
    res = subprocess.run(["Rscript", str(ROOT / "benchmarks" / "r" / "kb07_brms.R"), str(DATA)],
                         capture_output=True, text=True)
    if res.returncode != 0:
        print("brms failed:", res.stderr[-1500:])
        return None
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--brms", action="store_true")
    args = parser.parse_args()
    print(f"kb07-shaped, {args.chains} chains x {args.draws} draws (tune {args.draws}); "
          f"BLAS: {blas_info()}")
    print(f"{'sampler':34s} {'wall s':>8s} {'min ESS':>8s} {'ESS/s':>7s} {'div':>5s} "
          f"{'R-hat':>6s}")
    row = ours(args.draws, args.chains)
    print(f"{'bayeslmm default (' + row['sampler'] + ', nutpie)':34s} {row['wall']:8.1f} "
          f"{row['min_ess']:8.0f} {row['min_ess'] / row['wall']:7.2f} {row['div']:5d} "
          f"{row['rhat']:6.3f}", flush=True)
    if args.brms:
        ref = brms()
        if ref:
            total = ref["compile"] + ref["sample"]
            print(f"{'brms ' + ref['brms'] + ' (sampling only)':34s} {ref['sample']:8.1f} "
                  f"{ref['min_ess']:8.0f} {ref['min_ess'] / ref['sample']:7.2f} "
                  f"{ref['divergences']:5d} {ref['max_rhat']:6.3f}")
            print(f"{'brms (compile + sampling)':34s} {total:8.1f} {ref['min_ess']:8.0f} "
                  f"{ref['min_ess'] / total:7.2f}")
            print(f"ESS/s ratio bayeslmm / brms (sampling only): "
                  f"{(row['min_ess'] / row['wall']) / (ref['min_ess'] / ref['sample']):.1f}x")


if __name__ == "__main__":
    main()
