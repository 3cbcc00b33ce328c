"""`raid detect`: P(generated) and a verdict for images and folders of images."""

from __future__ import annotations

import argparse
from pathlib import Path

from raid.cli.commands.extract import add_model_arguments, add_run_arguments, options_from
from raid.pipelines.detect import detect, write_detections
from raid.primitives.errors import RaidError

NAME = "detect"
HELP = ("score images (files and/or folders) with a saved detector: P(generated) and a "
        "verdict (generated when P > 0.5, else real) per image; unreadable files are listed "
        "with the reason")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="model file written by `raid fit`")
    p.add_argument("paths", nargs="+", metavar="PATH", help="image files and/or folders")
    p.add_argument("--out", default=None, help="also write the results to FILE.csv or FILE.json")
    add_model_arguments(p)
    add_run_arguments(p)


def run(args: argparse.Namespace) -> int:
    if args.out and Path(args.out).suffix.lower() not in (".csv", ".json"):
        raise RaidError("output must end in .csv or .json", args.out)
    result = detect(args.paths, args.model, options_from(args))
    print(result.table())
    if args.out:
        print(f"-> {write_detections(result, args.out)}")
    return 0
