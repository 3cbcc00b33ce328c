"""Whole images in batches of one size: what an autoencoder takes.

Two consumers share these batches: `raid reconstruct` (`raid.pipelines.reconstruction`)
feeds them to an autoencoder and writes PNGs, and `datamodules.paired.PairedDataModule`
(what `raid build-train` runs) reconstructs them on the device and cuts patches.

Image sizes are read from the file headers while planning, so every process batches
alike. Each dataset item is one whole batch (the loader runs with `batch_size=None`): the
size grouping then survives any sampler, including the distributed one Lightning puts in
front of every process's loader.

The autoencoder is injected: a `ReconstructFn` maps uint8 (n, 3, H, W) images and one
noise seed per image to uint8 (n, 3, H, W) reconstructions (`raid.pipelines.reconstruction`
builds it from a frozen diffusers model), so this package knows no model code.
"""

from __future__ import annotations

import os
import stat
import warnings
from pathlib import Path
from typing import Callable, Sequence

import lightning as L
import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from datamodules.images import WorkPlan, make_loader, run_plan
from raid.primitives.errors import RaidError
from raid.primitives.images import DEFAULT_MAX_PIXELS, load_rgb
from raid.primitives.keys import REAL_GROUP
from raid.primitives.layout import REAL
from raid.primitives.seeding import stable_seed

Size = tuple[int, int]
#: (uint8 images (n, 3, H, W) on a device, one noise seed per image) -> uint8 (n, 3, H, W)
ReconstructFn = Callable[[torch.Tensor, list[int]], torch.Tensor]


