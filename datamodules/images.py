"""Image folders as Lightning data: discovery, decoding and the texture-rich patch.

Each item is one file: its key (path relative to the root, after the listing's key
prefix), label, group, the BLAKE2b-128 digest, size and mtime of its bytes (read here, so
a store can tell a changed file from the one it holds), and either its 224 x 224 uint8
patch or the reason it could not be read. A broken file is an item too,
so it is recorded by the writer and the run goes on. How a file becomes a patch can be
given (`prepare`): the extraction passes `raid.pipelines.featurizer.FilePatches`, the very
code its in-memory featurizer runs.
"""

from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from raid.primitives import layout
from raid.primitives.errors import RaidError
from raid.primitives.images import DEFAULT_MAX_PIXELS, IMAGE_SUFFIXES, load_rgb
from raid.primitives.patches import PATCH_SIZE, patch_rng, rich_patch
from raid.primitives.perturb import CLEAN, Perturbation


@dataclass
class ImageListing:
    """The images under a root, in key order, and how many other files were skipped."""

    root: Path
    keys: list[str]
    labels: list[int]
    groups: list[str]
    other_files: list[str] = field(default_factory=list)
    prefix: str = ""  # put before every key in the store (`--key-prefix`)

    def subset(self, keep: Sequence[str]) -> "ImageListing":
        wanted = set(keep)
        idx = [i for i, k in enumerate(self.keys) if k in wanted]
        return ImageListing(self.root, [self.keys[i] for i in idx],
                            [self.labels[i] for i in idx], [self.groups[i] for i in idx],
                            self.other_files, self.prefix)

    def store_key(self, key: str) -> str:
        """The row key of the file `key`: `prefix/key`, or `key` without a prefix."""
        return f"{self.prefix}/{key}" if self.prefix else key


def file_digest(path: Path) -> tuple[bytes, int, int]:
    """(BLAKE2b-128 of the bytes, size, mtime_ns) of a regular file; zeros for anything
    else or a file that cannot be read (its decoding reports why)."""
    try:
        st = os.stat(path)
        if not stat.S_ISREG(st.st_mode):
            return bytes(16), 0, 0
        h = hashlib.blake2b(digest_size=16)
        with open(path, "rb") as fh:
            while chunk := fh.read(1 << 20):
                h.update(chunk)
        return h.digest(), st.st_size, st.st_mtime_ns
    except OSError:
        return bytes(16), 0, 0


def discover_images(root: str | Path, group: str | None = None) -> ImageListing:
    """Every image under `root` (recursive, any letter case of the suffix, hidden names too);
    label and group as `raid.primitives.layout` says, or `group` for all."""
    root = Path(root)
    if not root.is_dir():
        raise RaidError("no such folder", root)
    keys, others = layout.walk(root, IMAGE_SUFFIXES)
    return ImageListing(root, keys, [layout.label_of(k) for k in keys],
                        [group or layout.group_of(k, root) for k in keys], others)


@dataclass
class WorkPlan:
    """What a run's planning decided (on global rank 0, shared with every process): the
    keys still to do, rows found already done, damaged shards of an earlier run dropped,
    the run's id (shared by its processes' shards) and what the planning had to say."""

    keys: list[str]
    already: int = 0
    dropped: int = 0
    run: str = ""
    notes: list[str] = field(default_factory=list)  # lines for the run's summary
    changed: list[str] = field(default_factory=list)  # keys whose file changed (kept)

    def __iter__(self):  # `keys, already, dropped = plan`
        return iter((self.keys, self.already, self.dropped))


def read_image(root: Path, key: str, max_pixels: int | None, seed: int,
               perturbation: Perturbation = CLEAN) -> np.ndarray:
    """Decode one image and apply the perturbation (which comes before the patch choice)."""
    image = load_rgb(root / key, max_pixels)
    return perturbation.apply(image, seed, key) if perturbation.steps else image


