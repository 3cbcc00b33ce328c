"""Shards: what one process writes while a run is going, merged into the store at the end
(`merge_shards`).

A shard is a small HDF5 file in `<store>.parts/`, written in SWMR mode and flushed after
each batch; a row counts only once the `committed` counter written after it says so, so a
process killed at any moment leaves shards that read back up to their last committed batch
or not at all. Every shard records its run's id and provenance: a crashed run's shards are
merged only by a run with the same settings, and shards of other settings are set aside
(renamed `*.h5.set-aside`, named in a warning), never folded in.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import h5py
import numpy as np

from raid.store.reader import provenance_differences
from raid.store.writer import StoreWriter

log = logging.getLogger(__name__)
STR = h5py.string_dtype("utf-8", None)
NON_FINITE = "the model gave non-finite features (NaN or inf)"


class ShardWriter:
    """Rows (and failures) written by one process while a run is going, one HDF5 file per
    `rows_per_file` rows in `<store>.parts/`, merged into the store at the end of the run.

    Files are written in SWMR mode and flushed after each batch, and a row counts only once
    the `committed` counter written after it says so. A process killed at any moment leaves
    shards that either read back up to their last committed batch or fail to open; the next
    run merges what reads back and redoes the rest.
    """

    def __init__(self, parts_dir: str | os.PathLike, dim: int, tag: str,
                 rows_per_file: int = 16384, provenance: dict | None = None,
                 run_id: str | None = None):
        self.dir = Path(parts_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.dim, self.tag, self.rows_per_file = dim, tag, rows_per_file
        self.provenance = provenance
        self.run_id = run_id if run_id is not None else tag.split("-")[0]
        self.non_finite: list[str] = []  # keys whose features were refused
        self._h5: h5py.File | None = None
        self._seq = 0
        self._rows = 0

    def _open(self) -> h5py.File:
        if self._h5 is None or self._rows >= self.rows_per_file:
            self.close()
            path = self.dir / f"{self.tag}-{self._seq:05d}.h5"
            self._seq += 1
            h5 = h5py.File(path, "w", libver="latest")
            h5.attrs["run_id"] = self.run_id
            if self.provenance is not None:
                h5.attrs["provenance"] = json.dumps(self.provenance, sort_keys=True)
            h5.create_dataset("digests", (0, 16), np.uint8, maxshape=(None, 16),
                              chunks=(1024, 16))
            h5.create_dataset("sources", (0, 2), np.int64, maxshape=(None, 2),
                              chunks=(1024, 2))
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
              groups: Sequence[str], failed: Sequence[tuple[str, str]] = (),
              digests: np.ndarray | None = None, sources: np.ndarray | None = None) -> None:
        """Commit one batch. Rows whose features are not finite become failures (by key)."""
        features = np.asarray(features, np.float32).reshape(len(keys), self.dim)
        digests = np.zeros((len(keys), 16), np.uint8) if digests is None else digests
        sources = np.zeros((len(keys), 2), np.int64) if sources is None else sources
        ok = np.isfinite(features).all(axis=1)
        if not ok.all():
            bad = [keys[i] for i in np.flatnonzero(~ok)]
            self.non_finite += bad
            failed = list(failed) + [(k, NON_FINITE) for k in bad]
            keys, labels, groups = ([x[i] for i in np.flatnonzero(ok)]
                                    for x in (keys, labels, groups))
            features, digests, sources = features[ok], digests[ok], sources[ok]
        h5 = self._open()
        n, nf = len(keys), len(failed)
        r0, f0 = (int(v) for v in h5["committed"][:])
        columns = [("features", np.asarray(features, np.float32).reshape(n, self.dim), r0),
                   ("labels", np.asarray(labels, np.int8), r0),
                   ("keys", _raw(keys), r0),
                   ("groups", _raw(groups), r0),
                   ("digests", np.asarray(digests, np.uint8).reshape(n, 16), r0),
                   ("sources", np.asarray(sources, np.int64).reshape(n, 2), r0),
                   ("failed_keys", _raw([k for k, _ in failed]), f0),
                   ("failed_reasons", _raw([r for _, r in failed]), f0)]
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


def _raw(items) -> np.ndarray:
    """Strings as UTF-8 bytes; file names that are not UTF-8 keep their bytes
    (surrogateescape), read back by `read_shard`."""
    return np.array([str(s).encode("utf-8", "surrogateescape") for s in items], dtype=object)


@dataclass
class ShardContent:
    keys: list[str]
    features: np.ndarray
    labels: np.ndarray
    groups: list[str]
    failed: list[tuple[str, str]]
    digests: np.ndarray | None = None
    sources: np.ndarray | None = None
    run_id: str = ""
    provenance: dict | None = None  # None: a shard of an older RAID (no provenance)


def read_shard(path: str | os.PathLike) -> ShardContent | None:
    """The committed content of a shard, or None when it does not read back (a process was
    killed while writing it: its images are redone)."""
    try:
        with h5py.File(path, "r", libver="latest", swmr=True) as h5:
            n, nf = (int(v) for v in h5["committed"][:])
            prov = h5.attrs.get("provenance")
            has = "digests" in h5
            return ShardContent(
                keys=list(h5["keys"].asstr("utf-8", "surrogateescape")[:n]),
                features=h5["features"][:n], labels=h5["labels"][:n],
                groups=list(h5["groups"].asstr("utf-8", "surrogateescape")[:n]),
                failed=list(zip(h5["failed_keys"].asstr("utf-8", "surrogateescape")[:nf],
                                h5["failed_reasons"].asstr("utf-8", "surrogateescape")[:nf])),
                digests=h5["digests"][:n] if has else None,
                sources=h5["sources"][:n] if has else None,
                run_id=str(h5.attrs.get("run_id", "")),
                provenance=None if prov is None else json.loads(prov))
    except Exception:  # any damage at all: drop the shard, never half of it
        return None


@dataclass
class MergeResult:
    """What `merge_shards` did; unpacks as (added, dropped) like before."""

    added: int = 0
    dropped: int = 0  # damaged shards (their images are redone)
    set_aside: list[Path] = field(default_factory=list)  # shards of other settings
    changed: list[str] = field(default_factory=list)  # keys present with another digest

    def __iter__(self):
        return iter((self.added, self.dropped))


def merge_shards(store: str | os.PathLike, parts_dir: str | os.PathLike, dim: int,
                 provenance: dict, run_id: str = "",
                 root: tuple[str | os.PathLike, str] | None = None) -> MergeResult:
    """Fold every shard in `parts_dir` whose provenance matches into the store (appended in
    place, one commit per shard), then delete them. A shard of other settings is renamed
    `<name>.set-aside` and named in a warning; a damaged one is dropped. `root`: (input
    folder, key prefix) to record; a missing store is created only when it is given."""
    store, parts_dir = Path(store), Path(parts_dir)
    shards = sorted(parts_dir.glob("*.h5")) if parts_dir.is_dir() else []
    result = MergeResult()
    if not shards and (store.exists() or root is None):
        return result  # nothing to do: the store is not even opened for writing
    done: list[Path] = []
    with StoreWriter(store, dim, provenance, run_id) as w:
        if root is not None:
            w.add_root(*root)
        stored = w.digests()
        for shard in shards:
            content = read_shard(shard)
            if content is None:
                result.dropped += 1
                done.append(shard)
                continue
            why = _differs(provenance, content.provenance)
            if why:
                aside = shard.with_name(shard.name + ".set-aside")
                shard.rename(aside)
                log.warning("%s: set aside, not merged into %s: made with other settings "
                            "(%s)", aside, store, why)
                result.set_aside.append(aside)
                continue
            if content.failed:
                w.record_failures(*zip(*content.failed))
            if content.keys:
                result.changed += _changed(w, stored, content)
                result.added += w.append(content.keys, content.features, content.labels,
                                         content.groups, content.digests, content.sources)
            done.append(shard)
    for shard in done:  # only once the store that holds their rows is in place
        shard.unlink(missing_ok=True)
    if parts_dir.is_dir() and not any(parts_dir.iterdir()):
        parts_dir.rmdir()
    return result


def _differs(provenance: dict, shard: dict | None) -> str:
    """Why a shard may not be merged under `provenance` ("" when it may)."""
    if shard is None:
        return "it records no settings"
    drop = ("feature_dim",)
    return "; ".join(provenance_differences({k: v for k, v in provenance.items() if k not in drop},
                                            {k: v for k, v in shard.items() if k not in drop}))


def _changed(w: StoreWriter, stored: np.ndarray, content: ShardContent) -> list[str]:
    """Keys already in the store whose source file had another digest (both known)."""
    if content.digests is None:
        return []
    out = []
    for k, d in zip(content.keys, content.digests):
        i = w._index.get(k)
        if i is not None and i < len(stored) and stored[i].any() and d.any() \
                and not np.array_equal(stored[i], d):
            out.append(k)
    return out
