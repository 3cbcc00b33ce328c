"""Feature extraction with Lightning: a frozen AIM module predicts, a writer streams each
batch into per-process shards, and the shards are merged into the HDF5 store at the end.

Resuming and crash safety come from one rule: the store only ever changes by an atomic
rename (`raid.store.store.StoreWriter`), and a run starts by folding in whatever shards an earlier,
interrupted run left behind. So a run killed at any moment loses at most the batches it had
not yet committed to a shard, and the next run extracts exactly the images still missing.
Every random choice is seeded from (seed, key), so resumed features equal uninterrupted ones.

Over several processes (`--devices`, `--num-nodes`) each process writes its own shards into
`<store>.parts/` (which must be on a filesystem every node sees); global rank 0 decides the
work list and merges at the end.
"""

from __future__ import annotations

import logging
import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import BasePredictionWriter

from datamodules.images import ImageFolderDataModule, ImageListing, WorkPlan, discover_images
from raid.pipelines.featurizer import PRECISIONS, Featurizer, FilePatches, aim_provenance, encode
from raid.pipelines.predict import ImagesPerSecondBar, run_predict
from raid.primitives.errors import RaidError
from raid.primitives.images import DEFAULT_MAX_PIXELS
from raid.primitives.perturb import CLEAN, Perturbation
from raid.store.store import FeatureStore, ShardWriter, merge_shards, provenance_differences

log = logging.getLogger(__name__)
__all__ = ["PRECISIONS", "ExtractOptions", "ExtractSummary", "FeatureExtractor",
           "ImagesPerSecondBar", "ShardPredictionWriter", "aim_provenance", "extract",
           "parts_dir_of", "plan_work", "run_prediction"]


class FeatureExtractor(L.LightningModule):
    """A frozen feature model (AIM) as a LightningModule whose `predict_step` turns a batch
    of uint8 patches into rows: keys, labels, groups, float32 features, and the failures.
    Patches become features through `raid.pipelines.featurizer.encode`, as in memory."""

    def __init__(self, model: torch.nn.Module, compile: bool = False):
        super().__init__()
        self.model = model.eval().requires_grad_(False)
        self.compile = compile

    def setup(self, stage: str) -> None:
        if self.compile:
            self.model = torch.compile(self.model, dynamic=False)

    def predict_step(self, batch: dict, batch_idx: int) -> dict:
        errors = list(batch["error"])
        ok = [i for i, e in enumerate(errors) if not e]
        features = np.zeros((0, 0), np.float32)
        if ok:
            patches = batch["patch"][ok] if len(ok) < len(errors) else batch["patch"]
            features = encode(self.model, patches).cpu().numpy()
        keys, labels, groups = batch["key"], batch["label"], batch["group"]
        return {"keys": [keys[i] for i in ok],
                "labels": [int(labels[i]) for i in ok],
                "groups": [groups[i] for i in ok],
                "features": features,
                "failed": [(keys[i], errors[i]) for i in range(len(errors)) if errors[i]]}


class ShardPredictionWriter(BasePredictionWriter):
    """Writes each predicted batch into this process's shard as it comes."""

    def __init__(self, parts_dir: Path, dim: int, run_tag: str):
        super().__init__(write_interval="batch")
        self.parts_dir, self.dim, self.run_tag = parts_dir, dim, run_tag
        self.shard: ShardWriter | None = None

    def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch,
                           batch_idx, dataloader_idx=0) -> None:
        if self.shard is None:
            self.shard = ShardWriter(self.parts_dir, self.dim,
                                     f"{self.run_tag}-rank{trainer.global_rank:04d}")
        p = prediction
        self.shard.write(p["keys"], p["features"].reshape(len(p["keys"]), self.dim),
                         p["labels"], p["groups"], p["failed"])

    def on_predict_end(self, trainer, pl_module) -> None:
        if self.shard is not None:
            self.shard.close()
            self.shard = None


@dataclass
class ExtractOptions:
    """Everything that decides how features are made and how the run is spread."""

    arch: str
    backbone: str
    head: str | None = None
    probe: str = "best"
    batch_size: int = 64
    num_workers: int = 0
    precision: str = "32"
    seed: int = 0
    accelerator: str = "auto"
    devices: Any = "auto"
    strategy: str = "auto"
    num_nodes: int = 1
    max_pixels: int | None = DEFAULT_MAX_PIXELS
    perturbation: Perturbation = field(default=CLEAN)
    compile: bool = False


