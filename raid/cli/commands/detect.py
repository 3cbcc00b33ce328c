"""`raid detect`: P(generated) and a verdict for images and folders of images."""

from __future__ import annotations

import argparse
from pathlib import Path

from raid.cli.commands.extract import add_model_arguments, add_run_arguments, options_from
from raid.primitives.errors import RaidError

NAME = "detect"
HELP = ("score images (files and/or folders) with a saved detector: P(generated) and a "
        "verdict (generated when P > 0.5, else real) per image; unreadable files are listed "
        "with the reason")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("inputs", nargs="+", metavar="PATH",
                   help="MODEL then image files and/or folders; with --model, only images")
    p.add_argument("--model", default=None,
                   help="detector bundle folder (`raid fit --bundle`): no AIM options needed")
    p.add_argument("--out", default=None, help="also write the results to FILE.csv or FILE.json")
    p.add_argument("--allow-mismatch", action="store_true",
                   help="score even when the AIM checkpoints or settings differ from those "
                        "the model was fitted on (warns)")
    add_model_arguments(p, required=False)
    add_run_arguments(p)


def run(args: argparse.Namespace) -> int:
    from raid.pipelines.detect import detect, write_detections

    if args.out and Path(args.out).suffix.lower() not in (".csv", ".json"):
        raise RaidError("output must end in .csv or .json", args.out)
    model, paths = (args.model, args.inputs) if args.model else (args.inputs[0], args.inputs[1:])
    if not paths:
        raise RaidError("no images or folders given (usage: raid detect MODEL PATH... or "
                        "raid detect --model BUNDLE PATH...)")
    result = detect(paths, model, options_from(args), allow_mismatch=args.allow_mismatch)
    print(result.table())
    if args.out:
        print(f"-> {write_detections(result, args.out)}")
    return 0
