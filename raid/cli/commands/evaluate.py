"""`raid evaluate`: a saved detector on a feature store, per group and on average."""

from __future__ import annotations

import argparse

NAME = "evaluate"
HELP = ("score a feature store with a saved detector and write metrics.json, metrics.csv, "
        "report.md and roc.png (accuracy, real/fake accuracy, AP, AUROC per group and mean)")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="model file written by `raid fit`")
    p.add_argument("store", help="feature store (.h5)")
    p.add_argument("--out", required=True, help="report folder")
    p.add_argument("--groups", nargs="+", default=None, help="evaluate these groups only")
    p.add_argument("--allow-mismatch", action="store_true",
                   help="evaluate even when the store's features were made otherwise than "
                        "those the model was fitted on (warns)")


def run(args: argparse.Namespace) -> int:
    from raid.pipelines.evaluate import evaluate_store

    result = evaluate_store(args.model, args.store, args.out, groups=args.groups,
                            allow_mismatch=args.allow_mismatch)
    m = result.metrics["mean"]
    print(f"{len(result.metrics['groups'])} group(s); mean accuracy "
          f"{_pct(m['accuracy'])}, mean AUROC {_pct(m['auroc'])} -> {args.out}/report.md")
    return 0


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{100 * v:.2f} %"
