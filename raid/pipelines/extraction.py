"""Feature extraction with Lightning: a frozen AIM module predicts, a writer streams each
batch into per-process shards, and the shards are appended to the HDF5 store at the end.

One run writes a store at a time: global rank 0 holds the store's lock
(`raid.store.lock`) from planning to the final merge. Planning folds in the shards an
interrupted run left behind when they were made with the same settings (others are set
aside, named), checks the input folder against the ones the store records (another folder
needs a key prefix), and lists the images still missing; a file whose bytes changed since
its row was made is reported and keeps its row. A run killed at any moment loses at most
the batches it had not yet committed to a shard, and the next run extracts exactly the
images still missing. Every random choice is seeded from (seed, key), so resumed features
equal uninterrupted ones.

Over several processes (`--devices`, `--num-nodes`) each process writes its own shards into
`<store>.parts/` (which must be on a filesystem every node sees); global rank 0 decides the
work list and merges at the end. Any number of images (none, fewer than processes) works.
"""

from __future__ import annotations

import logging
import os
import uuid
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import BasePredictionWriter

from datamodules.images import (ImageFolderDataModule, ImageListing, WorkPlan, discover_images,
                                file_digest)
from raid.pipelines.featurizer import PRECISIONS, Featurizer, FilePatches, aim_provenance, encode
from raid.pipelines.predict import ImagesPerSecondBar, run_predict
from raid.primitives.errors import RaidError
from raid.primitives.images import DEFAULT_MAX_PIXELS
from raid.primitives.keys import display_key
from raid.primitives.perturb import CLEAN, Perturbation
from raid.store.store import (FeatureStore, ShardWriter, merge_shards, provenance_differences,
                              remove_stray_temporaries, store_lock)

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
        out = {"keys": [keys[i] for i in ok],
               "labels": [int(labels[i]) for i in ok],
               "groups": [groups[i] for i in ok],
               "features": features,
               "failed": [(keys[i], errors[i]) for i in range(len(errors)) if errors[i]]}
        if "digest" in batch:  # BLAKE2b of each file, read by the data loader
            out["digests"] = batch["digest"][ok].cpu().numpy()
            out["sources"] = batch["source"][ok].cpu().numpy()
        return out


class ShardPredictionWriter(BasePredictionWriter):
    """Writes each predicted batch into this process's shard as it comes. The shards carry
    the run's id (the plan's, shared by every process) and `provenance`."""

    def __init__(self, parts_dir: Path, dim: int, run_tag: str,
                 provenance: dict | None = None):
        super().__init__(write_interval="batch")
        self.parts_dir, self.dim, self.run_tag = parts_dir, dim, run_tag
        self.provenance = provenance
        self.shard: ShardWriter | None = None

    def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch,
                           batch_idx, dataloader_idx=0) -> None:
        if self.shard is None:
            work = getattr(trainer.datamodule, "work", None)
            run = getattr(work, "run", "") or self.run_tag
            self.shard = ShardWriter(self.parts_dir, self.dim,
                                     f"{run}-rank{trainer.global_rank:04d}",
                                     provenance=self.provenance, run_id=run)
        p = prediction
        self.shard.write(p["keys"], p["features"].reshape(len(p["keys"]), self.dim),
                         p["labels"], p["groups"], p["failed"], p.get("digests"),
                         p.get("sources"))

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
    key_prefix: str = ""


@dataclass
class ExtractSummary:
    store: Path
    total: int  # images found
    done: int  # rows added by this run
    already: int  # rows that were already in the store
    failed: dict[str, str]  # key -> reason, for images of this input
    skipped: list[str]  # files that are not images
    dropped_shards: int = 0
    changed: list[str] = field(default_factory=list)  # keys whose file changed (row kept)
    notes: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = [f"{self.store}: {self.done} extracted, {self.already} already present, "
               f"{len(self.failed)} failed, {len(self.skipped)} skipped (not images)"
               + (f", {len(self.changed)} changed (refused)" if self.changed else "")]
        out += [f"  failed {display_key(key)}: {reason}"
                for key, reason in sorted(self.failed.items())]
        out += [f"  changed {display_key(key)}: the file differs from the one its row was made "
                "from; the row is kept (extract into a new store to use the new file)"
                for key in self.changed]
        if self.dropped_shards:
            out.append(f"  {self.dropped_shards} damaged shard(s) of an interrupted run "
                       "were dropped; their images were extracted again")
        out += [f"  {note}" for note in self.notes]
        return out


def parts_dir_of(store: Path) -> Path:
    return store.with_name(store.name + ".parts")


def plan_work(store: Path, dim: int, provenance: dict, listing: ImageListing,
              run: str = "") -> WorkPlan:
    """On rank 0, holding the store's lock, before any new shard exists: fold in an
    interrupted run's shards (same settings only), check the settings and the input
    folder, and return the keys still missing (of `listing`, without its prefix), rows
    already present, shards dropped, and notes. Files whose digest differs from their row's
    are listed in `changed` and not redone. (Unpacks as (keys, already, dropped) too.)"""
    notes: list[str] = []
    remove_stray_temporaries(store)  # a killed writer's; we hold the lock
    merged = merge_shards(store, parts_dir_of(store), dim, provenance, run)
    if merged.added or merged.dropped:
        log.info("resumed: merged the shards of an interrupted run into %s", store)
    notes += [f"set aside {p} (made with other settings; not merged)" for p in merged.set_aside]
    present: dict[str, int] = {}
    changed: list[str] = []
    if store.exists():
        with FeatureStore(store) as fs:
            diffs = provenance_differences(fs.provenance, {**provenance, "feature_dim": dim})
            if diffs:
                raise RaidError("was made with other settings: " + "; ".join(diffs), store)
            check_root(store, fs.roots(), listing)
            present = fs.key_index()
            changed = _changed_files(fs, present, listing)
    missing = [k for k in listing.keys if listing.store_key(k) not in present]
    return WorkPlan(missing, len(listing.keys) - len(missing), merged.dropped, run=run,
                    notes=notes, changed=changed)


