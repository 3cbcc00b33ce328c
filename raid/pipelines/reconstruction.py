"""Reconstructions of real photos, offline (`raid reconstruct`: PNG files) and on the fly
(`raid build-train`: straight into a training feature store), both with Lightning.

`reconstruct_folder` mirrors an input tree into an output tree of PNGs: `sub/a.jpg` becomes
`OUTPUT/sub/a.png`, reconstructed with `raid.models.autoencoders.Reconstructor` in batches of
equal-size images (sizes read from the file headers while planning), each image's latent
noise seeded from (seed, its key, "noise"), 8-bit output by floor(x * 255), like the seed
but with the input's size kept (see `raid.models.autoencoders`). Outputs are written atomically;
existing ones are kept unless `overwrite`, so a second run does only what is missing.
Inputs that would share an output (`a.jpg` and `a.png`) are reported and none is written;
broken inputs are named in the summary and in `OUTPUT/.raid-reconstruct-failures.json`.

`build_train` makes the features of real photos and of their reconstructions by one or
more autoencoders in one pass (`datamodules.paired.PairedDataModule` reconstructs on the
device; the same `FeatureExtractor` and shard writer as `raid extract` store the rows).
Its rows equal those of `raid reconstruct --output OUT/<name>` + `raid extract --input OUT`
(same seeds, same batch size; see `datamodules.paired` for the key scheme).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import uuid
import warnings
from contextlib import contextmanager
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import BasePredictionWriter
from PIL import Image

from datamodules.images import ImageListing, discover_images
from datamodules.paired import (REAL_GROUP, ImageBatchesDataModule, PairedDataModule,
                                find_collisions, paired_key, reconstruct_rows,
                                reconstruction_key)
from raid.models.aim import checkpoint_digest, load_aim, load_config
from raid.models.autoencoders import (LATENTS, PRECISIONS, Reconstructor, _model_folder,
                               autoencoder_name, load_autoencoder)
from raid.primitives.errors import RaidError
from raid.pipelines.extraction import (ExtractOptions, FeatureExtractor, ImagesPerSecondBar,
                             aim_provenance, plan_work, run_prediction)
from raid.primitives.fileio import atomic_path, write_text
from raid.primitives.images import DEFAULT_MAX_PIXELS
from raid.primitives.layout import FAKE, REAL
from raid.store.store import FeatureStore

log = logging.getLogger(__name__)

FAILURES_FILE = ".raid-reconstruct-failures.json"
PARTS_DIR = ".raid-reconstruct.parts"


# --------------------------------------------------------------------------- offline run

@dataclass
class ReconstructOptions:
    """How `raid reconstruct` reconstructs and how the run is spread."""

    latent: str = "sample"
    seed: int = 0
    precision: str = "fp32"  # the autoencoder's: fp32 (the seed's), bf16, fp16
    batch_size: int = 16
    num_workers: int = 0
    accelerator: str = "auto"
    devices: Any = "auto"
    strategy: str = "auto"
    num_nodes: int = 1
    overwrite: bool = False
    max_pixels: int | None = DEFAULT_MAX_PIXELS
    write_threads: int = 4

    def __post_init__(self) -> None:
        if self.latent not in LATENTS:
            raise RaidError(f"latent must be one of {', '.join(LATENTS)}, not {self.latent!r}")
        if self.precision not in PRECISIONS:
            raise RaidError(f"precision must be one of {', '.join(PRECISIONS)}, "
                            f"not {self.precision!r}")
        if self.batch_size < 1:
            raise RaidError(f"batch size must be at least 1, not {self.batch_size}")


@dataclass
class ReconstructSummary:
    output: Path
    total: int  # images found under the input
    written: int
    already: int  # outputs kept from earlier runs
    failed: dict[str, str]  # input key -> reason
    collisions: dict[str, list[str]]  # output key -> inputs (none written)
    skipped: list[str]  # files that are not images

    def lines(self) -> list[str]:
        colliding = sum(len(v) for v in self.collisions.values())
        out = [f"{self.output}: {self.written} written, {self.already} already present, "
               f"{len(self.failed)} failed, {colliding} not written (output name collisions), "
               f"{len(self.skipped)} skipped (not images)"]
        out += [f"  failed {key}: {reason}" for key, reason in sorted(self.failed.items())]
        out += [f"  collision {target}: {', '.join(inputs)} (none written)"
                for target, inputs in self.collisions.items()]
        return out


class ReconstructionModule(L.LightningModule):
    """A frozen autoencoder (moved by Lightning) whose `predict_step` turns an
    `ImageBatches` batch into (output key, uint8 (H, W, 3)) pairs and failures."""

    def __init__(self, model: torch.nn.Module, precision: str = "fp32",
                 latent: str = "sample", seed: int = 0):
        super().__init__()
        self.model = model.eval().requires_grad_(False)
        self.precision_name, self.latent, self.seed = precision, latent, seed
        self._reconstructor: Reconstructor | None = None

    def on_predict_start(self) -> None:
        self._reconstructor = Reconstructor(self.model, precision=self.precision_name)

    def predict_step(self, batch: dict, batch_idx: int) -> dict:
        if self._reconstructor is None:
            self.on_predict_start()
        keys, errors = batch["key"], batch["error"]
        done = reconstruct_rows(self._reconstructor, batch, self.seed, self.latent)
        return {"images": [(reconstruction_key(keys[i]), img.permute(1, 2, 0).cpu().numpy())
                           for i, img in done],
                "inputs": [keys[i] for i, _ in done],
                "failed": [(k, e) for k, e in zip(keys, errors) if e]}


def write_png(target: Path, image: np.ndarray) -> None:
    """An (H, W, 3) uint8 array as an RGB PNG, atomically."""
    with atomic_path(target) as tmp:
        Image.fromarray(image, mode="RGB").save(tmp, format="PNG")


class PngWriter(BasePredictionWriter):
    """Writes each batch's reconstructions as PNGs (a few threads: encoding is the slow
    part on a GPU machine) and, when the run ends, this process's failures as a JSON
    part file that global rank 0 merges."""

    def __init__(self, output: Path, threads: int = 4):
        super().__init__(write_interval="batch")
        self.output, self.threads = output, max(1, threads)
        self.tag = uuid.uuid4().hex[:12]
        self._pool: ThreadPoolExecutor | None = None
        self._pending: list[tuple[str, Future]] = []
        self.failed: dict[str, str] = {}

    def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch,
                           batch_idx, dataloader_idx=0) -> None:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="raid-png")
        self.failed.update(prediction["failed"])
        for key, (out_key, image) in zip(prediction["inputs"], prediction["images"]):
            self._pending.append((key, self._pool.submit(write_png, self.output / out_key,
                                                         image)))
        self._collect(wait=len(self._pending) > 8 * self.threads)

    def _collect(self, wait: bool) -> None:
        keep = []
        for key, fut in self._pending:
            if wait or fut.done():
                exc = fut.exception()
                if exc is not None:
                    reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
                    self.failed[key] = f"cannot write: {reason}"
            else:
                keep.append((key, fut))
        self._pending = keep

    def on_predict_end(self, trainer, pl_module) -> None:
        self._collect(wait=True)
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None
        write_text(self.output / PARTS_DIR / f"{self.tag}-rank{trainer.global_rank:04d}.json",
                   json.dumps(self.failed))


@contextmanager
def _quiet_batch_indices() -> Iterator[None]:
    """Our loaders yield whole batches (batch_size=None), so Lightning cannot list the
    dataset indices of a batch for prediction writers; ours do not use them."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*infer the batch indices.*")
        yield


