"""`raid bench cli`: how long the command line takes to answer, as whole processes.

Times `raid --help`, `raid --version`, `raid COMMAND --help` for every command and a
one-line usage error, each as a fresh `python -m raid.cli` process (what a user waits for),
beside a bare `python -c pass` measured in the same run, so the figures read as RAID's cost
on top of starting Python. Goal: each under 1 s on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

HELP = "start-up time of `raid --help`, `--version`, every `COMMAND --help` and a usage error"
GOAL_S = 1.0


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--runs", type=int, default=5, help="runs of each command (best is shown)")


def _seconds(argv: list[str], runs: int) -> tuple[float, int]:
    best, code = float("inf"), 0
    for _ in range(runs):
        start = time.perf_counter()
        code = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              check=False).returncode
        best = min(best, time.perf_counter() - start)
    return best, code


def run(args: argparse.Namespace) -> int:
    from raid.primitives.errors import RaidError

    if args.runs < 1:
        raise RaidError("--runs must be at least 1")
    import pkgutil
    from pathlib import Path

    import raid

    # The command modules, listed from their folder (the bench layer does not import the CLI).
    folder = Path(raid.__file__).parent / "cli" / "commands"
    names = sorted(m.name for m in pkgutil.iter_modules([str(folder)]))
    raid = [sys.executable, "-m", "raid.cli"]
    cases = [("python -c pass (baseline)", [sys.executable, "-c", "pass"]),
             ("raid --help", raid + ["--help"]), ("raid --version", raid + ["--version"]),
             ("raid fit --no-such-option (usage error)", raid + ["fit", "--no-such-option"])]
    cases += [(f"raid {n.replace('_', '-')} --help", raid + [n.replace("_", "-"), "--help"])
              for n in names]
    print(f"whole-process start-up, best of {args.runs} runs each (goal: under {GOAL_S:.0f} s)")
    baseline = None
    slow = []
    for label, argv in cases:
        seconds, code = _seconds(argv, args.runs)
        baseline = seconds if baseline is None else baseline
        ratio = seconds / baseline
        mark = "" if seconds < GOAL_S or label.startswith("python") else "  <- over the goal"
        if mark:
            slow.append(label)
        print(f"  {label:<44} {seconds:6.3f} s  {ratio:5.1f}x python's start  exit {code}{mark}")
    print(f"{len(cases) - 1 - len(slow)} of {len(cases) - 1} under {GOAL_S:.0f} s")
    return 1 if slow else 0