def header_size(path: str | Path, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> Size | None:
    """(height, width) from the file's header (Pillow's lazy open: no pixel is decoded), or
    None when the header does not read (the file then fails, with its reason, at decoding).
    Only regular files are opened: opening a FIFO would block."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(path) as image:
                width, height = image.size
    except Exception:  # any header problem: load_rgb will name it
        return None
    if width <= 0 or height <= 0 or (max_pixels is not None and width * height > max_pixels):
        return None
    return int(height), int(width)


def size_batches(sizes: Sequence[Size | None], batch_size: int) -> list[list[int]]:
    """Indices grouped into batches whose images share one size: sizes in sorted order,
    items of one size in their given order, files of unknown size in batches of their own."""
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    by_size: dict[Size | None, list[int]] = {}
    for i, size in enumerate(sizes):
        by_size.setdefault(None if size is None else tuple(size), []).append(i)
    order = sorted((s for s in by_size if s is not None)) + ([None] if None in by_size else [])
    return [idx[j:j + batch_size] for s in order for idx in [by_size[s]]
            for j in range(0, len(idx), batch_size)]


def plan_sizes(root: Path, keys: Sequence[str],
               max_pixels: int | None = DEFAULT_MAX_PIXELS) -> list[list]:
    """[[key, height, width], ...] (None for an unreadable header): what planning sends to
    every process."""
    out = []
    for key in keys:
        size = header_size(root / key, max_pixels)
        out.append([key, *(size if size is not None else (None, None))])
    return out


class ImageBatches(Dataset):
    """Item b = batch b of whole images: keys, labels, groups, errors, and the decoded
    images stacked per shape as uint8 (n, 3, H, W) tensors with the row indices they hold.

    Files are decoded with `raid.primitives.images.load_rgb` (extraction's policies); a file that
    fails is a row with its reason and no image. A file whose decoded size differs from
    its header still works: stacking is by decoded shape.
    """

    def __init__(self, root: Path, keys: Sequence[str], batches: Sequence[Sequence[int]],
                 labels: Sequence[int] | None = None, groups: Sequence[str] | None = None,
                 max_pixels: int | None = DEFAULT_MAX_PIXELS):
        self.root, self.keys, self.batches = Path(root), list(keys), [list(b) for b in batches]
        self.labels = list(labels) if labels is not None else [REAL] * len(self.keys)
        self.groups = list(groups) if groups is not None else [REAL_GROUP] * len(self.keys)
        self.max_pixels = max_pixels

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, b: int) -> dict:
        idx = self.batches[b]
        keys = [self.keys[i] for i in idx]
        errors, arrays = [], []
        for key in keys:
            try:
                arrays.append(load_rgb(self.root / key, self.max_pixels))
                errors.append("")
            except RaidError as exc:  # a broken file is recorded, not fatal
                arrays.append(None)
                errors.append(str(exc).removeprefix(f"{self.root / key}: "))
            except MemoryError:  # one image too big for this machine: its failure only
                arrays.append(None)
                errors.append("out of memory while decoding")
        by_shape: dict[tuple, list[int]] = {}
        for j, a in enumerate(arrays):
            if a is not None:
                by_shape.setdefault(a.shape, []).append(j)
        images, rows = [], []
        for shape, js in by_shape.items():
            stacked = torch.from_numpy(np.stack([arrays[j] for j in js]))
            images.append(stacked.permute(0, 3, 1, 2).contiguous())
            rows.append(js)
        return {"key": keys, "label": [self.labels[i] for i in idx],
                "group": [self.groups[i] for i in idx], "error": errors,
                "images": images, "rows": rows}


def batch_loader(dataset: Dataset, num_workers: int, pin_memory: bool) -> DataLoader:
    """RAID's prediction loader over a dataset whose items are whole batches."""
    return make_loader(dataset, None, num_workers, pin_memory)  # type: ignore[arg-type]


def is_out_of_memory(exc: BaseException) -> bool:
    """Python's MemoryError, torch's (CUDA) OutOfMemoryError, or the plain RuntimeError of
    torch's CPU allocator ("DefaultCPUAllocator: can't allocate memory")."""
    if isinstance(exc, (MemoryError, torch.OutOfMemoryError)):
        return True
    return isinstance(exc, RuntimeError) and ("can't allocate memory" in str(exc)
                                              or "out of memory" in str(exc).lower())


def _oom_reason(exc: BaseException, shape: tuple[int, ...]) -> str:
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return f"out of memory reconstructing {shape[-1]} x {shape[-2]} pixels ({first[:160]})"


def _free(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()


def reconstruct_rows(reconstruct: ReconstructFn, batch: dict, seed: int,
                     failed: dict[int, str] | None = None) -> list[tuple[int, torch.Tensor]]:
    """Reconstruct every decoded image of an `ImageBatches` batch: [(row, uint8 (3, H, W))]
    in row order; each image's latent noise is seeded from (seed, its key, "noise").

    When a group of images runs out of memory it is retried one image at a time; an image
    that runs out of memory alone is left out, with its reason in `failed` (row -> reason),
    so one huge image costs only itself. Without `failed` the error propagates.
    """
    out: list[tuple[int, torch.Tensor]] = []
    keys = batch["key"]
    for images, rows in zip(batch["images"], batch["rows"]):
        seeds = [stable_seed(seed, keys[i], "noise") for i in rows]
        try:
            out += list(zip(rows, _run(reconstruct, images, seeds)))
            continue
        except Exception as exc:
            if failed is None or not is_out_of_memory(exc):
                raise
            _free(images.device)
        for j, row in enumerate(rows):
            try:
                out += list(zip([row], _run(reconstruct, images[j:j + 1], seeds[j:j + 1])))
            except Exception as exc:
                if not is_out_of_memory(exc):
                    raise
                failed[row] = _oom_reason(exc, tuple(images.shape))
                _free(images.device)
    return sorted(out, key=lambda t: t[0])


def _run(reconstruct: ReconstructFn, images: torch.Tensor, seeds: list[int]) -> torch.Tensor:
    # Lightning's mixed precision must not touch the autoencoder: it runs in its own
    # precision (float32 by default, like the seed).
    with torch.autocast(device_type=images.device.type, enabled=False):
        return reconstruct(images, seeds)


class ImageBatchesDataModule(L.LightningDataModule):
    """Prediction data: the images `plan` returns (a `WorkPlan` or a list of keys; called
    on global rank 0 once the processes are up, every process gets its answer, kept as
    `self.work`), in batches of one size. The image sizes are read from the headers during
    planning, so every process batches alike."""

    def __init__(self, root: str | Path, plan: Callable[[], WorkPlan | list[str]], *,
                 batch_size: int = 16, num_workers: int = 0,
                 max_pixels: int | None = DEFAULT_MAX_PIXELS, pin_memory: bool = False):
        super().__init__()
        self.root, self.plan = Path(root), plan
        self.batch_size, self.num_workers, self.pin_memory = batch_size, num_workers, pin_memory
        self.max_pixels = max_pixels
        self.dataset: ImageBatches | None = None
        self.work: WorkPlan | None = None

    def _plan_with_sizes(self) -> tuple[WorkPlan, list[list]]:
        answer = self.plan()
        work = answer if isinstance(answer, WorkPlan) else WorkPlan(list(answer))
        return work, plan_sizes(self.root, work.keys, self.max_pixels)

    def setup(self, stage: str) -> None:
        self.work, planned = run_plan(getattr(self, "trainer", None), self._plan_with_sizes)
        keys = [k for k, _, _ in planned]
        sizes = [None if h is None else (h, w) for _, h, w in planned]
        self.dataset = ImageBatches(self.root, keys, size_batches(sizes, self.batch_size),
                                    max_pixels=self.max_pixels)

    def predict_dataloader(self) -> DataLoader:
        return batch_loader(self.dataset, self.num_workers, self.pin_memory)
