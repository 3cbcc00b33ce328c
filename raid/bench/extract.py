"""`raid bench extract`: RAID's extraction against a seed-style loop, in one run.

Both sides start from the same JPEG files on disk and use the same random-weight AIM:
- RAID: the real `raid extract` path (DataModule with loader workers, batched, chosen
  precision, blocks only up to the last probe layer, shards merged into a store);
- seed-style: one image at a time, float32, every block, the per-patch scoring loop.
It also times the model alone on random input, both ways, and reports the share of the
GPU's bf16 peak that RAID's model step reaches.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from datamodules.images import ImageFolderDataModule, discover_images
from raid.models.aim import AimConfig, build_aim, load_config
from raid.pipelines.extraction import (PRECISIONS, FeatureExtractor, ShardPredictionWriter,
                                       parts_dir_of)
from raid.pipelines.predict import run_predict
from raid.primitives import synthetic
from raid.primitives.patches import (draw_candidates_reference, normalize, patch_rng,
                                     patch_scores_reference)
from raid.store.store import merge_shards

HELP = "images/s of RAID's feature extraction against a seed-style loop (batch 1, fp32, all blocks)"
BENCH_PROVENANCE = {"extractor": "bench"}  # the bench's shards and its scratch store agree
BF16_PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0}  # dense, SXM


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--arch", default="3b", help="AIM size or YAML (random weights)")
    p.add_argument("--n", type=int, default=512, help="JPEG images for RAID's path")
    p.add_argument("--seed-n", type=int, default=32, help="images for the seed-style loop")
    p.add_argument("--image-size", type=int, default=512, help="side of the JPEG files")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--num-workers", type=int, default=8)
    p.add_argument("--precision", choices=sorted(PRECISIONS), default=None,
                   help="default: bf16-mixed on a GPU, 32 on the CPU")
    p.add_argument("--accelerator", "--device", dest="accelerator", default="auto",
                   choices=["auto", "cpu", "gpu", "cuda"],
                   help="auto = a GPU when one is visible (--device and cuda: older spellings)")
    p.add_argument("--compile", action="store_true", help="torch.compile RAID's model")


def flops_per_image(c: AimConfig, blocks: int) -> float:
    """Multiply-adds x 2 of the trunk up to `blocks` blocks (qkv, projection, attention,
    MLP) plus the patch embedding; the probe head is small beside them."""
    n, d = c.num_tokens, c.width
    per_block = 2 * n * 12 * d * d + 4 * n * n * d
    return blocks * per_block + 2 * n * 3 * c.patch_size ** 2 * d


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def seed_style_images_per_s(model, folder: Path, n: int, size: int,
                            device: torch.device) -> float:
    """The seed's loop: decode, float32 array, 192 patches scored one by one, batch 1,
    float32, every block."""
    files = sorted(folder.glob("*.jpg"))[:n]
    start = time.perf_counter()
    for f in files:
        image = np.array(Image.open(f).convert("RGB"))
        rng = patch_rng(0, f.name)
        tops, lefts = draw_candidates_reference(rng, *image.shape[:2], size)
        scores = patch_scores_reference(image, tops, lefts, size)
        best = int(np.argmax(scores))
        patch = image[tops[best]:tops[best] + size, lefts[best]:lefts[best] + size]
        x = normalize(torch.from_numpy(np.ascontiguousarray(patch))[None]).to(device)
        with torch.inference_mode():
            model.features(x, all_blocks=True).cpu()
    _sync(device)
    return len(files) / (time.perf_counter() - start)


def raid_images_per_s(model, folder: Path, args, precision: str, accelerator: str,
                      size: int) -> float:
    """The `raid extract` path over the same files, into a throwaway store."""
    listing = discover_images(folder)
    store = folder.parent / "bench.h5"

    def once(keys: list[str]) -> float:
        dm = ImageFolderDataModule(listing.subset(keys), batch_size=args.batch_size,
                                   num_workers=args.num_workers, patch_size=size,
                                   pin_memory=accelerator == "gpu")
        writer = ShardPredictionWriter(parts_dir_of(store), model.config.width, "bench",
                                       BENCH_PROVENANCE)
        start = time.perf_counter()
        run_predict(FeatureExtractor(model, args.compile), dm, accelerator=accelerator,
                    devices=1, precision=precision, callbacks=[writer], stage="extracting")
        merge_shards(store, parts_dir_of(store), model.config.width, BENCH_PROVENANCE)
        seconds = time.perf_counter() - start
        store.unlink(missing_ok=True)
        return len(keys) / seconds

    once(listing.keys[: min(len(listing.keys), 2 * args.batch_size)])  # warm-up (compile, cuDNN)
    return once(listing.keys)


def model_images_per_s(fn, batch: int, size: int, device: torch.device,
                       seconds: float = 3.0) -> float:
    x = torch.randn(batch, 3, size, size, device=device)
    with torch.inference_mode():
        fn(x)
        _sync(device)
        start, done = time.perf_counter(), 0
        while time.perf_counter() - start < seconds or done == 0:
            fn(x)
            done += batch
        _sync(device)
    return done / (time.perf_counter() - start)


def run(args: argparse.Namespace) -> int:
    device = torch.device("cuda" if args.accelerator in ("gpu", "cuda") or (
        args.accelerator == "auto" and torch.cuda.is_available()) else "cpu")
    precision = args.precision or ("bf16-mixed" if device.type == "cuda" else "32")
    config = load_config(args.arch)
    size = config.image_size
    torch.manual_seed(0)
    model = build_aim(config, device=device).eval()  # random weights are fine for speed
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"AIM {config.name} (random weights), {name}, precision {precision}, "
          f"batch {args.batch_size}, {args.image_size} px JPEG files")

    autocast = torch.autocast(device.type, dtype=torch.bfloat16,
                              enabled=precision.startswith("bf16"))
    raid_model = torch.compile(model) if args.compile else model

    def raid_step(x):
        with autocast:
            return raid_model(x)

    m_raid = model_images_per_s(raid_step, args.batch_size, size, device)
    m_seed = model_images_per_s(lambda x: model.features(x, all_blocks=True), 1, size, device)

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "images"
        side = args.image_size
        synthetic.write_images(folder, {f"img{i:05d}.jpg": (side, side)
                                        for i in range(max(args.n, args.seed_n))}, quality=90)
        e_seed = seed_style_images_per_s(model, folder, args.seed_n, size, device)
        e_raid = raid_images_per_s(model, folder, args, precision,
                                   "gpu" if device.type == "cuda" else "cpu", size)

    print(f"{'':28}{'RAID':>12}{'seed-style':>12}{'ratio':>8}")
    print(f"{'end to end (images/s)':28}{e_raid:12.1f}{e_seed:12.1f}{e_raid / e_seed:8.1f}x")
    print(f"{'model alone (images/s)':28}{m_raid:12.1f}{m_seed:12.1f}{m_raid / m_seed:8.1f}x")
    tflops = m_raid * flops_per_image(config, config.last_probe_layer + 1) / 1e12
    line = f"RAID model step: {tflops:.3f} TFLOP/s"
    peak = next((v for k, v in BF16_PEAK_TFLOPS.items() if k in name), None)
    if peak and precision.startswith("bf16"):
        line += f", {100 * tflops / peak:.0f} % of the {name} bf16 dense peak ({peak:.0f})"
    print(line)
    return 0
