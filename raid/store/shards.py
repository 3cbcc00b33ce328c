"""Shards: what one process writes while a run is going, merged into the store at the end
(`raid.store.store.merge_shards`).

A shard is a small HDF5 file in `<store>.parts/`, written in SWMR mode and flushed after
each batch; a row counts only once the `committed` counter written after it says so, so a
process killed at any moment leaves shards that read back up to their last committed batch
or not at all.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import h5py
import numpy as np

STR = h5py.string_dtype("utf-8")


class ShardWriter:
    """Rows (and failures) written by one process while a run is going, one HDF5 file per
    `rows_per_file` rows in `<store>.parts/`, merged into the store at the end of the run.

    Files are written in SWMR mode and flushed after each batch, and a row counts only once
    the `committed` counter written after it says so. A process killed at any moment leaves
    shards that either read back up to their last committed batch or fail to open; the next
    run merges what reads back and redoes the rest.
    """

    def __init__(self, parts_dir: str | os.PathLike, dim: int, tag: str,
                 rows_per_file: int = 16384):
        self.dir = Path(parts_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.dim, self.tag, self.rows_per_file = dim, tag, rows_per_file
        self._h5: h5py.File | None = None
        self._seq = 0
        self._rows = 0

    def _open(self) -> h5py.File:
        if self._h5 is None or self._rows >= self.rows_per_file:
            self.close()
            path = self.dir / f"{self.tag}-{self._seq:05d}.h5"
            self._seq += 1
            h5 = h5py.File(path, "w", libver="latest")
            h5.create_dataset("features", (0, self.dim), np.float32, maxshape=(None, self.dim),
                              chunks=(max(1, min(256, (1 << 20) // (4 * self.dim))), self.dim))
            for name, dt in (("labels", np.int8), ("keys", STR), ("groups", STR)):
                h5.create_dataset(name, (0,), dt, maxshape=(None,), chunks=(1024,))
            for name in ("failed_keys", "failed_reasons"):
                h5.create_dataset(name, (0,), STR, maxshape=(None,), chunks=(256,))
            h5.create_dataset("committed", (2,), np.int64, data=[0, 0])  # rows, failures
            h5.swmr_mode = True
            self._h5, self._rows = h5, 0
        return self._h5

    def write(self, keys: Sequence[str], features: np.ndarray, labels: Sequence[int],
              groups: Sequence[str], failed: Sequence[tuple[str, str]] = ()) -> None:
        h5 = self._open()
        n, nf = len(keys), len(failed)
        r0, f0 = (int(v) for v in h5["committed"][:])
        columns = [("features", np.asarray(features, np.float32).reshape(n, self.dim), r0),
                   ("labels", np.asarray(labels, np.int8), r0),
                   ("keys", np.array(keys, dtype=object), r0),
                   ("groups", np.array(groups, dtype=object), r0),
                   ("failed_keys", np.array([k for k, _ in failed], dtype=object), f0),
                   ("failed_reasons", np.array([r for _, r in failed], dtype=object), f0)]
        for name, values, start in columns:
            if len(values):
                ds = h5[name]
                ds.resize(start + len(values), axis=0)
                ds[start:] = values
        h5.flush()
        h5["committed"][:] = [r0 + n, f0 + nf]  # only now do the rows count
        h5.flush()
        self._rows += n + nf

    def close(self) -> None:
        if self._h5 is not None:
            self._h5.close()
            self._h5 = None


@dataclass
class ShardContent:
    keys: list[str]
    features: np.ndarray
    labels: np.ndarray
    groups: list[str]
    failed: list[tuple[str, str]]


def read_shard(path: str | os.PathLike) -> ShardContent | None:
    """The committed content of a shard, or None when it does not read back (a process was
    killed while writing it: its images are redone)."""
    try:
        with h5py.File(path, "r", libver="latest", swmr=True) as h5:
            n, nf = (int(v) for v in h5["committed"][:])
            return ShardContent(
                keys=list(h5["keys"].asstr()[:n]), features=h5["features"][:n],
                labels=h5["labels"][:n], groups=list(h5["groups"].asstr()[:n]),
                failed=list(zip(h5["failed_keys"].asstr()[:nf],
                                h5["failed_reasons"].asstr()[:nf])))
    except Exception:  # any damage at all: drop the shard, never half of it
        return None
