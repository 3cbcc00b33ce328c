"""`raid info`: what is inside a feature store, a model file or a detector bundle."""

from __future__ import annotations

import argparse

from raid.cli import args as a

NAME = "info"
HELP = ("show what a feature store (rows per group and label, feature size, provenance, "
        "failures), a model file or a bundle (settings, provenance, training size, "
        "threshold) holds")


def add_arguments(p: argparse.ArgumentParser) -> None:
    a.use_formatter(p)
    a.add_input_arguments(p, "PATH", "feature store (.h5), model file (.safetensors) or "
                          "bundle folder")
    p.add_argument("--json", action="store_true",
                   help="print JSON (for scripts) instead of text")
    a.add_logging_arguments(p)


def run(args: argparse.Namespace) -> int:
    import json

    from raid.pipelines.info import describe, render

    a.apply_logging(args)
    info = describe(a.one_input(args, "store, model or bundle"))
    print(json.dumps(info, indent=2, ensure_ascii=False) if args.json else render(info))
    return 0
