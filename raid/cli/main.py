"""The `raid` command: a thin dispatcher over `raid.cli.commands.*`.

Each command module defines `NAME`, `HELP`, `add_arguments(parser)` and `run(args) -> int`
and calls one library function. User mistakes (`RaidError`) become one line on stderr and
exit code 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import warnings

from raid import __version__
from raid.primitives.errors import RaidError

# Order is the order shown by `raid --help`: the pipeline from photos to a report.
COMMANDS = [
    "demo", "reconstruct", "extract", "build_train", "import_npy", "export_npy",
    "fit", "evaluate", "benchmark", "detect", "bench",
]


def build_parser() -> tuple[argparse.ArgumentParser, dict]:
    parser = argparse.ArgumentParser(
        prog="raid",
        description="RAID: detect AI-generated images with an SVM trained on real photos "
                    "and their autoencoder reconstructions (AIM v1 features).")
    parser.add_argument("--version", action="version", version=f"raid {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    handlers = {}
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"raid.cli.commands.{name}")
        except ModuleNotFoundError as exc:  # a command still being written
            if exc.name != f"raid.cli.commands.{name}":
                raise
            continue
        p = sub.add_parser(module.NAME, help=module.HELP, description=module.HELP,
                           formatter_class=argparse.ArgumentDefaultsHelpFormatter)
        module.add_arguments(p)
        handlers[module.NAME] = module.run
    return parser, handlers


def quiet_lightning() -> None:
    """Keep Lightning's start-up banners (devices found, tips) out of RAID's output."""
    for name in ("lightning.pytorch", "lightning.fabric", "pytorch_lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*treespec, LeafSpec.*")
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*Total length of `DataLoader` across ranks is zero.*")


def main(argv: list[str] | None = None) -> int:
    parser, handlers = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(message)s", stream=sys.stderr)
    if not args.verbose:
        quiet_lightning()
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return int(handlers[args.command](args) or 0)
    except RaidError as exc:
        print(f"raid {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"raid {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
