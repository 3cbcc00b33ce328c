"""`raid export-npy`: a feature store out to the seed's per-image .npy layout."""

from __future__ import annotations

import argparse

from raid.cli import args as a

NAME = "export-npy"
HELP = ("write one (1, D) float32 .npy per store row at OUT/<key> (imported rows) or "
        "OUT/<image path>.npy (extracted rows), readable by the seed's scripts; every key is "
        "checked first, and nothing is written when one would land outside OUT")


def add_arguments(p: argparse.ArgumentParser) -> None:
    a.use_formatter(p)
    p.add_argument("store", help="feature store (.h5)")
    # OUT as a positional (as before) or --out, as every other command writes it.
    p.add_argument("out_folder", nargs="?", metavar="OUT", help="output folder (or --out)")
    a.add_out_argument(p, "output folder", metavar="OUT")


def run(args: argparse.Namespace) -> int:
    from raid.store.npyio import export_npy

    from raid.primitives.errors import RaidError

    if (args.out is None) == (args.out_folder is None):
        raise RaidError("give the output folder once: export-npy STORE OUT, or --out OUT")
    out = args.out or args.out_folder
    n = export_npy(args.store, out)
    print(f"wrote {n} .npy files under {out}")
    return 0
