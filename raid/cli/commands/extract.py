"""`raid extract`: AIM features of every image in a folder into a feature store."""

from __future__ import annotations

import argparse
import os

from raid.pipelines.extraction import ExtractOptions, PRECISIONS, extract
from raid.primitives.images import DEFAULT_MAX_PIXELS
from raid.primitives.perturb import CLEAN, Perturbation

NAME = "extract"
HELP = ("extract AIM v1 features (one texture-rich patch per image) of every image under "
        "--input into an HDF5 store; a second run extracts only what is missing")


def add_model_arguments(p: argparse.ArgumentParser, required: bool = True) -> None:
    """The AIM options, shared by every command that extracts features."""
    g = p.add_argument_group("AIM model")
    g.add_argument("--arch", required=required,
                   help="600m, 1b, 3b, 7b, or a YAML file with width, depth, heads, "
                        "probe_layers, patch_size, image_size")
    g.add_argument("--backbone", required=required,
                   help="official backbone .pth (or one merged .pth/.safetensors state dict)")
    g.add_argument("--head", default=None, help="official attention-probe head .pth")
    g.add_argument("--probe", choices=["best", "last"], default="best",
                   help="which probe layers the head was trained on")


def add_run_arguments(p: argparse.ArgumentParser) -> None:
    """How the extraction runs: batching, precision, devices. Shared likewise."""
    g = p.add_argument_group("running")
    g.add_argument("--batch-size", type=int, default=64)
    g.add_argument("--num-workers", type=int, default=min(8, os.cpu_count() or 1),
                   help="image decoding processes per device")
    g.add_argument("--precision", choices=sorted(PRECISIONS), default="32",
                   help="32 = float32; bf16-mixed = bfloat16 autocast (GPUs)")
    g.add_argument("--seed", type=int, default=0,
                   help="run seed: each file's patch is drawn from (seed, its path)")
    add_device_arguments(g)
    g.add_argument("--compile", action="store_true", help="torch.compile the model (GPUs)")


def add_device_arguments(g) -> None:
    """Where a Lightning run goes and which images it refuses: shared by every command
    that runs over image folders."""
    g.add_argument("--accelerator", choices=["cpu", "gpu", "auto"], default="auto")
    g.add_argument("--devices", default="auto", help="devices per node (a number or auto)")
    g.add_argument("--strategy", choices=["auto", "ddp"], default="auto")
    g.add_argument("--num-nodes", type=int, default=1)
    g.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS,
                   help="refuse images with more pixels than this, before decoding")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--input", required=True, help="folder of images (searched recursively)")
    p.add_argument("--out", required=True, help="feature store (.h5) to create or complete")
    p.add_argument("--key-prefix", default="",
                   help="put NAME/ before every key: needed to add a second input folder "
                        "to a store (the store records the folders it was extracted from)")
    add_model_arguments(p)
    add_run_arguments(p)


def options_from(args: argparse.Namespace, perturbation: Perturbation = CLEAN) -> ExtractOptions:
    devices = args.devices if args.devices == "auto" else int(args.devices)
    return ExtractOptions(
        arch=args.arch, backbone=args.backbone, head=args.head, probe=args.probe,
        batch_size=args.batch_size, num_workers=args.num_workers, precision=args.precision,
        seed=args.seed, accelerator=args.accelerator, devices=devices, strategy=args.strategy,
        num_nodes=args.num_nodes, max_pixels=args.max_pixels, perturbation=perturbation,
        compile=args.compile, key_prefix=getattr(args, "key_prefix", "") or "")


def run(args: argparse.Namespace) -> int:
    summary = extract(args.input, args.out, options_from(args))
    if summary is not None:  # None on the other processes of a multi-process run
        print("\n".join(summary.lines()))
    return 0
