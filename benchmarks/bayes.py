"""Bayesian speed on sleepstudy, one run per row, printed as a table.

    python benchmarks/bayes.py [--draws 1000] [--chains 4] [--bambi PYTHON] [--no-full]

For ``Reaction ~ Days + (Days | Subject)`` (LKJ model), 4 chains x 1000 draws, tune 1000:
wall time of the whole ``fit()`` call, minimum bulk ESS over b, SDs, correlation, sigma and
the random effects, ESS per second, divergences, worst R-hat and mean leapfrog steps, for

* the default (marginal sampler on nutpie, C callback), warm numba cache;
* the same with an empty compile cache: a fresh Python process with ``NUMBA_CACHE_DIR`` and
  PyTensor's compiledir pointed at empty folders (wall of ``fit()`` and of the process);
* the marginal sampler on PyMC's NUTS (``backend="pymc"``) and the full model (NUTS over
  every effect), warm PyTensor cache;
* ``--bambi PYTHON``: Bambi's default sampler (``Reaction ~ Days + (Days | Subject)``, which
  Bambi fits without the correlation) in a venv where ``bambi`` is installed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
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
  "div": int(idata.sample_stats["diverging"].sum()),
  "rhat": float(max(float(v.max()) for v in az.rhat(idata).data_vars.values()))}}))
"""

COLD = """
import json, time, warnings
t0 = time.perf_counter()
import bayeslmm
warnings.simplefilter("ignore")
data = bayeslmm.datasets.load("sleepstudy")
t = time.perf_counter()
fit = bayeslmm.fit({formula!r}, data, draws={draws}, tune={draws}, chains={chains},
                   random_seed=1, progressbar=False)
wall = time.perf_counter() - t
d = fit.diagnostics()
print(json.dumps({{"wall": wall, "process": time.perf_counter() - t0, "min_ess": d["min_ess_bulk"],
  "div": d["divergences"], "rhat": d["max_rhat"],
  "steps": float(fit.idata.sample_stats["n_steps"].mean())}}))
"""


def run(draws: int, chains: int, seed: int, **kwargs) -> dict:
    data = bayeslmm.datasets.load("sleepstudy")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        start = time.perf_counter()
        fit = bayeslmm.fit(FORMULA, data, draws=draws, tune=draws, chains=chains,
                           random_seed=seed, progressbar=False, **kwargs)
        wall = time.perf_counter() - start
    diag = fit.diagnostics()
    stats = fit.idata.sample_stats
    return {"wall": wall, "min_ess": diag["min_ess_bulk"], "div": diag["divergences"],
            "rhat": diag["max_rhat"], "steps": float(stats["n_steps"].mean())}


def cold(draws: int, chains: int) -> dict:
    """One fit in a fresh process whose numba and PyTensor caches are empty folders."""
    with tempfile.TemporaryDirectory() as numba_dir, tempfile.TemporaryDirectory() as pt_dir:
        env = dict(os.environ, NUMBA_CACHE_DIR=numba_dir,
                   PYTENSOR_FLAGS=f"compiledir={pt_dir}")
        code = COLD.format(formula=FORMULA, draws=draws, chains=chains)
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             env=env)
    if out.returncode:
        raise RuntimeError(out.stderr[-2000:])
    return json.loads(out.stdout.splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--bambi", help="python of a venv with bambi installed")
    parser.add_argument("--no-full", action="store_true", help="skip the slow PyMC rows")
    args = parser.parse_args()
    rows = [("default, empty compile cache", cold(args.draws, args.chains))]
    run(50, 2, 0)  # warm the caches: the timings below are warm
    rows.append(("default (marginal, nutpie)", run(args.draws, args.chains, args.seed)))
    if not args.no_full:
        for label, kwargs in (("marginal, PyMC NUTS", {"backend": "pymc"}),
                              ("full, PyMC NUTS", {"sampler": "full"})):
            run(50, 2, 0, **kwargs)
            rows.append((label, run(args.draws, args.chains, args.seed, **kwargs)))
    if args.bambi:
        csv = str(bayeslmm.datasets.__path__[0]) + "/data/sleepstudy.csv"
        code = BAMBI.format(csv=csv, draws=args.draws, chains=args.chains)
        out = subprocess.run([args.bambi, "-c", code], capture_output=True, text=True)
        if out.returncode == 0:
            rows.append(("Bambi default (no corr.)", json.loads(out.stdout.splitlines()[-1])))
        else:
            print("bambi failed:", out.stderr[-1000:])
    print(f"sleepstudy {FORMULA!r}, {args.chains} chains x {args.draws} draws "
          f"(tune {args.draws}), {os.cpu_count()} cores, arviz {az.__version__}")
    print(f"{'sampler':30s} {'wall s':>7s} {'min ESS':>8s} {'ESS/s':>7s} {'div':>4s} "
          f"{'R-hat':>6s} {'steps':>6s}")
    for name, r in rows:
        steps = f"{r['steps']:6.1f}" if "steps" in r else f"{'-':>6s}"
        print(f"{name:30s} {r['wall']:7.2f} {r['min_ess']:8.0f} {r['min_ess'] / r['wall']:7.1f} "
              f"{r['div']:4d} {r.get('rhat', float('nan')):6.3f} {steps}")
    process = rows[0][1]["process"]
    print(f"(empty cache: the whole process, imports included, took {process:.1f} s)")
    bambi = dict(rows).get("Bambi default (no corr.)")
    if bambi:
        ours = dict(rows)["default (marginal, nutpie)"]
        ratio = (ours["min_ess"] / ours["wall"]) / (bambi["min_ess"] / bambi["wall"])
        print(f"ESS/s, default vs Bambi: {ratio:.1f}x")


if __name__ == "__main__":
    main()
