"""REML/ML speed: bayeslmm vs lme4 on every reference case, InstEval and the issue-10
models, one run.

    python benchmarks/reml.py [--repeats 5] [--no-r] [--only insteval]

Times the whole ``bayeslmm.fit(formula, data, method=...)`` call (formula processing
included, as ``lmer`` includes its model frame) and, when ``Rscript`` with lme4 is
installed, ``lmer`` (default settings) on the same CSV data in the same run.  Prints
medians, the ratio lme4 / bayeslmm, both criteria (ours minus lme4's: negative is better),
our number of criterion evaluations, the BLAS that ran (threadpoolctl), and the peak memory
of a fresh process fitting InstEval.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
from _common import blas_info

import bayeslmm
from bayeslmm.datasets import load

CASES = [
    ("sleep_slope", "sleepstudy", "Reaction ~ Days + (Days | Subject)"),
    ("sleep_uncorr", "sleepstudy", "Reaction ~ Days + (Days || Subject)"),
    ("sleep_int", "sleepstudy", "Reaction ~ Days + (1 | Subject)"),
    ("ortho_slope", "orthodont", "distance ~ age + (age | Subject)"),
    ("ortho_sex", "orthodont", "distance ~ age * Sex + (age | Subject)"),
    ("penicillin", "penicillin", "diameter ~ 1 + (1 | plate) + (1 | sample)"),
    ("pastes", "pastes", "strength ~ 1 + (1 | batch/cask)"),
    ("dyestuff", "dyestuff", "Yield ~ 1 + (1 | Batch)"),
    ("dyestuff2", "dyestuff2", "Yield ~ 1 + (1 | Batch)"),
    ("ergostool", "ergostool", "effort ~ Type + (1 | Subject)"),
    ("radon", "radon", "log_radon ~ floor + (1 | county)"),
    ("insteval", "insteval", "y ~ 1 + service + (1 | s) + (1 | d) + (1 | dept:service)"),
    ("vcomp2", "vcomp2", "y ~ x1 + x2 + (0 + z1 + z2 | groups) + (1 | v1) + (1 | v2)"),
    ("kb07", "kb07", "rt ~ 1 + spkr + prec + load + (1 + spkr + prec + load | subj) + "
                     "(1 + spkr + prec + load | item)"),
    ("insteval_dept", "insteval",
     "y ~ 1 + service + (1 | s) + (1 | d) + (1 + service | dept)"),
]
SIMULATED = Path(__file__).resolve().parents[1] / "tests" / "golden" / "data"  # kb07, vcomp2

R_FACTORS = {
    "sleepstudy": ["Subject"], "orthodont": ["Subject", "Sex"], "penicillin": ["plate", "sample"],
    "pastes": ["batch", "cask", "sample"], "dyestuff": ["Batch"], "dyestuff2": ["Batch"],
    "ergostool": ["Type", "Subject"], "radon": ["county"],
    "insteval": ["s", "d", "studage", "lectage", "service", "dept"],
    "vcomp2": ["groups", "v1", "v2"], "kb07": ["subj", "item"],
}

R_SCRIPT = r"""
suppressMessages(library(lme4))
args <- commandArgs(TRUE); spec <- readLines(args[1]); repeats <- as.integer(args[2])
out <- c()
for (line in spec) {
  p <- strsplit(line, "\t")[[1]]  # name, csv, factors, formula, reml
  facs <- strsplit(p[3], ",")[[1]]
  d <- read.csv(p[2], colClasses = setNames(rep("factor", length(facs)), facs))
  if ("Sex" %in% facs) d$Sex <- factor(d$Sex, levels = c("Male", "Female"))
  n <- if (nrow(d) > 10000) 1 else repeats
  fit <- NULL
  times <- sapply(seq_len(n), function(i) system.time(
    fit <<- suppressMessages(lmer(as.formula(p[4]), d, REML = p[5] == "TRUE")))[["elapsed"]])
  crit <- if (p[5] == "TRUE") REMLcrit(fit) else deviance(fit)
  out <- c(out, sprintf("%s\t%s\t%.6f\t%.8f", p[1], p[5], median(times), crit))
}
writeLines(out)
"""


def _data(dataset: str):
    if dataset in ("kb07", "vcomp2"):
        import pandas as pd

        return pd.read_csv(SIMULATED / f"{dataset}.csv")
    return load(dataset)


def _csv(dataset: str) -> Path:
    if dataset in ("kb07", "vcomp2"):
        return SIMULATED / f"{dataset}.csv"
    data_dir = Path(bayeslmm.datasets.__file__).parent / "data"
    csv = data_dir / f"{dataset}.csv"
    return csv if csv.exists() else data_dir / f"{dataset}.csv.gz"  # R reads .gz directly


def time_ours(dataset: str, formula: str, method: str, repeats: int):
    """(median seconds, criterion, evaluations) of ``repeats`` fits."""
    data = _data(dataset)
    times = []
    for _ in range(repeats):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            start = time.perf_counter()
            fit = bayeslmm.fit(formula, data, method=method)
            times.append(time.perf_counter() - start)
    return float(np.median(times)), fit.criterion, fit.n_evals


def time_lme4(cases, repeats: int) -> dict:
    if shutil.which("Rscript") is None:
        return {}
    probe = subprocess.run(["Rscript", "-e", "library(lme4)"], capture_output=True)
    if probe.returncode != 0:
        return {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        lines = []
        for name, dataset, formula in cases:
            csv = _csv(dataset)
            for reml in ("TRUE", "FALSE"):
                r_formula = formula.replace("**", "^")
                lines.append("\t".join([name, str(csv), ",".join(R_FACTORS[dataset]),
                                        r_formula, reml]))
        (tmp / "spec.tsv").write_text("\n".join(lines) + "\n")
        (tmp / "bench.R").write_text(R_SCRIPT)
        res = subprocess.run(["Rscript", str(tmp / "bench.R"), str(tmp / "spec.tsv"),
                              str(repeats)], capture_output=True, text=True)
    if res.returncode != 0:
        print("lme4 timing failed:", res.stderr[-2000:], file=sys.stderr)
        return {}
    out = {}
    for line in res.stdout.strip().splitlines():
        name, reml, seconds, crit = line.split("\t")
        out[(name, "reml" if reml == "TRUE" else "ml")] = (float(seconds), float(crit))
    return out


def insteval_peak_memory_mb() -> float:
    code = (
        "import resource, warnings, bayeslmm\n"
        "d = bayeslmm.datasets.load('insteval')\n"
        "warnings.simplefilter('ignore')\n"
        "bayeslmm.fit('y ~ 1 + service + (1|s) + (1|d) + (1|dept:service)', d, method='reml')\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    return float(res.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-r", action="store_true", help="skip the lme4 timings")
    parser.add_argument("--only", help="run only cases whose name contains this")
    args = parser.parse_args()
    cases = [c for c in CASES if not args.only or args.only in c[0]]
    # warm up imports and the numba kernel's cache, as a notebook session would be
    time_ours("sleepstudy", "Reaction ~ Days + (1 | Subject)", "reml", 1)
    time_ours("insteval", CASES[-1][2].replace("(1 | s) + ", ""), "reml", 1)
    peers = {} if args.no_r else time_lme4(cases, args.repeats)
    print(f"BLAS: {blas_info()}")
    print(f"{'case':14s} {'method':6s} {'bayeslmm (s)':>13s} {'lme4 (s)':>10s} {'lme4/ours':>10s}"
          f" {'crit - lme4':>12s} {'evals':>6s}")
    for name, dataset, formula in cases:
        for method in ("reml", "ml"):
            repeats = 3 if dataset in ("insteval", "kb07") else args.repeats
            ours, crit, evals = time_ours(dataset, formula, method, repeats)
            peer, peer_crit = peers.get((name, method), (None, None))
            ratio = f"{peer / ours:10.1f}" if peer else f"{'-':>10s}"
            peer_text = f"{peer:10.4f}" if peer else f"{'-':>10s}"
            diff = f"{crit - peer_crit:12.2e}" if peer_crit is not None else f"{'-':>12s}"
            print(f"{name:14s} {method:6s} {ours:13.4f} {peer_text} {ratio} {diff} {evals:6d}",
                  flush=True)
    if any("insteval" in c[0] for c in cases):
        print(f"InstEval REML peak memory (fresh process, max RSS): "
              f"{insteval_peak_memory_mb():.0f} MB")


if __name__ == "__main__":
    main()
