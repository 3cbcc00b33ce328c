"""`raid reconstruct`: PNG reconstructions of real photos, with Lightning; and the frozen
autoencoder callable that both this and `raid build-train` (`raid.pipelines.build_train`)
hand to the data modules.

`reconstruct_folder` mirrors an input tree into an output tree of PNGs: `sub/a.jpg` becomes
`OUTPUT/sub/a.png`, reconstructed with `raid.models.autoencoders.Reconstructor` in batches of
equal-size images (sizes read from the file headers while planning), each image's latent
noise seeded from (seed, its key, "noise"), 8-bit output by floor(x * 255), like the seed
but with the input's size kept (see `raid.models.autoencoders`). Outputs are written atomically;
existing ones are kept unless `overwrite`, so a second run does only what is missing.
Inputs that would share an output (`a.jpg` and `a.png`) are reported and none is written;
broken inputs are named in the summary and in `OUTPUT/.raid-reconstruct-failures.json`
(names that are not UTF-8 shown with `\\xNN` escapes). An image that runs out of memory
fails alone: its batch is retried one image at a time (`datamodules.batches`).
"""

from __future__ import annotations

import json
import logging
import os
import uuid
import warnings
from contextlib import contextmanager
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import BasePredictionWriter
from PIL import Image

from datamodules.batches import ImageBatchesDataModule, reconstruct_rows
from datamodules.images import ImageListing, WorkPlan, discover_images
from raid.models.autoencoders import (LATENTS, PRECISIONS, Reconstructor, coarse_stages,
                                      load_autoencoder)
from raid.pipelines.predict import run_predict
from raid.primitives.errors import RaidError
from raid.primitives.fileio import atomic_path, write_text
from raid.primitives.images import DEFAULT_MAX_PIXELS
from raid.primitives.keys import display_key, find_collisions, reconstruction_key

log = logging.getLogger(__name__)

FAILURES_FILE = ".raid-reconstruct-failures.json"
PARTS_DIR = ".raid-reconstruct.parts"


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
        out = [f"{display_key(str(self.output))}: {self.written} written, {self.already} "
               f"already present, {len(self.failed)} failed, {colliding} not written (output "
               f"name collisions), {len(self.skipped)} skipped (not images)"]
        out += [f"  failed {display_key(key)}: {reason}"
                for key, reason in sorted(self.failed.items())]
        out += [f"  collision {display_key(target)}: "
                f"{', '.join(display_key(k) for k in inputs)} (none written)"
                for target, inputs in self.collisions.items()]
        return out


@contextmanager
def stage_progress(model: torch.nn.Module, images: int,
                   report: Callable[[float], None]) -> Iterator[None]:
    """While `model` reconstructs `images` images, `report(images / stages)` as each of its
    coarse stages ends (`coarse_stages`): progress inside a slow batch. Forward hooks only
    watch, so the results do not change. A call that fails (out of memory: its images are
    retried one at a time) takes back what it reported."""
    stages = coarse_stages(model)
    done = 0

    def hook(*_) -> None:
        nonlocal done
        if done < len(stages):  # a stage run twice (tiling) does not count twice
            done += 1
            report(images / len(stages))

    handles = [stage.register_forward_hook(hook) for stage in stages]
    try:
        yield
    except BaseException:
        if done:
            report(-images * done / len(stages))
        raise
    finally:
        for handle in handles:
            handle.remove()


class FrozenAutoencoder:
    """A frozen autoencoder as the `datamodules.batches.ReconstructFn` the data modules
    take: moved to the images' device on first use there, run in its own precision
    ("fp32", "bf16", "fp16") and latent mode ("sample" or "mode"). A progress bar may set
    `on_stage` to hear of each coarse stage done (`stage_progress`)."""

    def __init__(self, model: torch.nn.Module, precision: str = "fp32",
                 latent: str = "sample"):
        self.model = model.eval().requires_grad_(False)
        self.precision, self.latent = precision, latent
        self._reconstructor: Reconstructor | None = None
        self.on_stage: Callable[[float], None] | None = None

    def __call__(self, images: torch.Tensor, seeds: list[int]) -> torch.Tensor:
        rec = self._reconstructor
        if rec is None or rec.device != images.device:
            rec = self._reconstructor = Reconstructor(self.model.to(images.device),
                                                      precision=self.precision)
        if self.on_stage is None:
            return rec.reconstruct(images, seeds, self.latent)
        with stage_progress(rec.model_in(rec.dtype), len(images), self.on_stage):
            return rec.reconstruct(images, seeds, self.latent)


class ReconstructionModule(L.LightningModule):
    """A frozen autoencoder (moved by Lightning) whose `predict_step` turns an
    `ImageBatches` batch into (output key, uint8 (H, W, 3)) pairs and failures."""

    def __init__(self, model: torch.nn.Module, precision: str = "fp32",
                 latent: str = "sample", seed: int = 0):
        super().__init__()
        self.model = model.eval().requires_grad_(False)
        self.seed = seed
        self.reconstruct = FrozenAutoencoder(self.model, precision, latent)

    def predict_step(self, batch: dict, batch_idx: int) -> dict:
        keys, errors = batch["key"], batch["error"]
        oom: dict[int, str] = {}  # an image out of memory alone fails alone
        done = reconstruct_rows(self.reconstruct, batch, self.seed, failed=oom)
        return {"images": [(reconstruction_key(keys[i]), img.permute(1, 2, 0).cpu().numpy())
                           for i, img in done],
                "inputs": [keys[i] for i, _ in done],
                "failed": [(k, e) for k, e in zip(keys, errors) if e]
                + [(keys[i], reason) for i, reason in sorted(oom.items())]}


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
def quiet_batch_indices() -> Iterator[None]:
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
    if not listing.keys:  # an error, before anything is created
        raise RaidError("no images found in this folder", input_dir)
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

    def plan() -> WorkPlan:
        try:
            output.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RaidError(f"cannot create the output folder ({exc.strerror or exc})",
                            output) from None
        if opts.overwrite:
            work = list(candidates)
        else:
            work = [k for k in candidates if not output_of(output, k).exists()]
        return WorkPlan(work, already=len(candidates) - len(work))

    datamodule = ImageBatchesDataModule(
        input_dir, plan, batch_size=opts.batch_size, num_workers=opts.num_workers,
        max_pixels=opts.max_pixels,
        pin_memory=opts.accelerator != "cpu" and torch.cuda.is_available())
    module = ReconstructionModule(model, opts.precision, opts.latent, opts.seed)
    with quiet_batch_indices():  # returns once every process has written its part file
        trainer = run_predict(module, datamodule, accelerator=opts.accelerator,
                              devices=opts.devices, strategy=opts.strategy,
                              num_nodes=opts.num_nodes, precision="32",
                              callbacks=[PngWriter(output, opts.write_threads)])
    if not trainer.is_global_zero:
        return None

    failed = _merge_parts(output / PARTS_DIR)
    work = datamodule.work
    for key in work.keys:
        if key not in failed and not output_of(output, key).exists():
            failed[key] = "not written (its process gave no result)"
    failed = {k: failed[k] for k in sorted(failed)}
    _record_failures(output, failed, collisions)
    return ReconstructSummary(
        output=output, total=len(listing.keys), written=len(work.keys) - len(failed),
        already=work.already, failed=failed, collisions=collisions,
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
        shown = {"failed": {display_key(k): v for k, v in failed.items()},
                 "collisions": {display_key(k): [display_key(i) for i in v]
                                for k, v in collisions.items()}}
        write_text(target, json.dumps(shown, indent=1, ensure_ascii=False))
    else:
        target.unlink(missing_ok=True)
