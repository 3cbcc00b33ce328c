"""Scoring single images and folders with a saved detector (what `raid detect` runs).

The images go through the one extraction path (`raid.extraction.extract`): each is linked
under a numbered name into a temporary folder, extracted into a temporary store, and the
store's rows and recorded failures are mapped back to the paths given. So detection sees
exactly the features `raid extract` would make (same patch policy, seed and decoding), and
a broken file comes back with the reason the extractor recorded.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from raid.errors import RaidError
from raid.evaluation import THRESHOLD, predict_labels
from raid.fileio import write_text
from raid.images import IMAGE_SUFFIXES
from raid.layout import walk

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


def collect_files(paths: Sequence[str | os.PathLike]) -> tuple[list[Path], list[str]]:
    """Files to score, in the order given (folders expanded recursively, sorted), duplicates
    dropped; and the non-image files found in folders. A path that does not exist is a
    user mistake."""
    files: list[Path] = []
    skipped: list[str] = []
    seen: set[str] = set()
    if not paths:
        raise RaidError("no images or folders given")
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            keys, others = walk(path, IMAGE_SUFFIXES)
            found = [path / k for k in keys]
            skipped += [str(path / k) for k in others]
        elif path.exists():
            found = [path]  # named explicitly: tried whatever its suffix
        else:
            raise RaidError("no such file or folder", path)
        for f in found:
            ident = os.path.abspath(f)
            if ident not in seen:
                seen.add(ident)
                files.append(f)
    return files, skipped


def _link_name(i: int, path: Path) -> str:
    # The extractor only walks image suffixes: a named file with another suffix gets an
    # image suffix here so it is tried (and, if it is not an image, fails with a reason).
    suffix = path.suffix if path.suffix.lower() in IMAGE_SUFFIXES else path.suffix + ".png"
    return f"{i:07d}{suffix}"


def _stage(files: Sequence[Path], folder: Path) -> dict[str, int]:
    """Link (or, where links are not possible, copy) each file into `folder`."""
    keys: dict[str, int] = {}
    for i, f in enumerate(files):
        name = _link_name(i, f)
        try:
            os.symlink(os.path.abspath(f), folder / name)
        except OSError:
            shutil.copyfile(f, folder / name)
        keys[name] = i
    return keys


def check_feature_size(detector, arch: str, probe: str, model: str | os.PathLike) -> None:
    """One line, before any extraction, when the model's feature size is not the AIM width."""
    from raid.aim import load_config

    config = load_config(arch, probe)
    if detector.n_features_in_ != config.width:
        raise RaidError(f"feature size differs: the model expects {detector.n_features_in_} "
                        f"features, AIM {config.name} gives {config.width}", model)


def detect(paths: Sequence[str | os.PathLike], model: str | os.PathLike, opts,
           ) -> DetectResult | None:
    """P(generated) and a verdict for every image in `paths` (files and folders), with
    `raid.extraction.ExtractOptions` `opts`. Returns None on the non-zero ranks of a
    multi-process run."""
    from raid.detector import RaidDetector
    from raid.extraction import extract
    from raid.store import FeatureStore

    detector = RaidDetector.load(model)
    check_feature_size(detector, opts.arch, opts.probe, model)
    files, skipped = collect_files(paths)
    detections = [Detection(str(f)) for f in files]
    if files:
        with tempfile.TemporaryDirectory(prefix="raid-detect-") as tmp:
            staged = Path(tmp) / "images"
            staged.mkdir()
            index = _stage(files, staged)
            summary = extract(staged, Path(tmp) / "features.h5", opts)
            if summary is None:
                return None
            with FeatureStore(summary.store) as fs:
                rows = fs.read() if len(fs) else None
            for key, reason in summary.failed.items():
                detections[index[key]].error = reason
            if rows is not None:
                probs = detector.predict_proba(rows.features)[:, 1]
                for key, p, label in zip(rows.keys, probs, predict_labels(probs)):
                    d = detections[index[key]]
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
