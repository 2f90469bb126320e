"""Command line: ``python -m bayeslmm demo`` and ``python -m bayeslmm fit DATA.csv FORMULA``."""

from __future__ import annotations

import argparse
import sys
import time
import warnings

import pandas as pd


def _demo(args: argparse.Namespace) -> int:
    import bayeslmm

    data = bayeslmm.datasets.load("sleepstudy")
    formula = "Reaction ~ Days + (Days | Subject)"
    start = time.perf_counter()
    reml = bayeslmm.fit(formula, data, method="reml")
    print(reml.summary())
    print(f"\nREML fit in {time.perf_counter() - start:.3f} s")
    if args.reml_only:
        return 0
    start = time.perf_counter()
    bayes = bayeslmm.fit(formula, data, draws=args.draws, tune=args.draws, chains=args.chains,
                         random_seed=args.seed, progressbar=False)
    print(f"\nBayesian fit (NUTS, {args.chains} chains x {args.draws} draws) in "
          f"{time.perf_counter() - start:.1f} s\n")
    print(bayes.summary().to_string())
    print("\nREML vs posterior:")
    print(bayes.compare_reml(reml).to_string())
    return 0


def _fit(args: argparse.Namespace) -> int:
    import bayeslmm

    data = pd.read_csv(args.data)
    kwargs = {}
    if args.method == "nuts":
        kwargs = {"draws": args.draws, "chains": args.chains, "random_seed": args.seed,
                  "tune": args.draws}
    result = bayeslmm.fit(args.formula, data, method=args.method, **kwargs)
    print(result.summary() if args.method != "nuts" else result.summary().to_string())
    if args.out:
        result.to_netcdf(args.out)
        print(f"saved to {args.out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bayeslmm",
                                     description="Bayesian linear mixed models")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="REML and Bayesian fits of sleepstudy side by side")
    demo.add_argument("--draws", type=int, default=1000)
    demo.add_argument("--chains", type=int, default=4)
    demo.add_argument("--seed", type=int, default=1)
    demo.add_argument("--reml-only", action="store_true")
    demo.set_defaults(run=_demo)
    fit = sub.add_parser("fit", help="fit a formula to a CSV file and print the summary")
    fit.add_argument("data")
    fit.add_argument("formula")
    fit.add_argument("--method", choices=["reml", "ml", "nuts"], default="reml")
    fit.add_argument("--draws", type=int, default=1000)
    fit.add_argument("--chains", type=int, default=4)
    fit.add_argument("--seed", type=int, default=None)
    fit.add_argument("--out", default=None)
    fit.set_defaults(run=_fit)
    args = parser.parse_args(argv)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("default")
            return args.run(args)
    except (ValueError, TypeError, FileNotFoundError, NotImplementedError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
