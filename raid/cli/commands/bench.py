"""`raid bench KIND`: speed benchmarks that print ratios measured side by side in one run.

Each kind lives in `raid.bench.<kind>` with `HELP`, `add_arguments(parser)` and `run(args)`.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil

NAME = "bench"
HELP = "speed benchmarks: RAID's path against the seed-style path, measured in one run"
# Every module of `raid.bench` with a HELP is a kind; listed without importing it.


def kinds() -> list[str]:
    import raid.bench

    return sorted(m.name for m in pkgutil.iter_modules(raid.bench.__path__)
                  if not m.name.startswith("_"))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="bench_kind", metavar="KIND", required=True)
    for kind in kinds():
        module = importlib.import_module(f"raid.bench.{kind}")
        p = sub.add_parser(kind, help=module.HELP, description=module.HELP,
                           formatter_class=argparse.ArgumentDefaultsHelpFormatter)
        module.add_arguments(p)
        p.set_defaults(bench_run=module.run)


def run(args: argparse.Namespace) -> int:
    return int(args.bench_run(args) or 0)
