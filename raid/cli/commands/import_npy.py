"""`raid import-npy`: the seed's per-image .npy features into a feature store."""

from __future__ import annotations

import argparse

from raid.cli import args as a

NAME = "import-npy"
HELP = ("import the seed's per-image .npy features (SRC/{0_real,1_fake}/*.npy or "
        "SRC/<generator>/[<subset>/]{0_real,1_fake}/*.npy) into a feature store; arrays "
        "that are not float vectors of the common size or hold NaN/inf are skipped by name")


def add_arguments(p: argparse.ArgumentParser) -> None:
    a.use_formatter(p)
    a.add_input_arguments(p, "SRC", "folder of .npy files")
    a.add_out_argument(p, "feature store (.h5) to create or extend", required=True,
                       metavar="STORE.h5")
    p.add_argument("--group", default=None,
                   help="group name for every row (default: the first folder under SRC, or "
                        "SRC's own name when the label folders sit directly under it)")


def run(args: argparse.Namespace) -> int:
    from raid.primitives.keys import display_key
    from raid.store.npyio import import_npy

    s = import_npy(a.one_input(args, "folder of .npy files"), args.out, group=args.group)
    for key, reason in s.skipped:
        print(f"skipped {display_key(key)}: {reason}")
    print(f"added {s.added} rows to {args.out} ({s.already_present} already present, "
          f"{len(s.skipped)} skipped, {s.other_files} other files ignored)")
    for group, by_label in s.counts.items():
        print(f"  {group}: " + ", ".join(f"{_LABEL[l]} {n}" for l, n in sorted(by_label.items())))
    return a.exit_code(len(s.skipped))  # 1: finished, but arrays were skipped (named above)


_LABEL = {0: "real", 1: "generated", -1: "unknown"}
