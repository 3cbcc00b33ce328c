"""Scoring single images and folders with a saved detector (what `raid detect` runs).

The images go through the one extraction path (`raid.pipelines.extraction.extract`) into temporary
stores: a folder given is extracted as it is (keys relative to it), files given are linked
into a temporary folder under their own names (one per parent folder). Keys seed the patch
choice, so an image gets exactly the features `raid extract --input` gives it on its folder
(or, for a file, on its parent folder), whatever else is scored with it; a broken file
comes back with the reason the extractor recorded.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Sequence

import numpy as np

from raid.primitives.errors import RaidError
from raid.metrics.evaluation import THRESHOLD, predict_labels
from raid.primitives.fileio import write_text
from raid.primitives.images import IMAGE_SUFFIXES
from raid.primitives.layout import walk

VERDICTS = ("real", "generated")
COLUMNS = ("path", "p_generated", "verdict", "error")


@dataclass
class Detection:
    path: str
    p_generated: float | None = None
    verdict: str | None = None  # "generated" when P > 0.5, else "real"; None on error
    error: str = ""


@dataclass
class DetectResult:
    detections: list[Detection]
    skipped: list[str] = field(default_factory=list)  # files in folders that are not images
    model: str = ""

    @property
    def failed(self) -> list[Detection]:
        return [d for d in self.detections if d.error]

    def table(self) -> str:
        """A plain-text table for the terminal."""
        width = max([len(d.path) for d in self.detections] + [4])
        lines = [f"{'path':<{width}}  P(generated)  verdict"]
        for d in self.detections:
            if d.error:
                lines.append(f"{d.path:<{width}}  {'-':>12}  error: {d.error}")
            else:
                lines.append(f"{d.path:<{width}}  {d.p_generated:>12.4f}  {d.verdict}")
        n_gen = sum(d.verdict == "generated" for d in self.detections)
        n_real = sum(d.verdict == "real" for d in self.detections)
        lines.append(f"{len(self.detections)} file(s): {n_gen} generated, {n_real} real, "
                     f"{len(self.failed)} unreadable; {len(self.skipped)} non-image file(s) "
                     "in folders skipped")
        return "\n".join(lines)


@dataclass
class _Unit:
    """Images extracted together: a folder given (keys relative to it, as `raid extract
    --input FOLDER` makes them) or the files given from one parent folder (key = name, as
    `raid extract --input PARENT` makes it). Keys seed the patch choice, so an image gets
    the same features whatever else is scored with it."""

    root: Path
    staged: bool  # True: the files are linked into a temporary folder under their keys
    index: dict[str, int] = field(default_factory=dict)  # key -> detection number


def _file_key(path: Path) -> str:
    # The extractor walks image suffixes only: a file named explicitly with another suffix
    # is given one so that it is tried (and, if it is not an image, fails with a reason).
    return path.name if path.suffix.lower() in IMAGE_SUFFIXES else path.name + ".png"


def plan_units(paths: Sequence[str | os.PathLike]) -> tuple[list[Path], list[_Unit], list[str]]:
    """The files to score in the order given (folders expanded recursively, sorted; a file
    seen twice is scored once), the extraction units, and the non-image files in folders."""
    if not paths:
        raise RaidError("no images or folders given")
    files: list[Path] = []
    units: list[_Unit] = []
    by_parent: dict[str, _Unit] = {}
    skipped: list[str] = []
    seen: set[str] = set()

    def add(unit: _Unit, key: str, path: Path) -> None:
        ident = os.path.abspath(path)
        if ident not in seen:
            seen.add(ident)
            unit.index[key] = len(files)
            files.append(path)

    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            keys, others = walk(path, IMAGE_SUFFIXES)
            skipped += [str(path / k) for k in others]
            unit = _Unit(path, staged=False)
            units.append(unit)
            for k in keys:
                add(unit, k, path / k)
        elif path.exists():
            parent = os.path.abspath(path.parent)
            if parent not in by_parent:
                by_parent[parent] = _Unit(path.parent, staged=True)
                units.append(by_parent[parent])
            add(by_parent[parent], _file_key(path), path)
        else:
            raise RaidError("no such file or folder", path)
    return files, [u for u in units if u.index], skipped


def _stage(unit: _Unit, files: Sequence[Path], folder: Path) -> Path:
    """Link (or, where links are not possible, copy) a unit's files into `folder`."""
    folder.mkdir(parents=True)
    for key, i in unit.index.items():
        try:
            os.symlink(os.path.abspath(files[i]), folder / key)
        except OSError:
            shutil.copyfile(files[i], folder / key)
    return folder


