"""`raid reconstruct`: PNG reconstructions of every image in a folder by an autoencoder."""

from __future__ import annotations

import argparse

from raid.cli import args as a

NAME = "reconstruct"
HELP = ("reconstruct every image in a folder with a diffusers autoencoder into PNGs under "
        "--out (same tree, suffix .png, same size); a second run does only what is missing")
LATENTS = ("sample", "mode")  # raid.models.autoencoders.LATENTS (not imported: torch)


def add_arguments(p: argparse.ArgumentParser) -> None:
    a.use_formatter(p)
    a.add_input_arguments(p, "DIR", "folder of images (searched recursively)")
    p.add_argument("--vae", required=True, metavar="DIR",
                   help="local diffusers autoencoder folder (or pipeline folder with vae/)")
    a.add_out_argument(p, "folder for the PNG reconstructions", required=True, metavar="DIR",
                       old=["--output"])
    p.add_argument("--latent", choices=LATENTS, default="sample",
                   help="sample = mean + std * noise (the seed's); mode = the mean")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    g = p.add_argument_group("running")
    a.add_batching_arguments(g, batch_size=16)
    a.add_precision_argument(g, help="autoencoder precision: 32 = float32; bf16-mixed, "
                                     "16-mixed = bfloat16, float16 (non-finite results are "
                                     "redone in float32)")
    a.add_seed_argument(g, help="each image's latent noise is drawn from (seed, its path)")
    a.add_device_arguments(g)
    a.add_max_pixels_argument(g)
    a.add_logging_arguments(p)


def run(args: argparse.Namespace) -> int:
    a.apply_logging(args)
    folder = a.one_input(args, "image folder")
    a.check_accelerator(args)
    from raid.pipelines.reconstruction import ReconstructOptions, reconstruct_folder

    opts = ReconstructOptions(
        latent=args.latent, seed=args.seed,
        precision=a.AUTOENCODER_PRECISION[args.precision], batch_size=args.batch_size,
        num_workers=args.num_workers, accelerator=args.accelerator, devices=args.devices,
        strategy=args.strategy, num_nodes=args.num_nodes, overwrite=args.overwrite,
        max_pixels=args.max_pixels)
    summary = reconstruct_folder(folder, args.out, args.vae, opts)
    if summary is None:  # the other processes of a multi-process run
        return 0
    print("\n".join(summary.lines()))
    return a.exit_code(len(summary.failed))
