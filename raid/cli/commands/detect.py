"""`raid detect`: P(generated) and a verdict for images and folders of images."""

from __future__ import annotations

import argparse
from pathlib import Path

from raid.cli import args as a
from raid.primitives.errors import RaidError

NAME = "detect"
HELP = ("score images (files and/or folders) with a saved detector: P(generated) and a "
        "verdict (generated when P > the threshold, else real) per image; unreadable files "
        "are listed with the reason and make the exit code 1")


def add_arguments(p: argparse.ArgumentParser) -> None:
    a.use_formatter(p)
    a.add_input_arguments(p, "PATH", "MODEL then image files and/or folders; with --model, "
                          "only images", many=True)
    p.add_argument("--model", default=None, metavar="BUNDLE|FILE",
                   help="detector bundle folder (`raid fit --bundle`, no AIM options needed) "
                        "or model file (with the AIM options)")
    a.add_out_argument(p, "also write the results to FILE.csv or FILE.json",
                       metavar="FILE", old=["--output"])
    p.add_argument("--threshold", type=a.probability, default=None,
                   help="call an image generated when P(generated) > this (default: the "
                        "model's threshold, 0.5 unless `raid fit --target-fpr` chose one)")
    p.add_argument("--allow-mismatch", action="store_true",
                   help="score even when the AIM checkpoints or settings differ from those "
                        "the model was fitted on (warns)")
    a.add_aim_arguments(p, required=False)
    a.add_run_arguments(p)
    a.add_logging_arguments(p)


def run(args: argparse.Namespace) -> int:
    a.apply_logging(args)
    if args.out and Path(args.out).suffix.lower() not in (".csv", ".json"):
        raise RaidError("--out must end in .csv or .json", args.out)
    inputs = a.input_paths(args, "model and the images") if not args.model else \
        a.input_paths(args, "images or folders")
    model, paths = (args.model, inputs) if args.model else (inputs[0], inputs[1:])
    if not paths:
        raise RaidError("no images or folders given (usage: raid detect MODEL PATH... or "
                        "raid detect --model BUNDLE PATH...)")
    if not args.model and Path(model).suffix.lower() in (".png", ".jpg", ".jpeg", ".webp"):
        raise RaidError("the first path is the model (or give --model BUNDLE)", model)
    from raid.pipelines.detect import detect, write_detections

    result = detect(paths, model, a.extract_options(args), allow_mismatch=args.allow_mismatch,
                    threshold=args.threshold)
    print(result.table(), flush=True)
    if args.out:
        print(f"-> {write_detections(result, args.out)}")
    return a.exit_code(len(result.failed))