def check_feature_size(detector, arch: str, probe: str, model: str | os.PathLike) -> None:
    """One line, before any extraction, when the model's feature size is not the AIM width."""
    from raid.models.aim import load_config

    config = load_config(arch, probe)
    if detector.n_features_in_ != config.width:
        raise RaidError(f"feature size differs: the model expects {detector.n_features_in_} "
                        f"features, AIM {config.name} gives {config.width}", model)


def detect(paths: Sequence[str | os.PathLike], model: str | os.PathLike, opts,
           ) -> DetectResult:
    """P(generated) and a verdict for every image in `paths` (files and folders), with
    `raid.pipelines.extraction.ExtractOptions` `opts` (always run in one process)."""
    from raid.svm.detector import RaidDetector
    from raid.pipelines.extraction import extract
    from raid.store.store import FeatureStore

    detector = RaidDetector.load(model)
    check_feature_size(detector, opts.arch, opts.probe, model)
    files, units, skipped = plan_units(paths)
    detections = [Detection(str(f)) for f in files]
    # One process: the temporary folders are private to it (a run over several devices
    # would need them shared); large sets are for `raid extract` + `raid evaluate`.
    opts = replace(opts, devices=1, num_nodes=1, strategy="auto")
    with tempfile.TemporaryDirectory(prefix="raid-detect-") as tmp:
        for n, unit in enumerate(units):
            root = _stage(unit, files, Path(tmp) / f"images{n}") if unit.staged else unit.root
            summary = extract(root, Path(tmp) / f"features{n}.h5", opts)
            for key, reason in summary.failed.items():
                if key in unit.index:
                    detections[unit.index[key]].error = reason
            with FeatureStore(summary.store) as fs:
                rows = fs.read() if len(fs) else None
            if rows is None:
                continue
            wanted = [i for i, k in enumerate(rows.keys) if k in unit.index]
            probs = detector.predict_proba(rows.features[wanted])[:, 1] if wanted else []
            for i, p, label in zip(wanted, probs, predict_labels(np.asarray(probs))):
                d = detections[unit.index[rows.keys[i]]]
                d.p_generated, d.verdict = float(p), VERDICTS[int(label)]
    for d in detections:  # a file neither scored nor failed: should not happen, but say so
        if d.verdict is None and not d.error:
            d.error = "not processed"
    return DetectResult(detections, skipped, str(model))


def write_detections(result: DetectResult, out: str | os.PathLike) -> Path:
    """Write the detections as CSV or JSON (by suffix), atomically."""
    out = Path(out)
    suffix = out.suffix.lower()
    if suffix == ".csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(COLUMNS)
        for d in result.detections:
            writer.writerow([d.path, "" if d.p_generated is None else repr(d.p_generated),
                             d.verdict or "", d.error])
        write_text(out, buffer.getvalue())
    elif suffix == ".json":
        doc = {"model": result.model, "threshold": THRESHOLD,
               "rule": "generated when p_generated > threshold, else real",
               "images": [{"path": d.path, "p_generated": d.p_generated,
                           "verdict": d.verdict, "error": d.error or None}
                          for d in result.detections],
               "skipped_non_images": result.skipped}
        write_text(out, json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
    else:
        raise RaidError("output must end in .csv or .json", out)
    return out
