"""`raid evaluate`: a saved detector on a feature store, per group and on average."""

from __future__ import annotations

import argparse

from raid.metrics.evaluation import evaluate_store

NAME = "evaluate"
HELP = ("score a feature store with a saved detector and write metrics.json, metrics.csv, "
        "report.md and roc.png (accuracy, real/fake accuracy, AP, AUROC per group and mean)")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="model file written by `raid fit`")
    p.add_argument("store", help="feature store (.h5)")
    p.add_argument("--out", required=True, help="report folder")
    p.add_argument("--groups", nargs="+", default=None, help="evaluate these groups only")


def run(args: argparse.Namespace) -> int:
    result = evaluate_store(args.model, args.store, args.out, groups=args.groups)
    m = result.metrics["mean"]
    print(f"{len(result.metrics['groups'])} group(s); mean accuracy "
          f"{_pct(m['accuracy'])}, mean AUROC {_pct(m['auroc'])} -> {args.out}/report.md")
    return 0


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{100 * v:.2f} %"
