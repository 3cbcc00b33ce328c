"""`raid bench KIND`: speed benchmarks that print ratios measured side by side in one run.

Each kind lives in `raid.bench.<kind>` with `HELP`, `add_arguments(parser)` and `run(args)`
(heavy imports inside `run`). Kinds are found without importing them; only the kind on the
command line is imported (all of them for `raid bench --help`).
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
from typing import Sequence

NAME = "bench"
HELP = "speed benchmarks: RAID's path against the seed-style path, measured in one run"


def kinds() -> list[str]:
    """Every public module of `raid.bench`, listed without importing it."""
    import raid.bench

    return sorted(m.name for m in pkgutil.iter_modules(raid.bench.__path__)
                  if not m.name.startswith("_"))


def add_arguments(parser: argparse.ArgumentParser, argv: Sequence[str] | None = None) -> None:
    sub = parser.add_subparsers(dest="bench_kind", metavar="KIND", required=True)
    available = kinds()
    first = next((t for t in argv or () if not t.startswith("-")), None)
    for kind in [first] if first in available else available:
        try:
            module = importlib.import_module(f"raid.bench.{kind}")
        except ModuleNotFoundError as exc:  # an optional extra is not installed
            if first == kind:
                raise
            sub.add_parser(kind, help=f"(unavailable: no module {exc.name})")
            continue
        p = sub.add_parser(kind, help=module.HELP, description=module.HELP,
                           formatter_class=argparse.ArgumentDefaultsHelpFormatter)
        module.add_arguments(p)
        p.set_defaults(bench_run=module.run)


def run(args: argparse.Namespace) -> int:
    return int(args.bench_run(args) or 0)