def output_of(output: Path, key: str) -> Path:
    return output / reconstruction_key(key)


def _inputs(input_dir: Path, output: Path) -> ImageListing:
    """The images to reconstruct; an output folder inside the input is left out of it."""
    if not input_dir.is_dir():
        raise RaidError("no such folder", input_dir)
    src, dst = input_dir.resolve(), output.resolve()
    if src == dst:
        raise RaidError("the output folder is the input folder: reconstructions would "
                        "replace the photos", output)
    listing = discover_images(input_dir)
    if dst.is_relative_to(src):
        inside = dst.relative_to(src).as_posix() + "/"
        listing = listing.subset([k for k in listing.keys if not k.startswith(inside)])
        listing.other_files = [k for k in listing.other_files if not k.startswith(inside)]
    return listing


def reconstruct_folder(input_dir: str | os.PathLike, output_dir: str | os.PathLike,
                       vae: str | os.PathLike,
                       opts: ReconstructOptions | None = None) -> ReconstructSummary | None:
    """Reconstruct every image under `input_dir` with the autoencoder at `vae` into PNGs
    under `output_dir` (see the module docstring). Returns the summary on global rank 0 and
    None on the other processes of a multi-process run."""
    opts = opts or ReconstructOptions()
    input_dir, output = Path(input_dir), Path(output_dir)
    listing = _inputs(input_dir, output)
    model = load_autoencoder(vae)
    collisions = find_collisions(listing.keys)
    colliding = {k for ins in collisions.values() for k in ins}
    candidates = [k for k in listing.keys if k not in colliding]
    state: dict = {}

    def plan() -> list[str]:
        try:
            output.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RaidError(f"cannot create the output folder ({exc.strerror or exc})",
                            output) from None
        if opts.overwrite:
            work = list(candidates)
        else:
            work = [k for k in candidates if not output_of(output, k).exists()]
        state["already"] = len(candidates) - len(work)
        state["work"] = work
        return work

    datamodule = ImageBatchesDataModule(
        input_dir, plan, batch_size=opts.batch_size, num_workers=opts.num_workers,
        max_pixels=opts.max_pixels,
        pin_memory=opts.accelerator != "cpu" and torch.cuda.is_available())
    writer = PngWriter(output, opts.write_threads)
    trainer = L.Trainer(
        accelerator=opts.accelerator, devices=opts.devices, strategy=opts.strategy,
        num_nodes=opts.num_nodes, precision="32-true", logger=False,
        callbacks=[writer, ImagesPerSecondBar()], enable_checkpointing=False,
        enable_model_summary=False, inference_mode=True)
    module = ReconstructionModule(model, opts.precision, opts.latent, opts.seed)
    with _quiet_batch_indices():
        trainer.predict(module, datamodule=datamodule, return_predictions=False)
    trainer.strategy.barrier()  # every process has written its images and its part file
    if not trainer.is_global_zero:
        return None

    failed = _merge_parts(output / PARTS_DIR)
    work = state["work"]
    for key in work:
        if key not in failed and not output_of(output, key).exists():
            failed[key] = "not written (its process gave no result)"
    failed = {k: failed[k] for k in sorted(failed)}
    _record_failures(output, failed, collisions)
    return ReconstructSummary(
        output=output, total=len(listing.keys), written=len(work) - len(failed),
        already=state["already"], failed=failed, collisions=collisions,
        skipped=listing.other_files)


