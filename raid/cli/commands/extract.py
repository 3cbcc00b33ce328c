"""`raid extract`: AIM features of every image in a folder into a feature store."""

from __future__ import annotations

import argparse

from raid.cli import args as a

NAME = "extract"
HELP = ("extract AIM v1 features (one texture-rich patch per image) of every image in a "
        "folder into an HDF5 store; a second run extracts only what is missing")


def add_arguments(p: argparse.ArgumentParser) -> None:
    a.use_formatter(p)
    a.add_input_arguments(p, "DIR", "folder of images (searched recursively)")
    a.add_out_argument(p, "feature store (.h5) to create or complete", required=True,
                       metavar="STORE.h5", old=["--output"])
    p.add_argument("--key-prefix", default="", metavar="NAME",
                   help="put NAME/ before every key: needed to add a second input folder "
                        "to a store (the store records the folders it was extracted from)")
    a.add_aim_arguments(p)
    a.add_run_arguments(p)
    a.add_logging_arguments(p)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from raid.primitives.errors import RaidError

    a.apply_logging(args)
    folder = a.one_input(args, "image folder")
    if Path(folder).is_file():
        raise RaidError("is a file: extract takes a folder of images (to score single "
                        "images, use `raid detect MODEL FILE`)", folder)
    from raid.pipelines.extraction import extract

    summary = extract(folder, args.out, a.extract_options(args, key_prefix=args.key_prefix))
    if summary is None:  # the other processes of a multi-process run
        return 0
    print("\n".join(summary.lines()))
    return a.exit_code(len(summary.failed))
