"""`raid demo`: the whole pipeline (reconstruct, build-train, fit, benchmark, detect) on
images and smoke models it makes itself, or on real checkpoints and folders (--config)."""

from __future__ import annotations

import argparse

NAME = "demo"
HELP = ("run the whole pipeline end to end: without --config on synthetic images with tiny "
        "random-weight models (about a minute on a CPU; its numbers mean nothing), with "
        "--config on real checkpoints and folders; a second run reuses the first's work")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default=None,
                   help="working and report folder (default: ./raid-demo, or the config's out)")
    p.add_argument("--config", default=None,
                   help="YAML with real checkpoints and folders (see configs/raid.yaml)")


def run(args: argparse.Namespace) -> int:
    from raid.pipelines.demo import run_demo
    from raid.pipelines.demo_config import load_demo_config
    from raid.pipelines.demo_data import synthetic_plan

    if args.config:
        plan = load_demo_config(args.config, out=args.out)
    else:
        plan = synthetic_plan(args.out or "raid-demo")
    summary = run_demo(plan)
    if summary is not None:  # None on the other processes of a multi-process run
        print("\n".join(summary.lines()))
    return 0
