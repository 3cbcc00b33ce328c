"""Scoring single images and folders with a saved detector (what `raid detect` runs).

The images go straight through a `DetectorPipeline` (AIM loaded once, features in memory):
no Trainer, no temporary store. Keys seed the patch choice, as in `raid extract`: a folder
given keys its images by their path relative to it, a file given is keyed by its name. So
an image gets exactly the features `raid extract --input` gives it on that folder (or, for
a file, on its parent folder), whatever else is scored with it; a broken file comes back
with the reason.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from raid.metrics.evaluation import THRESHOLD
from raid.primitives.errors import RaidError
from raid.primitives.fileio import write_text
from raid.primitives.keys import display_key
from raid.primitives.images import IMAGE_SUFFIXES
from raid.primitives.layout import walk
from raid.primitives.progress import Progress

log = logging.getLogger(__name__)

COLUMNS = ("path", "p_generated", "verdict", "error")


@dataclass
class Detection:
    path: str
    p_generated: float | None = None
    verdict: str | None = None  # "generated" when P > threshold, else "real"; None on error
    error: str = ""


@dataclass
class DetectResult:
    detections: list[Detection]
    skipped: list[str] = field(default_factory=list)  # files in folders that are not images
    model: str = ""
    threshold: float = THRESHOLD

    @property
    def failed(self) -> list[Detection]:
        return [d for d in self.detections if d.error]

    def table(self) -> str:
        """A plain-text table for the terminal (names that are not UTF-8 with escapes)."""
        shown = [display_key(d.path) for d in self.detections]
        width = max([len(p) for p in shown] + [4])
        lines = [f"{'path':<{width}}  P(generated)  verdict"]
        for d, path in zip(self.detections, shown):
            if d.error:
                lines.append(f"{path:<{width}}  {'-':>12}  error: {d.error}")
            else:
                lines.append(f"{path:<{width}}  {d.p_generated:>12.4f}  {d.verdict}")
        n_gen = sum(d.verdict == "generated" for d in self.detections)
        n_real = sum(d.verdict == "real" for d in self.detections)
        lines.append(f"{len(self.detections)} file(s): {n_gen} generated, {n_real} real "
                     f"(P > {self.threshold:g}), {len(self.failed)} unreadable; "
                     f"{len(self.skipped)} non-image file(s) in folders skipped")
        return "\n".join(lines)


@dataclass
class DetectPlan:
    """What to score, in order: each file once, with the key that seeds its patch."""

    files: list[Path]
    keys: list[str]
    skipped: list[str]  # files in folders given that are not images


def plan_inputs(paths: Sequence[str | os.PathLike]) -> DetectPlan:
    """Files in the order given (folders expanded recursively, sorted; a file seen twice is
    scored once); keys relative to a folder given, or the file's name."""
    if not paths:
        raise RaidError("no images or folders given")
    plan = DetectPlan([], [], [])
    seen: set[str] = set()

    def add(path: Path, key: str) -> None:
        ident = os.path.abspath(path)
        if ident not in seen:
            seen.add(ident)
            plan.files.append(path)
            plan.keys.append(key)

    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            keys, others = walk(path, IMAGE_SUFFIXES)
            plan.skipped += [str(path / k) for k in others]
            for k in keys:
                add(path / k, k)
        elif path.exists():
            add(path, path.name)
        else:
            raise RaidError("no such file or folder", path)
    if not plan.files:
        raise RaidError("no images found (looked for " + ", ".join(sorted(IMAGE_SUFFIXES))
                        + ")", ", ".join(map(str, paths)))
    return plan


def load_pipeline(model: str | os.PathLike, opts: Any = None, allow_mismatch: bool = False):
    """A bundle folder (`opts` gives only how to run), or a model file with the AIM
    options of `raid.pipelines.extraction.ExtractOptions` `opts`."""
    from raid.pipelines.pipeline import DetectorPipeline

    run = {}
    if opts is not None:
        run = dict(accelerator=opts.accelerator, batch_size=opts.batch_size,
                   max_pixels=opts.max_pixels, workers=opts.num_workers)
    if Path(model).is_dir():
        if opts is not None and (opts.arch or opts.backbone or opts.head):
            raise RaidError("a bundle names its AIM model: drop --arch, --backbone, --head",
                            model)
        return DetectorPipeline.from_bundle(model, allow_mismatch=allow_mismatch, **run)
    if opts is None or not opts.arch or not opts.backbone:
        raise RaidError("a model file needs the AIM options --arch and --backbone (and "
                        "--head); a bundle folder (raid fit --bundle) needs none", model)
    return DetectorPipeline.from_files(model, opts.arch, opts.backbone, opts.head,
                                       probe=opts.probe, seed=opts.seed,
                                       precision=opts.precision,
                                       allow_mismatch=allow_mismatch, **run)


def detect(paths: Sequence[str | os.PathLike], model: str | os.PathLike, opts: Any = None,
           allow_mismatch: bool = False, pipeline: Any = None,
           threshold: float | None = None) -> DetectResult:
    """P(generated) and a verdict for every image in `paths` (files and folders) with the
    model file or bundle `model` (see `load_pipeline`), or an already loaded `pipeline`.
    An image is called generated when P > `threshold` (default: the model's own,
    `threshold_`, which `raid fit --target-fpr` may have chosen). Scored a batch at a
    time, with progress on stderr, so Ctrl-C stops within the current batch."""
    plan = plan_inputs(paths)
    if pipeline is None:
        pipeline = load_pipeline(model, opts, allow_mismatch)
    if threshold is None:
        threshold = float(getattr(pipeline.detector, "threshold_", THRESHOLD))
    log.info("scoring %d image(s) with %s", len(plan.files), model)
    step = max(1, int(getattr(getattr(pipeline, "featurizer", None), "batch_size", 16)))
    predictions: list = []
    progress = Progress("scoring", len(plan.files), "images") \
        if log.isEnabledFor(logging.INFO) else None
    try:
        for start in range(0, len(plan.files), step):
            predictions += pipeline.predict(plan.files[start:start + step],
                                            keys=plan.keys[start:start + step])
            if progress is not None:
                progress.update(min(step, len(plan.files) - start))
    finally:
        if progress is not None:
            progress.close()
    detections = [Detection(str(f), p.p_generated, None, p.error) if p.error else
                  Detection(str(f), p.p_generated,
                            "generated" if p.p_generated > threshold else "real")
                  for f, p in zip(plan.files, predictions)]
    return DetectResult(detections, plan.skipped, str(model), threshold)


def write_detections(result: DetectResult, out: str | os.PathLike) -> Path:
    """Write the detections as CSV or JSON (by suffix), atomically."""
    out = Path(out)
    suffix = out.suffix.lower()
    if suffix == ".csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(COLUMNS)
        for d in result.detections:
            writer.writerow([display_key(d.path),
                             "" if d.p_generated is None else repr(d.p_generated),
                             d.verdict or "", d.error])
        write_text(out, buffer.getvalue())
    elif suffix == ".json":
        doc = {"model": result.model, "threshold": result.threshold,
               "rule": "generated when p_generated > threshold, else real",
               "images": [{"path": display_key(d.path), "p_generated": d.p_generated,
                           "verdict": d.verdict, "error": d.error or None}
                          for d in result.detections],
               "skipped_non_images": [display_key(p) for p in result.skipped]}
        write_text(out, json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
    else:
        raise RaidError("output must end in .csv or .json", out)
    return out
