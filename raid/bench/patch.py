"""`raid bench patch`: texture-rich patch selection, seed-style loop against RAID's.

Seed style: the image as a float32 array, 192 candidate patches scored one by one with
numpy (`raid.primitives.patches.patch_scores_reference`), first maximum kept. RAID: all
192 scores at once from summed-area tables (`raid.primitives.patches.select_rich_patch`),
as the extraction runs it: torch's thread count left as it is (`--threads` sets it).
Both draw from a `random.Random` with the same seed per image, so they must choose the
same patch; the run fails (exit code 1) if any choice differs.

`--busy` runs both sides beside a competing CPU-bound process, started here and stopped
when the comparison ends (it also stops by itself after `--busy-seconds`): a method that
only shines on an idle machine shows it here.
"""

from __future__ import annotations

import argparse
import contextlib
import random
import subprocess
import sys
import time
from typing import Iterator

import numpy as np

HELP = "texture-rich patch selection: seed-style per-patch loop vs summed-area tables"
_PATCH_SIZE = 224  # raid.primitives.patches.PATCH_SIZE, without importing torch here
_CANDIDATES = 192  # raid.primitives.patches.CANDIDATES

# A competing process: pure-Python spinning keeps one core busy until its deadline.
_SPIN = "import time\nend = time.monotonic() + {seconds}\nwhile time.monotonic() < end:\n    pass\n"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--images", type=int, default=16, help="number of synthetic images")
    parser.add_argument("--height", type=int, default=512, help="image height")
    parser.add_argument("--width", type=int, default=512, help="image width")
    parser.add_argument("--candidates", type=int, default=_CANDIDATES, help="patches per image")
    parser.add_argument("--seed", type=int, default=0, help="seed of the images and draws")
    parser.add_argument("--threads", type=int, default=None,
                        help="set torch's CPU threads first (default: leave them as they are)")
    parser.add_argument("--accelerator", "--device", dest="accelerator", default="cpu",
                        choices=["cpu", "gpu", "cuda"],
                        help="where RAID's scoring runs (gpu: transfer is timed; --device and "
                             "cuda are older spellings)")
    parser.add_argument("--busy", action="store_true",
                        help="run beside a competing CPU-bound process (started and stopped here)")
    parser.add_argument("--busy-seconds", type=float, default=300.0,
                        help="the competing process stops by itself after this long")


def seed_style_choice(image: np.ndarray, rng: random.Random, candidates: int) -> tuple[int, int]:
    """What the seed does: float32 array, draw, score patch by patch, keep the first maximum."""
    from raid.primitives.patches import draw_candidates_reference, patch_scores_reference

    x = image.astype(np.float32)
    tops, lefts = draw_candidates_reference(rng, x.shape[0], x.shape[1], _PATCH_SIZE,
                                            candidates)
    scores = patch_scores_reference(x, tops, lefts, _PATCH_SIZE)
    best = int(np.argmax(scores))
    return tops[best], lefts[best]


@contextlib.contextmanager
def competing_process(seconds: float) -> Iterator[subprocess.Popen]:
    """A CPU-bound child process for the length of the block (and at most `seconds`)."""
    child = subprocess.Popen([sys.executable, "-c", _SPIN.format(seconds=float(seconds))],
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.2)  # let it start spinning before anything is timed
        yield child
    finally:
        child.terminate()
        try:
            child.wait(timeout=5)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def run(args: argparse.Namespace) -> int:
    import torch

    from raid.primitives.errors import RaidError

    if args.height < _PATCH_SIZE or args.width < _PATCH_SIZE:
        raise RaidError(f"--height and --width must be at least {_PATCH_SIZE}")
    if args.images < 1 or args.candidates < 1:
        raise RaidError("--images and --candidates must be at least 1")
    if args.busy_seconds <= 0:
        raise RaidError("--busy-seconds must be positive")
    device = torch.device("cpu" if args.accelerator == "cpu" else "cuda")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RaidError(f"--accelerator {args.accelerator}: no CUDA device is available")
    threads = torch.get_num_threads()
    if args.threads is not None:
        torch.set_num_threads(max(1, args.threads))
    try:
        busy = competing_process(args.busy_seconds) if args.busy else contextlib.nullcontext()
        with busy:
            return _run(args, device)
    finally:
        torch.set_num_threads(threads)


def _run(args: argparse.Namespace, device) -> int:
    import torch

    from raid.primitives import synthetic
    from raid.primitives.patches import select_rich_patch

    images = synthetic.images(args.images, args.height, args.width, args.seed,
                              make=synthetic.textured)

    def ours(image: np.ndarray, rng: random.Random) -> tuple[int, int]:
        if device.type == "cpu":
            return select_rich_patch(image, rng, _PATCH_SIZE, args.candidates)
        return select_rich_patch(torch.from_numpy(image).to(device), rng, _PATCH_SIZE,
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
    where = "numpy, one core" if device.type == "cpu" else f"torch on {device}"
    print(f"patch selection, {n} images of {args.width} x {args.height}, "
          f"{args.candidates} candidates of {_PATCH_SIZE} x {_PATCH_SIZE}, "
          f"torch threads {torch.get_num_threads()}, "
          + ("beside 1 competing CPU-bound process" if args.busy else "no competing process"))
    print(f"  seed-style loop (numpy float32, patch by patch): {n / seed_time:9.1f} images/s")
    print(f"  RAID prefix sums (exact integers, {where}): {n / raid_time:9.1f} images/s")
    print(f"  ratio: {seed_time / raid_time:.1f}x faster; same patch chosen: {same}/{n}")
    return 0 if same == n else 1
