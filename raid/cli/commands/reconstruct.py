"""`raid reconstruct`: PNG reconstructions of every image in a folder by an autoencoder."""

from __future__ import annotations

import argparse
import os

from raid.models.autoencoders import LATENTS, PRECISIONS
from raid.cli.commands.extract import add_device_arguments

NAME = "reconstruct"
HELP = ("reconstruct every image under --input with a diffusers autoencoder into PNGs under "
        "--output (same tree, suffix .png, same size); a second run does only what is missing")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--vae", required=True,
                   help="local diffusers autoencoder folder (or pipeline folder with vae/)")
    p.add_argument("--input", required=True, help="folder of images (searched recursively)")
    p.add_argument("--output", required=True, help="folder for the PNG reconstructions")
    p.add_argument("--latent", choices=LATENTS, default="sample",
                   help="sample = mean + std * noise (the seed's); mode = the mean")
    p.add_argument("--seed", type=int, default=0,
                   help="each image's latent noise is drawn from (seed, its path)")
    p.add_argument("--precision", choices=sorted(PRECISIONS), default="fp32",
                   help="autoencoder precision; non-finite fp16/bf16 results are redone in fp32")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    g = p.add_argument_group("running")
    g.add_argument("--batch-size", type=int, default=16, help="images of one size per batch")
    g.add_argument("--num-workers", type=int, default=min(8, os.cpu_count() or 1),
                   help="image decoding processes per device")
    add_device_arguments(g)


def run(args: argparse.Namespace) -> int:
    from raid.pipelines.reconstruction import ReconstructOptions, reconstruct_folder

    devices = args.devices if args.devices == "auto" else int(args.devices)
    opts = ReconstructOptions(
        latent=args.latent, seed=args.seed, precision=args.precision,
        batch_size=args.batch_size, num_workers=args.num_workers,
        accelerator=args.accelerator, devices=devices, strategy=args.strategy,
        num_nodes=args.num_nodes, overwrite=args.overwrite, max_pixels=args.max_pixels)
    summary = reconstruct_folder(args.input, args.output, args.vae, opts)
    if summary is not None:  # None on the other processes of a multi-process run
        print("\n".join(summary.lines()))
    return 0