class PatchDataset(Dataset):
    """One texture-rich patch per image; the patch rng is seeded from (seed, key).
    `prepare(root, key) -> (patch, error)`, when given, makes the patch instead."""

    def __init__(self, listing: ImageListing, seed: int = 0, size: int = PATCH_SIZE,
                 max_pixels: int | None = DEFAULT_MAX_PIXELS,
                 perturbation: Perturbation = CLEAN,
                 prepare: Callable[[Path, str], tuple[np.ndarray, str]] | None = None):
        self.listing, self.seed, self.size = listing, seed, size
        self.max_pixels, self.perturbation, self.prepare = max_pixels, perturbation, prepare

    def __len__(self) -> int:
        return len(self.listing.keys)

    def __getitem__(self, i: int) -> dict:
        key = self.listing.keys[i]
        digest, size, mtime = file_digest(self.listing.root / key)
        item = {"key": self.listing.store_key(key), "label": self.listing.labels[i],
                "group": self.listing.groups[i], "error": "",
                "digest": torch.frombuffer(bytearray(digest), dtype=torch.uint8),
                "source": torch.tensor([size, mtime], dtype=torch.int64)}
        if self.prepare is not None:
            patch, item["error"] = self.prepare(self.listing.root, key)
            item["patch"] = torch.from_numpy(patch)
            return item
        try:
            image = read_image(self.listing.root, key, self.max_pixels, self.seed,
                               self.perturbation)
            patch = rich_patch(image, patch_rng(self.seed, key), self.size)
        except RaidError as exc:  # a broken file is recorded, not fatal
            patch = np.zeros((self.size, self.size, 3), np.uint8)
            item["error"] = str(exc).removeprefix(f"{self.listing.root / key}: ")
        item["patch"] = torch.from_numpy(patch)
        return item


class ImageFolderDataModule(L.LightningDataModule):
    """Prediction data over the images of one folder, or the subset of them that `plan`
    (called on global rank 0 only, once the processes are up) returns, as a `WorkPlan` or
    a list of keys; the other processes receive the same answer, so every process agrees
    on the work. The answer is kept as `self.work`."""

    def __init__(self, listing: ImageListing, batch_size: int = 64, num_workers: int = 0,
                 seed: int = 0, patch_size: int = PATCH_SIZE,
                 max_pixels: int | None = DEFAULT_MAX_PIXELS,
                 perturbation: Perturbation = CLEAN, pin_memory: bool = False,
                 plan: Callable[[], WorkPlan | list[str]] | None = None,
                 prepare: Callable[[Path, str], tuple[np.ndarray, str]] | None = None):
        super().__init__()
        self.listing = listing
        self.dataset = PatchDataset(listing, seed, patch_size, max_pixels, perturbation,
                                    prepare)
        self.batch_size, self.num_workers, self.pin_memory = batch_size, num_workers, pin_memory
        self.plan = plan
        self.work: WorkPlan | None = None

    def setup(self, stage: str) -> None:
        if self.plan is not None:
            answer = run_plan(self.trainer, self.plan)
            self.work = answer if isinstance(answer, WorkPlan) else WorkPlan(list(answer))
            self.dataset.listing = self.listing.subset(self.work.keys)

    def predict_dataloader(self) -> DataLoader:
        return make_loader(self.dataset, self.batch_size, self.num_workers, self.pin_memory,
                           rank_sampler(self.trainer, self.dataset))


class RankSlice(DistributedSampler):
    """This process's share of a prediction: items rank, rank + world, ... in order.
    With fewer items than processes (where Lightning's own sampler asserts), a process
    without a share of its own redoes one item (Lightning refuses an empty loader on one
    process while others have work); the store keeps one row per key. No items at all:
    every process has none."""

    def __init__(self, n: int, world: int, rank: int):  # no super().__init__: no checks
        self.n, self.num_replicas, self.rank = n, world, rank
        self.epoch, self.shuffle, self.drop_last, self.seed = 0, False, False, 0
        self.indices = list(range(rank, n, world)) or ([rank % n] if n else [])
        self.num_samples = len(self.indices)
        self.total_size = n

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return self.num_samples


def rank_sampler(trainer: L.Trainer | None, dataset: Dataset) -> RankSlice | None:
    """A `RankSlice` for a multi-process run (Lightning keeps a DistributedSampler it is
    given), else None."""
    if trainer is None or trainer.world_size <= 1:
        return None
    return RankSlice(len(dataset), trainer.world_size, trainer.global_rank)


def run_plan(trainer: L.Trainer | None, plan: Callable[[], Any]) -> Any:
    """Call `plan` on global rank 0 and give its (picklable) answer, or its error, to every
    process."""
    answer: tuple[str, object] | None = None
    if trainer is None or trainer.is_global_zero:
        try:
            answer = ("ok", plan())
        except RaidError as exc:  # re-raised everywhere, so no process waits forever
            answer = ("error", str(exc))
    if trainer is not None and trainer.world_size > 1:
        answer = trainer.strategy.broadcast(answer, src=0)
    kind, value = answer
    if kind == "error":
        raise RaidError(value)
    return value


def make_loader(dataset: Dataset, batch_size: int, num_workers: int,
                pin_memory: bool, sampler: DistributedSampler | None = None) -> DataLoader:
    """The loader every RAID prediction uses: in order, workers kept alive, prefetching."""
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                      pin_memory=pin_memory, persistent_workers=num_workers > 0,
                      prefetch_factor=4 if num_workers > 0 else None, sampler=sampler)
