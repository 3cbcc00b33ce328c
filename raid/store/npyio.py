"""The seed's per-image `.npy` feature layout, in and out of the feature store.

Import reads `SRC/{0_real,1_fake}/*.npy` (the published training features) and
`SRC/<generator>/[<subset>/]{0_real,1_fake}/*.npy` (the published test features); label and
group follow `raid.primitives.layout`, and the key is the file's path relative to SRC. Export writes
one `(1, D)` float32 `.npy` per row, so the seed's own scripts can read RAID's features.

Arrays with NaN or infinite values (also after the cast to float32) are skipped by name.
Export writes only inside OUT: every key is checked before the first file is written
(absolute paths, drive letters, `..`, backslashes, NUL and control characters refused by
name; a key that is another key's folder, two keys naming one file, or a path through an
existing file or a link leading out of OUT refused too), so a bad store exports nothing.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np

from raid.primitives import layout
from raid.primitives.errors import RaidError
from raid.primitives.fileio import atomic_path, output_target
from raid.primitives.keys import display_key, relative_parts
from raid.primitives.progress import Progress
from raid.store.store import FeatureStore, StoreWriter

log = logging.getLogger(__name__)
NPY_PROVENANCE = {"extractor": "imported-npy"}


@dataclass
class NpyTree:
    keys: list[str]
    features: np.ndarray  # (n, D) float32
    labels: np.ndarray  # (n,) int8
    groups: list[str]
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (key, reason)
    other_files: int = 0


def read_npy_tree(src: str | os.PathLike, group: str | None = None,
                  dim: int | None = None) -> NpyTree:
    """Read every `.npy` under `src`. Arrays that are not float vectors of shape (D,) or
    (1, D), or whose D differs from `dim` (default: the most common D), are skipped and
    reported by name."""
    src = Path(src)
    if not src.is_dir():
        raise RaidError("no such folder", src)
    keys, others = layout.walk(src, frozenset({".npy"}))
    arrays: dict[str, np.ndarray] = {}
    skipped: list[tuple[str, str]] = []
    with Progress("reading .npy", len(keys), "files") as bar:
        for key in keys:
            bar.update()
            try:
                a = np.load(src / key, allow_pickle=False)
            except Exception as exc:  # any unreadable file is reported, not fatal
                skipped.append((key, f"not a readable .npy file ({str(exc).splitlines()[0]})"))
                continue
            if not np.issubdtype(a.dtype, np.floating) or not (
                    a.ndim == 1 or (a.ndim == 2 and a.shape[0] == 1)) or a.size == 0:
                skipped.append((key, f"not a float vector of shape (D,) or (1, D): "
                                     f"{a.dtype} {a.shape}"))
                continue
            with np.errstate(over="ignore"):  # values beyond float32 become inf: refused
                a = a.reshape(-1).astype(np.float32)
            bad = int(a.size - np.count_nonzero(np.isfinite(a)))
            if bad:
                skipped.append((key, f"{bad} of {a.size} values are NaN or infinite "
                                     "(as float32)"))
                continue
            arrays[key] = a
    if dim is None and arrays:
        dim = Counter(a.size for a in arrays.values()).most_common(1)[0][0]
    kept = []
    for key, a in arrays.items():
        if a.size != dim:
            skipped.append((key, f"feature size {a.size} differs from {dim}"))
        else:
            kept.append(key)
    feats = np.stack([arrays[k] for k in kept]).astype(np.float32) if kept \
        else np.zeros((0, dim or 0), np.float32)
    return NpyTree(
        keys=kept, features=feats,
        labels=np.array([layout.label_of(k) for k in kept], dtype=np.int8),
        groups=[group or layout.group_of(k, src) for k in kept],
        skipped=sorted(skipped), other_files=len(others))


@dataclass
class ImportSummary:
    added: int
    already_present: int
    skipped: list[tuple[str, str]]
    other_files: int
    counts: dict


def import_npy(src: str | os.PathLike, store: str | os.PathLike,
               group: str | None = None) -> ImportSummary:
    """Import a `.npy` tree into a store (created if missing); rows already there are kept."""
    store = Path(store)
    dim = None
    if store.exists():
        with FeatureStore(store) as existing:
            dim = existing.dim
    tree = read_npy_tree(src, group=group, dim=dim)
    for key, reason in tree.skipped:
        log.warning("skipped %s: %s", display_key(os.path.join(src, key)), reason)
    if not tree.keys:
        raise RaidError("no usable .npy feature files found", src)
    with StoreWriter(store, tree.features.shape[1], NPY_PROVENANCE) as w:
        added = w.append(tree.keys, tree.features, tree.labels, tree.groups)
        counts = w.counts()
    return ImportSummary(added, len(tree.keys) - added, tree.skipped, tree.other_files, counts)


def export_relpath(key: str) -> str:
    """Where a row goes under OUT, with forward slashes: imported rows keep their key, rows
    of images get `.npy` appended (`a.jpg.npy`), so two images that differ only by suffix
    never collide. Raises `RaidError` for an unsafe key (`raid.primitives.keys`)."""
    parts = relative_parts(key)
    name = parts[-1] if parts[-1].endswith(".npy") else parts[-1] + ".npy"
    return "/".join((*parts[:-1], name))


def export_path(out: Path, key: str) -> Path:
    return out / export_relpath(key)


def plan_export(out: Path, keys: Iterable[str]) -> None:
    """Check that every key can be written under `out` (see the module docstring); raises
    `RaidError` naming the first problem. Clashes are found in one sort: with "/" ordered
    before every other character, a file is directly followed by any path inside it."""
    order = sorted((export_relpath(k).replace("/", "\0"), k) for k in keys)
    for (a, key_a), (b, key_b) in zip(order, order[1:]):
        if a == b:
            raise RaidError(f"keys '{display_key(key_a)}' and '{display_key(key_b)}' name "
                            f"one file {display_key(a.replace(chr(0), '/'))}; nothing was "
                            "written")
        if b.startswith(a + "\0"):
            raise RaidError(f"key '{display_key(key_a)}' is a file where key "
                            f"'{display_key(key_b)}' needs a folder; nothing was written")
    if out.exists() and not out.is_dir():
        raise RaidError("exists and is not a folder; nothing was written", out)
    if out.is_dir() and any(out.iterdir()):
        _check_existing(out, [(rel.replace("\0", "/"), key) for rel, key in order])


def _check_existing(out: Path, files: list[tuple[str, str]]) -> None:
    """What already exists under `out` must not turn a write into one outside it, or meet
    a file where a folder is needed, or a folder, FIFO or device where a file goes."""
    real_out = Path(os.path.realpath(out))
    folders: dict[str, str] = {}
    for rel, key in files:
        parent = rel.rpartition("/")[0]
        while parent and parent not in folders:
            folders[parent] = key
            parent = parent.rpartition("/")[0]
    for rel, key, is_file in [*((r, k, False) for r, k in folders.items()),
                              *((r, k, True) for r, k in files)]:
        path = out / rel
        if not os.path.lexists(path):
            continue
        if not is_file and not path.is_dir():
            raise RaidError(f"exists and is not a folder, but key '{display_key(key)}' "
                            "needs one; nothing was written", path)
        if not Path(os.path.realpath(path)).is_relative_to(real_out):
            raise RaidError("is a link leading out of the output folder; nothing was "
                            "written", path)
        if is_file:
            output_target(path)  # refuses a folder, FIFO or device there


def export_npy(store: str | os.PathLike, out: str | os.PathLike) -> int:
    """Write one (1, D) float32 `.npy` per row under `out`; returns the number written."""
    out = Path(out)
    written = 0
    with FeatureStore(store) as fs:
        plan_export(out, fs.keys())
        with Progress("exporting", len(fs), "rows") as bar:
            for rows in fs.iter_batches():
                for key, vec in zip(rows.keys, rows.features):
                    with atomic_path(export_path(out, key), fsync=False) as tmp, \
                            open(tmp, "wb") as fh:
                        np.save(fh, vec.reshape(1, -1).astype(np.float32))
                    written += 1
                    bar.update()
    return written
