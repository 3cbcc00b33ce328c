"""`raid build-train`: a training store (real photos + their reconstructions) in one pass."""

from __future__ import annotations

import argparse

from raid.models.autoencoders import LATENTS, PRECISIONS
from raid.cli.commands.extract import add_model_arguments, add_run_arguments, options_from

NAME = "build-train"
HELP = ("features of the real photos under --real and of their reconstructions by each --vae "
        "into one training store, no intermediate images; a second run adds only what is "
        "missing; then run `raid fit`")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--real", required=True, help="folder of real photos (searched recursively)")
    p.add_argument("--vae", required=True, action="append",
                   help="local diffusers autoencoder folder; repeat for several (each one's "
                        "folder name is its group in the store)")
    p.add_argument("--out", required=True, help="feature store (.h5) to create or complete")
    g = p.add_argument_group("reconstruction")
    g.add_argument("--latent", choices=LATENTS, default="sample",
                   help="sample = mean + std * noise (the seed's); mode = the mean")
    g.add_argument("--recon-seed", type=int, default=None,
                   help="seed of the latent noise (default: --seed), as `raid reconstruct --seed`")
    g.add_argument("--recon-precision", choices=sorted(PRECISIONS), default="fp32",
                   help="autoencoder precision, as `raid reconstruct --precision`")
    g.add_argument("--same-position", action="store_true",
                   help="crop each reconstruction where its photo's patch is (default: each "
                        "image chooses its own, as extraction from PNGs does)")
    add_model_arguments(p)
    add_run_arguments(p)


def run(args: argparse.Namespace) -> int:
    from raid.pipelines.build_train import build_train

    summary = build_train(args.real, args.vae, args.out, options_from(args),
                          latent=args.latent, recon_seed=args.recon_seed,
                          recon_precision=args.recon_precision,
                          same_position=args.same_position)
    if summary is not None:  # None on the other processes of a multi-process run
        print("\n".join(summary.lines()))
    return 0
