"""`raid benchmark`: a saved detector on every generator of a benchmark, clean and perturbed."""

from __future__ import annotations

import argparse

from raid.cli import args as a
from raid.primitives.errors import RaidError

NAME = "benchmark"
HELP = ("evaluate a detector on every generator folder of a benchmark (ROOT/<generator>/"
        "[<subset>/]{0_real,1_fake}) or on a ready feature store, optionally under "
        "perturbations; writes the paper's table per setting and a robustness plot")


def add_arguments(p: argparse.ArgumentParser) -> None:
    a.use_formatter(p)
    p.add_argument("--config", required=True, metavar="YAML",
                   help="benchmark YAML listing the generator folders (e.g. "
                        "configs/benchmark/aigcdetect.yaml)")
    p.add_argument("--model", required=True, metavar="MODEL",
                   help="model file written by `raid fit`")
    a.add_out_argument(p, "report folder (one subfolder per setting)", required=True,
                       metavar="DIR", old=["--output"])
    src = p.add_argument_group("input (one of)")
    one = src.add_mutually_exclusive_group(required=True)
    one.add_argument("--root", "--input", dest="root", metavar="DIR",
                     help="benchmark image folder (features are extracted, cached)")
    one.add_argument("--features", metavar="STORE.h5",
                     help="feature store (.h5) of the benchmark, e.g. the seed's test features "
                          "imported with `raid import-npy`; no images, no AIM options")
    p.add_argument("--cache", default=None, metavar="DIR",
                   help="folder of cached feature stores (default: OUT/features)")
    p.add_argument("--perturb", nargs="+", default=[], metavar="SPEC",
                   help="robustness settings, e.g. jpeg=95,75,50 blur=1,2 resize=0.5 "
                        "noise=0.05 (clean is always evaluated too)")
    p.add_argument("--allow-mismatch", action="store_true",
                   help="evaluate even when the features (or AIM checkpoints) differ from "
                        "those the model was fitted on (warns)")
    a.add_aim_arguments(p, required=False)  # not needed with --features
    a.add_run_arguments(p)
    a.add_logging_arguments(p)


def run(args: argparse.Namespace) -> int:
    a.apply_logging(args)
    from raid.pipelines.benchmark import load_benchmark_config, run_benchmark
    from raid.primitives.perturb import parse_sweep

    config = load_benchmark_config(args.config)
    perturbations = parse_sweep(args.perturb) if args.perturb else []
    opts = None
    if args.root is not None:
        if not args.arch or not args.backbone:
            raise RaidError("--root needs the AIM options --arch and --backbone (and --head)")
        opts = a.extract_options(args)
    summary = run_benchmark(config, args.model, args.out, root=args.root, opts=opts,
                            perturbations=perturbations, features=args.features,
                            cache=args.cache, allow_mismatch=args.allow_mismatch)
    if summary is None:  # the other processes of a multi-process run
        return 0
    print("\n".join(summary.lines()))
    return a.exit_code(sum(len(s.failed) for s in summary.settings))
