"""Bayesian speed and the effect of the REML start, one run, printed as a table.

    python benchmarks/bayes.py [--draws 1000] [--chains 4] [--bambi PYTHON]

For sleepstudy ``Reaction ~ Days + (Days | Subject)`` (LKJ model): wall time of the whole
``fit()`` call, minimum bulk ESS over b, SDs, correlation, sigma and the random effects,
ESS per second, divergences and mean tree depth, for the marginal and the full sampler,
each with ``init="reml"`` (default) and PyMC's own ``init="auto"``.  ``--bambi PYTHON``
also times Bambi's default sampler (``Reaction ~ Days + (Days | Subject)``, which Bambi fits
without the correlation) with the given interpreter of a venv where ``bambi`` is installed.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import time
import warnings

import arviz as az

import bayeslmm

FORMULA = "Reaction ~ Days + (Days | Subject)"

BAMBI = """
import json, time, warnings, arviz as az, bambi as bmb, pandas as pd
warnings.simplefilter("ignore")
d = pd.read_csv({csv!r}, dtype={{"Subject": str}})
t = time.perf_counter()
m = bmb.Model("Reaction ~ Days + (Days | Subject)", d)
idata = m.fit(draws={draws}, tune={draws}, chains={chains}, random_seed=1, progressbar=False)
wall = time.perf_counter() - t
ess = az.ess(idata, method="bulk")
print(json.dumps({{"wall": wall, "min_ess": float(min(float(ess[v].min()) for v in ess.data_vars)),
  "div": int(idata.sample_stats["diverging"].sum())}}))
"""


def run(init: str, draws: int, chains: int, seed: int, sampler: str = "auto") -> dict:
    data = bayeslmm.datasets.load("sleepstudy")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        start = time.perf_counter()
        fit = bayeslmm.fit(FORMULA, data, draws=draws, tune=draws, chains=chains,
                           random_seed=seed, progressbar=False, init=init, sampler=sampler)
        wall = time.perf_counter() - start
    diag = fit.diagnostics()
    stats = fit.idata.sample_stats
    return {"wall": wall, "min_ess": diag["min_ess_bulk"], "div": diag["divergences"],
            "rhat": diag["max_rhat"], "depth": float(stats["tree_depth"].mean()),
            "steps": float(stats["n_steps"].mean())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--bambi", help="python of a venv with bambi installed")
    args = parser.parse_args()
    for sampler in ("marginal", "full"):  # warm the compile caches: timings below are warm
        run("reml", 50, 2, 0, sampler)
    rows = [
        ("marginal, init=reml", run("reml", args.draws, args.chains, args.seed, "marginal")),
        ("marginal, init=auto", run("auto", args.draws, args.chains, args.seed, "marginal")),
        ("full, init=reml", run("reml", args.draws, args.chains, args.seed, "full")),
        ("full, init=auto", run("auto", args.draws, args.chains, args.seed, "full")),
    ]
    if args.bambi:
        csv = str(bayeslmm.datasets.__path__[0]) + "/data/sleepstudy.csv"
        code = BAMBI.format(csv=csv, draws=args.draws, chains=args.chains)
        out = subprocess.run([args.bambi, "-c", code], capture_output=True, text=True)
        if out.returncode == 0:
            rows.append(("bambi default (no corr.)", json.loads(out.stdout.splitlines()[-1])))
        else:
            print("bambi failed:", out.stderr[-1000:])
    print(f"sleepstudy {FORMULA!r}, {args.chains} chains x {args.draws} draws "
          f"(tune {args.draws}), warm compile cache, arviz {az.__version__}")
    print(f"{'bayeslmm sampler':28s} {'wall s':>7s} {'min ESS':>8s} {'ESS/s':>7s} {'div':>4s} "
          f"{'R-hat':>6s} {'depth':>6s} {'steps':>6s}")
    for name, r in rows:
        print(f"{name:28s} {r['wall']:7.1f} {r['min_ess']:8.0f} {r['min_ess'] / r['wall']:7.1f} "
              f"{r['div']:4d} {r.get('rhat', float('nan')):6.3f} {r.get('depth', 0):6.2f} "
              f"{r.get('steps', 0):6.1f}")


if __name__ == "__main__":
    main()
