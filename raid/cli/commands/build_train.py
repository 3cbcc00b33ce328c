"""`raid build-train`: a training store (real photos + their reconstructions) in one pass."""

from __future__ import annotations

import argparse

from raid.cli import args as a

NAME = "build-train"
HELP = ("features of the real photos in a folder and of their reconstructions by each "
        "--vae into one training store, no intermediate images; a second run adds only what "
        "is missing; then run `raid fit`")
LATENTS = ("sample", "mode")  # raid.models.autoencoders.LATENTS (not imported: torch)


def add_arguments(p: argparse.ArgumentParser) -> None:
    a.use_formatter(p)
    a.add_input_arguments(p, "REAL_DIR", "folder of real photos (searched recursively)",
                          old=["--real"])
    p.add_argument("--vae", required=True, action="append", metavar="DIR",
                   help="local diffusers autoencoder folder; repeat for several (each one's "
                        "folder name is its group in the store)")
    a.add_out_argument(p, "feature store (.h5) to create or complete", required=True,
                       metavar="STORE.h5", old=["--output"])
    g = p.add_argument_group("reconstruction")
    g.add_argument("--latent", choices=LATENTS, default="sample",
                   help="sample = mean + std * noise (the seed's); mode = the mean")
    g.add_argument("--recon-seed", type=int, default=None,
                   help="seed of the latent noise (default: --seed), as `raid reconstruct --seed`")
    a.add_precision_argument(g, flag="--recon-precision",
                             help="autoencoder precision, as `raid reconstruct --precision`")
    g.add_argument("--same-position", action="store_true",
                   help="crop each reconstruction where its photo's patch is (default: each "
                        "image chooses its own, as extraction from PNGs does)")
    a.add_aim_arguments(p)
    a.add_run_arguments(p)
    a.add_logging_arguments(p)


def run(args: argparse.Namespace) -> int:
    a.apply_logging(args)
    real = a.one_input(args, "folder of real photos")
    from raid.pipelines.build_train import build_train

    summary = build_train(real, args.vae, args.out, a.extract_options(args),
                          latent=args.latent, recon_seed=args.recon_seed,
                          recon_precision=a.AUTOENCODER_PRECISION[args.recon_precision],
                          same_position=args.same_position)
    if summary is None:  # the other processes of a multi-process run
        return 0
    print("\n".join(summary.lines()))
    return a.exit_code(len(summary.failed))