def check_root(store: Path, roots: list[dict], listing: ImageListing) -> None:
    """Refuse a second input folder without a key prefix of its own (its relative paths
    could name other images than the store's rows of the same key)."""
    here = {"root": os.path.abspath(listing.root), "prefix": listing.prefix}
    if not roots or here in roots:
        return
    same = [r for r in roots if r["prefix"] == listing.prefix]
    if same:
        what = f"the key prefix {listing.prefix!r}" if listing.prefix else "no key prefix"
        raise RaidError(f"holds the images of {same[0]['root']} under {what}; to add the "
                        f"images of {here['root']}, give them a key prefix of their own "
                        "(--key-prefix NAME)", store)


def _changed_files(fs: FeatureStore, present: dict[str, int], listing: ImageListing
                   ) -> list[str]:
    """Listed files with a row whose recorded size/mtime differ and whose digest then
    differs too (rows without a recorded digest are trusted)."""
    digests, sources = fs.digests(), fs.sources()
    known = digests.any(axis=1)
    out = []
    for key in listing.keys:
        i = present.get(listing.store_key(key))
        if i is None or not known[i]:
            continue
        try:
            st = os.stat(listing.root / key)
        except OSError:
            continue
        if (st.st_size, st.st_mtime_ns) == tuple(sources[i]):
            continue
        if file_digest(listing.root / key)[0] != digests[i].tobytes():
            out.append(listing.store_key(key))
    return out


def run_prediction(module: L.LightningModule, datamodule: L.LightningDataModule, store: Path,
                   dim: int, provenance: dict, opts: ExtractOptions,
                   root: ImageListing | None = None) -> bool:
    """Run Lightning prediction into shards and merge them; True on global rank 0.
    `root`: the listing whose folder (and key prefix) the store records."""
    writer = ShardPredictionWriter(parts_dir_of(store), dim, uuid.uuid4().hex[:12],
                                   provenance)
    trainer = run_predict(module, datamodule, accelerator=opts.accelerator,
                          devices=opts.devices, strategy=opts.strategy,
                          num_nodes=opts.num_nodes, precision=opts.precision,
                          callbacks=[writer])
    if trainer.is_global_zero:
        work = getattr(datamodule, "work", None)
        merged = merge_shards(store, parts_dir_of(store), dim, provenance,
                              getattr(work, "run", ""),
                              root=None if root is None else (root.root, root.prefix))
        if work is not None:
            work.notes += [f"set aside {p} (made with other settings; not merged)"
                           for p in merged.set_aside]
    return trainer.is_global_zero


def locked_plan(stack: ExitStack, store: Path, plan):
    """`plan` run while holding the store's lock (taken on global rank 0, where plans run,
    and kept in `stack` until the run's merge is done). The plan gets the run id."""
    def call():
        run = uuid.uuid4().hex[:12]
        holder = stack.enter_context(store_lock(store, run))
        work = plan(run)
        if holder.get("took_over"):
            work.notes.append(holder["took_over"])
        return work
    return call


def check_weights(model: torch.nn.Module, opts: ExtractOptions) -> None:
    """A checkpoint with NaN or inf weights fails now, by name, not as NaN rows later."""
    for name, p in model.named_parameters():
        if not torch.isfinite(p).all():
            path = opts.head if opts.head and "head" in name else opts.backbone
            raise RaidError(f"the checkpoint holds non-finite weights (NaN or inf) in {name}",
                            path)


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
    if not listing.keys:  # an error, before anything is created
        raise RaidError("no images found in this folder", input_dir)
    listing.prefix = opts.key_prefix.strip("/")
    if only is not None:
        listing = listing.subset([k for k in listing.keys if only(k)])
    if featurizer is None:
        featurizer = Featurizer.from_options(opts, device="cpu")  # Lightning places it
    check_weights(featurizer.model, opts)
    config = featurizer.config
    provenance = featurizer.provenance_for(opts.perturbation)
    provenance.pop("feature_dim")  # the store adds it
    dim = config.width
    with ExitStack() as lock:
        datamodule = ImageFolderDataModule(
            listing, batch_size=opts.batch_size, num_workers=opts.num_workers,
            plan=locked_plan(lock, store,
                             lambda run: plan_work(store, dim, provenance, listing, run)),
            prepare=FilePatches(opts.seed, config.image_size, opts.max_pixels,
                                opts.perturbation),
            pin_memory=opts.accelerator != "cpu" and torch.cuda.is_available())
        if not run_prediction(FeatureExtractor(featurizer.model, opts.compile), datamodule,
                              store, dim, provenance, opts, root=listing):
            return None
        work = datamodule.work or WorkPlan([])
        with FeatureStore(store) as fs:
            failures = fs.failures()
            present = set(fs.keys())
    wanted = {listing.store_key(k) for k in listing.keys}
    return ExtractSummary(
        store=store, total=len(listing.keys), done=len(wanted & present) - work.already,
        already=work.already, failed={k: v for k, v in failures.items() if k in wanted},
        skipped=listing.other_files, dropped_shards=work.dropped, changed=work.changed,
        notes=work.notes)