def _merge_parts(parts: Path) -> dict[str, str]:
    failed: dict[str, str] = {}
    if parts.is_dir():
        for part in sorted(parts.glob("*.json")):
            try:
                failed.update(json.loads(part.read_text(encoding="utf-8")))
            except (OSError, ValueError):
                pass  # a part of a run killed while writing it: its images are redone
            part.unlink(missing_ok=True)
        if not any(parts.iterdir()):
            parts.rmdir()
    return failed


def _record_failures(output: Path, failed: dict[str, str],
                     collisions: dict[str, list[str]]) -> None:
    """OUTPUT/.raid-reconstruct-failures.json: this run's failures and collisions (every
    run retries the failed inputs, so older entries are stale); removed when none."""
    target = output / FAILURES_FILE
    if failed or collisions:
        write_text(target, json.dumps({"failed": failed, "collisions": collisions},
                                      indent=1, ensure_ascii=False))
    else:
        target.unlink(missing_ok=True)


# --------------------------------------------------------------------------- build-train

def autoencoder_digest(path: str | os.PathLike) -> str:
    """sha256 over the autoencoder folder's config.json and weight files (names and
    contents): what decides its reconstructions, for the store's provenance."""
    folder = _model_folder(Path(path))
    files = sorted(p for p in folder.iterdir()
                   if p.is_file() and (p.name == "config.json"
                                       or p.name.startswith("diffusion_pytorch_model")))
    digest = hashlib.sha256()
    for p in files:
        digest.update(f"{p.name}\0{checkpoint_digest(p)}\n".encode())
    return digest.hexdigest()


@dataclass
class BuildSummary:
    store: Path
    photos: int  # photos found (without collisions)
    done: int  # rows added by this run
    already: int  # photos whose rows were all in the store
    failed: dict[str, str]
    collisions: dict[str, list[str]]
    skipped: list[str]
    counts: dict[str, dict[int, int]] = field(default_factory=dict)
    dropped_shards: int = 0

    def lines(self) -> list[str]:
        colliding = sum(len(v) for v in self.collisions.values())
        out = [f"{self.store}: {self.done} rows added, {self.already} photos already complete, "
               f"{len(self.failed)} failed, {colliding} left out (reconstruction name "
               f"collisions), {len(self.skipped)} skipped (not images)"]
        for group, by_label in self.counts.items():
            out.append(f"  {group}: " + ", ".join(
                f"{n} {'real' if label == REAL else 'reconstructed' if label == FAKE else 'unknown'}"
                for label, n in sorted(by_label.items())))
        out += [f"  failed {key}: {reason}" for key, reason in sorted(self.failed.items())]
        out += [f"  collision {target}: {', '.join(inputs)} (left out)"
                for target, inputs in self.collisions.items()]
        if self.dropped_shards:
            out.append(f"  {self.dropped_shards} damaged shard(s) of an interrupted run "
                       "were dropped; their photos were done again")
        return out


