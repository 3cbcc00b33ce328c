"""`raid evaluate`: a saved detector on a feature store, per group and on average."""

from __future__ import annotations

import argparse

from raid.cli import args as a

NAME = "evaluate"
HELP = ("score a feature store with a saved detector and write metrics.json, metrics.csv, "
        "report.md and roc.png (accuracy, real/fake accuracy, AP, AUROC per group and mean); "
        "warns when the rows overlap the model's training rows")


def add_arguments(p: argparse.ArgumentParser) -> None:
    a.use_formatter(p)
    p.add_argument("model", metavar="MODEL", help="model file written by `raid fit`")
    a.add_input_arguments(p, "STORE", "feature store (.h5) to evaluate, ideally held out "
                          "(`raid split`)")
    a.add_out_argument(p, "report folder", required=True, metavar="DIR", old=["--output"])
    p.add_argument("--groups", nargs="+", default=None, metavar="GROUP",
                   help="evaluate these groups only (default: all)")
    p.add_argument("--allow-mismatch", action="store_true",
                   help="evaluate even when the store's features were made otherwise than "
                        "those the model was fitted on (warns)")
    a.add_logging_arguments(p)


def run(args: argparse.Namespace) -> int:
    a.apply_logging(args)
    store = a.one_input(args, "feature store")
    from raid.pipelines.evaluate import evaluate_store

    result = evaluate_store(args.model, store, args.out, groups=args.groups,
                            allow_mismatch=args.allow_mismatch)
    m = result.metrics["mean"]
    print(f"{len(result.metrics['groups'])} group(s); mean accuracy "
          f"{_pct(m['accuracy'])}, mean AUROC {_pct(m['auroc'])} -> {args.out}/report.md")
    return 0


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{100 * v:.2f} %"
