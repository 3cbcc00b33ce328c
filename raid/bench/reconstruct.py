"""`raid bench reconstruct`: autoencoder reconstruction, seed-style loop against RAID's path.

Seed style (`raid.models.autoencoders.reconstruct_seed_style`): one image at a time, float32, the
latent sampled by diffusers with one shared generator. RAID: `Reconstructor.reconstruct` on
batches of equal-size images with per-image seeded noise, in the chosen precision. Both
include the host-device transfers and the 8-bit conversion; neither reads or writes files.
The model is the Stable Diffusion 1.x VAE architecture with random weights (speed does not
depend on the weights); `--tiny` swaps in a tiny one for a quick CPU smoke run.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from raid.models.autoencoders import (PRECISIONS, Reconstructor, reconstruct_seed_style,
                                      sd_vae_config, tiny_autoencoder_kl)
from raid.primitives import synthetic
from raid.primitives.seeding import stable_seed

HELP = "autoencoder reconstruction: seed-style loop (batch 1, fp32) vs RAID's batched path"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--n", type=int, default=16, help="number of images")
    parser.add_argument("--batch-size", type=int, default=8, help="RAID's batch size")
    parser.add_argument("--height", type=int, default=512)
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--accelerator", "--device", dest="accelerator", default="auto",
                        choices=["auto", "cpu", "gpu", "cuda"],
                        help="auto = a GPU when one is visible (--device and cuda: older "
                             "spellings)")
    parser.add_argument("--precision", choices=["auto", *sorted(PRECISIONS)], default="auto",
                        help="RAID's autoencoder precision; auto = bf16 on CUDA, fp32 on CPU "
                             "(the seed-style loop is always fp32, as the seed)")
    parser.add_argument("--tiny", action="store_true",
                        help="a tiny random autoencoder instead of the SD VAE (smoke run)")
    parser.add_argument("--seed", type=int, default=0)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run(args: argparse.Namespace) -> int:
    from diffusers import AutoencoderKL

    gpu = args.accelerator in ("gpu", "cuda") or (args.accelerator == "auto"
                                                  and torch.cuda.is_available())
    device = torch.device("cuda" if gpu else "cpu")
    precision = args.precision
    if precision == "auto":
        precision = "bf16" if device.type == "cuda" else "fp32"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(args.seed)
        model = (tiny_autoencoder_kl(args.seed, num_blocks=4) if args.tiny
                 else AutoencoderKL(**sd_vae_config()))
    model = model.to(device).eval().requires_grad_(False)
    images = synthetic.images(args.n, args.height, args.width, args.seed)
    keys = [f"bench/{i:05d}.png" for i in range(args.n)]
    seeds = [stable_seed(args.seed, k, "noise") for k in keys]
    rec = Reconstructor(model, precision=precision)

    def raid_path() -> None:
        for start in range(0, args.n, args.batch_size):
            batch = np.stack(images[start:start + args.batch_size])
            x = torch.from_numpy(batch).permute(0, 3, 1, 2)
            rec.reconstruct(x, seeds[start:start + args.batch_size]).cpu()

    def seed_path() -> None:
        generator = torch.Generator("cpu").manual_seed(1)
        gen = generator if device.type == "cpu" else torch.Generator(device).manual_seed(1)
        for image in images:
            reconstruct_seed_style(model, image, gen)

    # Warm-up (allocator, cuDNN choices, the reduced-precision copy): not the method's cost.
    first = torch.from_numpy(np.stack(images[:min(args.batch_size, args.n)])).permute(0, 3, 1, 2)
    rec.reconstruct(first, seeds[:first.shape[0]])
    reconstruct_seed_style(model, images[0], torch.Generator(device).manual_seed(1))
    _sync(device)

    start = time.perf_counter()
    seed_path()
    _sync(device)
    seed_time = time.perf_counter() - start
    start = time.perf_counter()
    raid_path()
    _sync(device)
    raid_time = time.perf_counter() - start

    n = args.n
    name = "tiny AutoencoderKL" if args.tiny else "SD 1.x VAE architecture (random weights)"
    print(f"reconstruction, {n} images of {args.width} x {args.height}, {name}, {device}, "
          f"torch threads {torch.get_num_threads()}")
    print(f"  seed-style loop (batch 1, fp32):           {n / seed_time:9.3f} images/s")
    print(f"  RAID Reconstructor (batch {args.batch_size}, {precision}):"
          f"{' ' * max(1, 14 - len(str(args.batch_size)) - len(precision))}{n / raid_time:9.3f} images/s")
    print(f"  ratio: {seed_time / raid_time:.2f}x")
    return 0
