"""`raid split`: a feature store into a training store and a held-out test store."""

from __future__ import annotations

import argparse

from raid.cli import args as a

NAME = "split"
HELP = ("split a feature store into a training store and a held-out test store; by pair, "
        "a real photo and its reconstructions always land on the same side")


def add_arguments(p: argparse.ArgumentParser) -> None:
    a.use_formatter(p)
    a.add_input_arguments(p, "STORE", "feature store (.h5) to split (left unchanged)")
    p.add_argument("--test", type=a.fraction, default=0.2, metavar="FRACTION",
                   help="share of the units (photos, rows or groups) put in the test store")
    p.add_argument("--by", choices=["pair", "key", "group"], default="pair",
                   help="what stays together: pair = a photo and every row made from it "
                        "(seed .npy pairs: 0_real/x and 1_fake/x); key = each row alone; "
                        "group = whole groups")
    p.add_argument("--seed", type=int, default=0, help="seed of the shuffle")
    p.add_argument("--out-train", default=None, metavar="TRAIN.h5",
                   help="training store to write (default: STORE-train.h5 beside STORE)")
    p.add_argument("--out-test", default=None, metavar="TEST.h5",
                   help="test store to write (default: STORE-test.h5 beside STORE)")
    p.add_argument("--overwrite", action="store_true", help="replace existing output stores")
    a.add_logging_arguments(p)


def run(args: argparse.Namespace) -> int:
    import logging

    from raid.pipelines.split import split_store

    a.apply_logging(args)
    summary = split_store(a.one_input(args, "feature store"), test=args.test, by=args.by,
                          seed=args.seed, out_train=args.out_train, out_test=args.out_test,
                          overwrite=args.overwrite)
    for warning in summary.warnings:
        logging.getLogger("raid.split").warning("warning: %s", warning)
    print("\n".join(summary.lines()))
    return 0
