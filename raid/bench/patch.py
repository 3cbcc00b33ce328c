"""`raid bench patch`: texture-rich patch selection, seed-style loop against RAID's.

Seed style: the image as a float32 array, 192 candidate patches scored one by one with
numpy (`raid.primitives.patches.patch_scores_reference`), first maximum kept. RAID: all 192 scores at
once from summed-area tables (`raid.primitives.patches.select_rich_patch`). Both draw from a
`random.Random` with the same seed per image, so they must choose the same patch; the run
fails (exit code 1) if any choice differs.
"""

from __future__ import annotations

import argparse
import random
import time

import numpy as np
import torch
from PIL import Image

from raid.primitives.errors import RaidError
from raid.primitives.patches import (CANDIDATES, PATCH_SIZE, draw_candidates, patch_scores_reference,
                          select_rich_patch)

HELP = "texture-rich patch selection: seed-style per-patch loop vs summed-area tables"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--images", type=int, default=16, help="number of synthetic images")
    parser.add_argument("--height", type=int, default=512, help="image height")
    parser.add_argument("--width", type=int, default=512, help="image width")
    parser.add_argument("--candidates", type=int, default=CANDIDATES, help="patches per image")
    parser.add_argument("--seed", type=int, default=0, help="seed of the images and draws")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads for RAID's side (the numpy loop uses one core; "
                             "extraction workers run one thread each)")
    parser.add_argument("--device", default="cpu",
                        help="torch device for RAID's scoring (e.g. cuda); transfer is timed")


def synthetic_images(count: int, height: int, width: int, seed: int) -> list[np.ndarray]:
    """Natural-looking uint8 RGB test images: smooth multi-scale noise, a few sharp-edged
    shapes, and fine grain whose strength varies across the image (so that the patches'
    scores spread as in photos, with rich and flat areas)."""
    rng = np.random.default_rng(seed)
    images = []
    for _ in range(count):
        x = np.zeros((height, width, 3), np.float32)
        for cells, amplitude in ((4, 90.0), (16, 40.0), (64, 15.0)):
            coarse = rng.normal(0.0, 1.0, (cells, cells, 3)).astype(np.float32)
            for c in range(3):
                layer = Image.fromarray(coarse[:, :, c], mode="F").resize((width, height),
                                                                          Image.BICUBIC)
                x[:, :, c] += amplitude * np.asarray(layer)
        rows, cols = np.mgrid[0:height, 0:width]
        for _ in range(int(rng.integers(3, 8))):  # shapes with hard edges
            cy, cx = rng.uniform(0, height), rng.uniform(0, width)
            ry, rx = rng.uniform(10, height / 3), rng.uniform(10, width / 3)
            mask = ((rows - cy) / ry) ** 2 + ((cols - cx) / rx) ** 2 <= 1.0
            x[mask] = 0.3 * x[mask] + rng.uniform(0, 255, 3).astype(np.float32)
        grain = Image.fromarray(rng.uniform(0, 12, (4, 4)).astype(np.float32), mode="F")
        strength = np.asarray(grain.resize((width, height), Image.BILINEAR))
        x += strength[:, :, None] * rng.normal(0.0, 1.0, (height, width, 3)).astype(np.float32)
        images.append(np.clip(x + 128.0, 0, 255).astype(np.uint8))
    return images


def seed_style_choice(image: np.ndarray, rng: random.Random, candidates: int) -> tuple[int, int]:
    """What the seed does: float32 array, draw, score patch by patch, keep the first maximum."""
    x = image.astype(np.float32)
    tops, lefts = draw_candidates(rng, x.shape[0], x.shape[1], PATCH_SIZE, candidates)
    scores = patch_scores_reference(x, tops, lefts, PATCH_SIZE)
    best = int(np.argmax(scores))
    return tops[best], lefts[best]


def run(args: argparse.Namespace) -> int:
    if args.height < PATCH_SIZE or args.width < PATCH_SIZE:
        raise RaidError(f"--height and --width must be at least {PATCH_SIZE}")
    if args.images < 1 or args.candidates < 1:
        raise RaidError("--images and --candidates must be at least 1")
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RaidError(f"--device {args.device}: no CUDA device is available")
    threads = torch.get_num_threads()
    torch.set_num_threads(max(1, args.threads))
    try:
        return _run(args, device)
    finally:
        torch.set_num_threads(threads)


def _run(args: argparse.Namespace, device: torch.device) -> int:
    images = synthetic_images(args.images, args.height, args.width, args.seed)

    def ours(image: np.ndarray, rng: random.Random) -> tuple[int, int]:
        if device.type == "cpu":
            return select_rich_patch(image, rng, PATCH_SIZE, args.candidates)
        return select_rich_patch(torch.from_numpy(image).to(device), rng, PATCH_SIZE,
                                 args.candidates)

    ours(images[0], random.Random(0))  # warm-up: first-call overheads are not the method's
    if device.type == "cuda":
        torch.cuda.synchronize(device)

    start = time.perf_counter()
    seed_choices = [seed_style_choice(im, random.Random(args.seed + i), args.candidates)
                    for i, im in enumerate(images)]
    seed_time = time.perf_counter() - start

    start = time.perf_counter()
    raid_choices = [ours(im, random.Random(args.seed + i)) for i, im in enumerate(images)]
    raid_time = time.perf_counter() - start  # .cpu() inside select_rich_patch synchronises

    same = sum(a == b for a, b in zip(seed_choices, raid_choices))
    n = len(images)
    print(f"patch selection, {n} images of {args.width} x {args.height}, "
          f"{args.candidates} candidates of {PATCH_SIZE} x {PATCH_SIZE}, "
          f"torch threads {torch.get_num_threads()}")
    print(f"  seed-style loop (numpy float32, patch by patch): {n / seed_time:9.1f} images/s")
    print(f"  RAID prefix sums (torch, exact integers, {device}):{n / raid_time:9.1f} images/s")
    print(f"  ratio: {seed_time / raid_time:.1f}x faster; same patch chosen: {same}/{n}")
    return 0 if same == n else 1
