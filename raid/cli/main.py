"""The `raid` command: a thin dispatcher over `raid.cli.commands.*`.

Each command module defines `NAME`, `HELP`, `add_arguments(parser)` and `run(args) -> int`
and calls one library function; heavy imports (torch, Lightning, scikit-learn) happen
inside `run`. Only the module of the command being run is imported (all of them for
`raid --help`), so a command pays for its own imports and nothing else.

Exit codes: 0 all done; 1 finished but some inputs failed (the command names them); 2
usage or input error (`RaidError`, a file system error: one line on stderr); 130
interrupted (Ctrl-C: "interrupted"). Anything else is a bug: one line saying so, exit 1.
Tracebacks only with `--log-level debug` (or `-v`). Options of `raid.cli.args` (the
logging ones included) are accepted before or after the command.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import logging
import os
import sys
import traceback
import warnings
from typing import NoReturn, Sequence

# numpy asks Linux for transparent huge pages on every large array. Where the kernel
# compacts memory to honour that (THP "defrag" on madvise, a common default), first
# touching a Gram matrix cost more kernel time than computing it: 4.3 s instead of 2.6 s
# for 12,000 rows on 2 cores. Read when numpy is imported; a user's own setting wins.
os.environ.setdefault("NUMPY_MADVISE_HUGEPAGE", "0")

from raid import __version__  # noqa: E402 (after the setting above)
from raid.cli import args as cli_args  # noqa: E402
from raid.primitives import interrupts  # noqa: E402
from raid.primitives.errors import RaidError  # noqa: E402

# Module names under raid.cli.commands; the command is the name with "-" for "_".
# Order is the order shown by `raid --help`: the pipeline from photos to a report.
COMMANDS = [
    "demo", "reconstruct", "extract", "build_train", "import_npy", "export_npy", "split",
    "fit", "evaluate", "benchmark", "detect", "info", "serve", "bench",
]
# Top-level options that take a value (the value is not a command name).
_VALUE_OPTIONS = frozenset({"--log-level"})


def command_name(module_name: str) -> str:
    return module_name.replace("_", "-")


def requested_command(argv: Sequence[str]) -> str | None:
    """The module name of the command on the line, when the first word that is not an
    option names one (the top-level options take no value)."""
    skip = False
    for token in argv:
        if skip:
            skip = False
            continue
        if token == "--":
            return None
        if token.startswith("-"):
            skip = token in _VALUE_OPTIONS
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
    cli_args.add_logging_arguments(parser, top=True)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND",
                                parser_class=cli_args.RaidArgumentParser)
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
                           formatter_class=cli_args.HelpFormatter)
        if "argv" in inspect.signature(module.add_arguments).parameters:
            module.add_arguments(p, argv=rest)  # e.g. `raid bench KIND`: only that kind
        else:
            module.add_arguments(p)
        if not any("--log-level" in a.option_strings for a in p._actions):
            cli_args.add_logging_arguments(p)  # -v/-q/--log-level after the command too
        handlers[module.NAME] = module.run
    return parser, handlers


def quiet_warnings() -> None:
    """Keep library warnings that say nothing to a RAID user out of its output (Lightning's
    own start-up lines are quieted as each Trainer is built:
    `raid.pipelines.predict.quiet_lightning`)."""
    warnings.filterwarnings("ignore", message=".*treespec, LeafSpec.*")
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*Total length of `DataLoader` across ranks is zero.*")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser, handlers = build_parser(argv)
    args = parser.parse_args(argv)
    level = cli_args.log_level(args)
    logging.basicConfig(level=level, format="%(message)s", stream=sys.stderr)
    debug = level <= logging.DEBUG
    if not debug:
        quiet_warnings()
    if args.command is None:
        parser.print_help()
        return 2
    try:
        with interrupts.recording():
            return int(handlers[args.command](args) or 0)
    except RaidError as exc:
        return _fail(args.command, str(exc), debug, 2)
    except KeyboardInterrupt:
        print(f"raid {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `raid ... | head`: the reader left; stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except OSError as exc:  # disk full, permission denied, ...: the user can act on it
        where = f"{exc.filename}: " if exc.filename else ""
        return _fail(args.command, f"{where}{exc.strerror or exc}", debug, 2)
    except Exception as exc:  # a bug: say so in one line; the traceback with debug
        return _fail(args.command, f"internal error: {type(exc).__name__}: {exc} (run with "
                     "--log-level debug for the traceback, and please report it)", debug, 1)


def _fail(command: str, message: str, debug: bool, code: int) -> int:
    if debug:
        traceback.print_exc()
    print(f"raid {command}: error: {message}", file=sys.stderr)
    return code


def entry() -> None:
    """The `raid` console command (and `python -m raid.cli`): `main`, then `leave`."""
    leave(main())


def leave(code: int) -> NoReturn:
    """Exit with `code`, skipping the interpreter's teardown when nothing is left to finish.

    Once torch is imported, the teardown (finalizers of its operator libraries) took
    0.4-0.7 s on 2 cores: longer than the work of many commands. It is kept whenever
    something could still need it: a thread that is not a daemon, a child process, an
    open HDF5 file, a distributed process group, or output that cannot be flushed.
    """
    if not _teardown_needed():
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except (OSError, ValueError):  # e.g. the reader of a pipe left: the usual exit
            sys.exit(code)
        logging.shutdown()
        os._exit(code)
    sys.exit(code)


def _teardown_needed() -> bool:
    import threading

    main_thread = threading.main_thread()
    if any(t is not main_thread and t.is_alive() and not t.daemon
           for t in threading.enumerate()):
        return True
    mp = sys.modules.get("multiprocessing")
    if mp is not None and mp.active_children():
        return True
    h5py = sys.modules.get("h5py")
    if h5py is not None and h5py.h5f.get_obj_ids(types=h5py.h5f.OBJ_FILE):
        return True
    torch = sys.modules.get("torch")
    dist = getattr(torch, "distributed", None)
    return bool(dist is not None and dist.is_available() and dist.is_initialized())


if __name__ == "__main__":
    entry()