@dataclass
class ExtractSummary:
    store: Path
    total: int  # images found
    done: int  # rows added by this run
    already: int  # rows that were already in the store
    failed: dict[str, str]  # key -> reason, for images of this input
    skipped: list[str]  # files that are not images
    dropped_shards: int = 0

    def lines(self) -> list[str]:
        out = [f"{self.store}: {self.done} extracted, {self.already} already present, "
               f"{len(self.failed)} failed, {len(self.skipped)} skipped (not images)"]
        out += [f"  failed {key}: {reason}" for key, reason in sorted(self.failed.items())]
        if self.dropped_shards:
            out.append(f"  {self.dropped_shards} damaged shard(s) of an interrupted run "
                       "were dropped; their images were extracted again")
        return out


def parts_dir_of(store: Path) -> Path:
    return store.with_name(store.name + ".parts")


def plan_work(store: Path, dim: int, provenance: dict, listing: ImageListing) -> WorkPlan:
    """On rank 0, before any new shard exists: fold in an interrupted run's shards, check
    the settings, and return the keys still missing, rows already present, shards dropped.
    (Unpacks as the tuple (keys, already, dropped) too.)"""
    dropped = 0
    parts = parts_dir_of(store)
    if parts.is_dir() and any(parts.glob("*.h5")):
        _, dropped = merge_shards(store, parts, dim, provenance)
        log.info("resumed: merged the shards of an interrupted run into %s", store)
    present: set[str] = set()
    if store.exists():
        with FeatureStore(store) as fs:
            diffs = provenance_differences(fs.provenance, {**provenance, "feature_dim": dim})
            if diffs:
                raise RaidError("was made with other settings: " + "; ".join(diffs), store)
            present = set(fs.keys())
    missing = [k for k in listing.keys if k not in present]
    return WorkPlan(missing, len(listing.keys) - len(missing), dropped)


def run_prediction(module: L.LightningModule, datamodule: L.LightningDataModule, store: Path,
                   dim: int, provenance: dict, opts: ExtractOptions) -> bool:
    """Run Lightning prediction into shards and merge them; True on global rank 0."""
    writer = ShardPredictionWriter(parts_dir_of(store), dim, uuid.uuid4().hex[:12])
    trainer = run_predict(module, datamodule, accelerator=opts.accelerator,
                          devices=opts.devices, strategy=opts.strategy,
                          num_nodes=opts.num_nodes, precision=opts.precision,
                          callbacks=[writer])
    if trainer.is_global_zero:
        merge_shards(store, parts_dir_of(store), dim, provenance)
    return trainer.is_global_zero


def extract(input_dir: str | os.PathLike, store: str | os.PathLike, opts: ExtractOptions,
            only: Callable[[str], bool] | None = None,
            featurizer: Featurizer | None = None) -> ExtractSummary | None:
    """Extract the features of every image under `input_dir` (whose key `only` accepts,
    when given) that `store` lacks. `featurizer`: AIM already loaded for `opts` (a sweep
    loads it once); by default it is loaded here.

    Returns the summary on global rank 0 and None on the other processes of a
    multi-process run.
    """
    store = Path(store)
    listing = discover_images(input_dir)
    if only is not None:
        listing = listing.subset([k for k in listing.keys if only(k)])
    if featurizer is None:
        featurizer = Featurizer.from_options(opts, device="cpu")  # Lightning places it
    config = featurizer.config
    provenance = featurizer.provenance_for(opts.perturbation)
    provenance.pop("feature_dim")  # the store adds it
    dim = config.width
    datamodule = ImageFolderDataModule(
        listing, batch_size=opts.batch_size, num_workers=opts.num_workers,
        plan=lambda: plan_work(store, dim, provenance, listing),
        prepare=FilePatches(opts.seed, config.image_size, opts.max_pixels, opts.perturbation),
        pin_memory=opts.accelerator != "cpu" and torch.cuda.is_available())
    if not run_prediction(FeatureExtractor(featurizer.model, opts.compile), datamodule, store,
                          dim, provenance, opts):
        return None
    work = datamodule.work or WorkPlan([])
    with FeatureStore(store) as fs:
        failures = fs.failures()
        present = set(fs.keys())
    wanted = set(listing.keys)
    return ExtractSummary(
        store=store, total=len(listing.keys), done=len(wanted & present) - work.already,
        already=work.already, failed={k: v for k, v in failures.items() if k in wanted},
        skipped=listing.other_files, dropped_shards=work.dropped)