def build_train(real_dir: str | os.PathLike, vaes: Sequence[str | os.PathLike],
                store: str | os.PathLike, opts: ExtractOptions, *, latent: str = "sample",
                recon_seed: int | None = None, recon_precision: str = "fp32",
                same_position: bool = False) -> BuildSummary | None:
    """Features of every photo under `real_dir` (group "real", label 0) and of its
    reconstruction by each autoencoder in `vaes` (group = autoencoder name, label 1) into
    `store`, without writing images; resumable like `extract` (the work list is the photos
    with any row missing). `recon_seed` (default `opts.seed`) seeds the latent noise,
    `opts.seed` the patches. Returns the summary on global rank 0, else None."""
    if not vaes:
        raise RaidError("at least one autoencoder (--vae) is needed")
    if latent not in LATENTS:
        raise RaidError(f"latent must be one of {', '.join(LATENTS)}, not {latent!r}")
    if recon_precision not in PRECISIONS:
        raise RaidError(f"autoencoder precision must be one of {', '.join(PRECISIONS)}")
    store = Path(store)
    recon_seed = opts.seed if recon_seed is None else recon_seed
    names = [autoencoder_name(v) for v in vaes]
    for name in set(names):
        if names.count(name) > 1:
            raise RaidError(f"two autoencoders are named {name!r} (the folder name names "
                            "the group); rename one folder")
    if REAL_GROUP in names:
        raise RaidError(f"an autoencoder may not be named {REAL_GROUP!r} (the real group)")
    autoencoders = {name: load_autoencoder(v) for name, v in zip(names, vaes)}

    found = discover_images(real_dir)
    collisions = find_collisions(found.keys)
    colliding = {k for ins in collisions.values() for k in ins}
    listing = found.subset([k for k in found.keys if k not in colliding])

    config = load_config(opts.arch, opts.probe)
    model = load_aim(config, opts.backbone, opts.head, truncate=True)
    dim = config.width
    provenance = aim_provenance(config, opts)
    provenance["training_pairs"] = {
        "autoencoders": [{"name": n, "digest": autoencoder_digest(v)}
                         for n, v in zip(names, vaes)],
        "latent": latent, "seed": recon_seed, "precision": recon_precision,
        "output": "floor(x * 255), 8-bit, input size (padded to the factor, cropped back)",
        "patch_position": "same as real" if same_position else "own",
        "real_group": REAL_GROUP,
    }
    rows_of = {k: [k] + [paired_key(n, k) for n in names] for k in listing.keys}
    all_rows = [r for k in listing.keys for r in rows_of[k]]
    state: dict = {}

    def plan() -> list[str]:
        rows = ImageListing(listing.root, all_rows, [REAL] * len(all_rows),
                            [REAL_GROUP] * len(all_rows))
        missing, state["rows_already"], state["dropped"] = plan_work(store, dim, provenance,
                                                                     rows)
        missing = set(missing)
        work = [k for k in listing.keys if any(r in missing for r in rows_of[k])]
        state["already"] = len(listing.keys) - len(work)
        return work

    datamodule = PairedDataModule(
        listing, autoencoders, batch_size=opts.batch_size, num_workers=opts.num_workers,
        seed=opts.seed, recon_seed=recon_seed, latent=latent, precision=recon_precision,
        patch_size=config.image_size, max_pixels=opts.max_pixels,
        same_position=same_position, plan=plan,
        pin_memory=opts.accelerator != "cpu" and torch.cuda.is_available())
    with _quiet_batch_indices():
        if not run_prediction(FeatureExtractor(model, opts.compile), datamodule, store, dim,
                              provenance, opts):
            return None
    with FeatureStore(store) as fs:
        failures = fs.failures()
        present = set(fs.keys())
        counts = fs.counts()
    wanted = set(all_rows)
    return BuildSummary(
        store=store, photos=len(listing.keys),
        done=len(wanted & present) - state.get("rows_already", 0),
        already=state.get("already", 0),
        failed={k: v for k, v in failures.items() if k in rows_of},
        collisions=collisions, skipped=found.other_files, counts=counts,
        dropped_shards=state.get("dropped", 0))
