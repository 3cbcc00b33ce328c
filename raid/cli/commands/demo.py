"""`raid demo`: the whole pipeline (reconstruct, build-train, fit, benchmark, detect) on
images and smoke models it makes itself, or on real checkpoints and folders (--config)."""

from __future__ import annotations

import argparse
import logging

from raid.cli import args as a

NAME = "demo"
HELP = ("run the whole pipeline end to end: without --config on synthetic images with tiny "
        "random-weight models (its numbers mean nothing), with --config on real checkpoints "
        "and folders; a second run into the same folder reuses the first's work")


def add_arguments(p: argparse.ArgumentParser) -> None:
    a.use_formatter(p)
    a.add_out_argument(p, "working and report folder (default: ./raid-demo, or the "
                       "config's out)", metavar="DIR", old=["--output"])
    p.add_argument("--config", default=None, metavar="YAML",
                   help="YAML with real checkpoints and folders (see configs/raid.yaml)")
    a.add_logging_arguments(p)


def run(args: argparse.Namespace) -> int:
    a.apply_logging(args)
    log = logging.getLogger("raid.demo")
    # said before the heavy imports, which take a few seconds on a small machine
    log.info("raid demo: starting (loading torch and Lightning) ...")
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
