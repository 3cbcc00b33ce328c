"""The `raid` command: a thin dispatcher over `raid.cli.commands.*`.

Each command module defines `NAME`, `HELP`, `add_arguments(parser)` and `run(args) -> int`
and calls one library function; heavy imports (torch, Lightning, scikit-learn) happen
inside `run`. Only the module of the command being run is imported (all of them for
`raid --help`), so a command pays for its own imports and nothing else. User mistakes
(`RaidError`) become one line on stderr and exit code 2; anything else is a bug and keeps
its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import logging
import os
import sys
import warnings
from typing import Sequence

from raid import __version__
from raid.primitives.errors import RaidError

# Module names under raid.cli.commands; the command is the name with "-" for "_".
# Order is the order shown by `raid --help`: the pipeline from photos to a report.
COMMANDS = [
    "demo", "reconstruct", "extract", "build_train", "import_npy", "export_npy",
    "fit", "evaluate", "benchmark", "detect", "serve", "bench",
]


def command_name(module_name: str) -> str:
    return module_name.replace("_", "-")


def requested_command(argv: Sequence[str]) -> str | None:
    """The module name of the command on the line, when the first word that is not an
    option names one (the top-level options take no value)."""
    for token in argv:
        if token == "--":
            return None
        if token.startswith("-"):
            continue
        for name in COMMANDS:
            if command_name(name) == token:
                return name
        return None
    return None


def _import_command(name: str):
    try:
        return importlib.import_module(f"raid.cli.commands.{name}")
    except ModuleNotFoundError as exc:  # a command still being written
        if exc.name != f"raid.cli.commands.{name}":
            raise
        return None


def build_parser(argv: Sequence[str] | None = None) -> tuple[argparse.ArgumentParser, dict]:
    """The parser and {command: run}. With `argv`, only the command it names is imported
    and added (all commands when it names none, as `raid --help` needs them)."""
    parser = argparse.ArgumentParser(
        prog="raid",
        description="RAID: detect AI-generated images with an SVM trained on real photos "
                    "and their autoencoder reconstructions (AIM v1 features).")
    parser.add_argument("--version", action="version", version=f"raid {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    wanted = requested_command(argv) if argv is not None else None
    if argv is not None and wanted is None and "--version" in argv:
        return parser, {}  # argparse prints the version; no command is needed
    rest = list(argv[argv.index(command_name(wanted)) + 1:]) if wanted else None
    handlers = {}
    for name in [wanted] if wanted else COMMANDS:
        module = _import_command(name)
        if module is None:
            continue
        p = sub.add_parser(module.NAME, help=module.HELP, description=module.HELP,
                           formatter_class=argparse.ArgumentDefaultsHelpFormatter)
        if "argv" in inspect.signature(module.add_arguments).parameters:
            module.add_arguments(p, argv=rest)  # e.g. `raid bench KIND`: only that kind
        else:
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
    argv = sys.argv[1:] if argv is None else list(argv)
    parser, handlers = build_parser(argv)
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
    except BrokenPipeError:  # `raid ... | head`: the reader left; stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    sys.exit(main())
