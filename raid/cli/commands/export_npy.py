"""`raid export-npy`: a feature store out to the seed's per-image .npy layout."""

from __future__ import annotations

import argparse

NAME = "export-npy"
HELP = ("write one (1, D) float32 .npy per store row at OUT/<key> (imported rows) or "
        "OUT/<image path>.npy (extracted rows), readable by the seed's scripts; every key is "
        "checked first, and nothing is written when one would land outside OUT")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("store", help="feature store (.h5)")
    p.add_argument("out", help="output folder")


def run(args: argparse.Namespace) -> int:
    from raid.store.npyio import export_npy

    n = export_npy(args.store, args.out)
    print(f"wrote {n} .npy files under {args.out}")
    return 0
