"""`raid bench KIND`: speed benchmarks that print ratios measured side by side in one run.

Each kind lives in `raid.bench.<kind>` with `HELP`, `add_arguments(parser)` and `run(args)`
(heavy imports inside `run`). Kinds are found without importing them; only the kind on the
command line is imported; `raid --help` and `raid bench --help` read each kind's HELP from
its source, so listing them imports no torch or Lightning.
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


def _help_of(kind: str) -> str:
    """A kind's HELP string, read from its source without importing the module."""
    import ast
    from pathlib import Path

    import raid.bench

    source = Path(raid.bench.__path__[0], f"{kind}.py").read_text(encoding="utf-8")
    for node in ast.parse(source).body:
        if (isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "HELP"
                                                 for t in node.targets)
                and isinstance(node.value, ast.Constant)):
            return str(node.value.value)
    return ""


def add_arguments(parser: argparse.ArgumentParser, argv: Sequence[str] | None = None) -> None:
    sub = parser.add_subparsers(dest="bench_kind", metavar="KIND", required=True)
    available = kinds()
    first = next((t for t in argv or () if not t.startswith("-")), None)
    if first not in available:  # listing only: no kind is imported
        for kind in available:
            sub.add_parser(kind, help=_help_of(kind))
        return
    for kind in [first]:
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
