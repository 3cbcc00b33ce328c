"""The HDF5 feature store: one row per image, keyed by its path relative to the input root.

Layout (h5py):
    /features      (N, D) float32, chunked, appendable
    /labels        (N,)   int8: 0 real, 1 generated, -1 unknown
    /group_index   (N,)   int32 into /group_names
    /group_names   (G,)   UTF-8 strings (e.g. generator names)
    /keys          (N,)   UTF-8 strings, unique: the row's identity
    /failures/keys, /failures/reasons   files that could not be read, with the reason
    attrs: format, format_version, feature_dim, provenance (JSON)

Provenance (extractor and its settings, checkpoint digests, patch policy and seed,
perturbation, feature size) is fixed when the store is created; appending rows made with
other settings is refused, naming what differs. Only `VOLATILE_PROVENANCE` keys may differ.

Writes never touch the store in place: `StoreWriter` works on a temporary copy beside it
and renames it over the original when done, so a crash leaves the old store intact.
During a run each process writes shards (`raid.store.shards`, re-exported here);
`merge_shards` folds them into the store at the end.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import h5py
import numpy as np

from raid import __version__
from raid.primitives.errors import RaidError
from raid.primitives.fileio import atomic_path
from raid.store.shards import STR as _STR
from raid.store.shards import ShardContent, ShardWriter, read_shard

__all__ = ["FORMAT", "FORMAT_VERSION", "VOLATILE_PROVENANCE", "FeatureStore", "Rows",
           "ShardContent", "ShardWriter", "StoreWriter", "flatten", "merge_shards",
           "provenance_differences", "read_shard"]

FORMAT = "raid-feature-store"
FORMAT_VERSION = 1
VOLATILE_PROVENANCE = frozenset({"raid_version", "created", "source"})


@dataclass
class Rows:
    """A selection of store rows, in store order."""

    features: np.ndarray  # (n, D) float32
    labels: np.ndarray  # (n,) int8
    groups: np.ndarray  # (n,) object array of str
    keys: np.ndarray  # (n,) object array of str

    def __len__(self) -> int:
        return len(self.labels)


def flatten(d: dict, prefix: str = "") -> dict:
    """{"a": {"b": 1}} -> {"a.b": 1}: provenance differences are reported by dotted name."""
    out = {}
    for k, v in d.items():
        name = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, name + "."))
        else:
            out[name] = v
    return out


def provenance_differences(old: dict, new: dict) -> list[str]:
    a, b = flatten(old), flatten(new)
    diffs = []
    for name in sorted(set(a) | set(b)):
        if name.split(".")[0] in VOLATILE_PROVENANCE:
            continue
        if a.get(name) != b.get(name):
            diffs.append(f"{name}: store has {a.get(name)!r}, new rows have {b.get(name)!r}")
    return diffs


class FeatureStore:
    """Read access to a store (and the base of `StoreWriter`)."""

    def __init__(self, path: str | os.PathLike, mode: str = "r"):
        self.path = Path(path)
        if not self.path.exists():
            raise RaidError("no such feature store", self.path)
        if self.path.is_dir():
            raise RaidError("is a folder, not a feature store (.h5 file)", self.path)
        if self.path.stat().st_size == 0:
            raise RaidError("empty file, not a feature store", self.path)
        try:
            self._h5 = h5py.File(self.path, mode)
        except OSError as exc:
            raise RaidError(f"cannot open as HDF5 ({_short(exc)})", self.path) from None
        if self._h5.attrs.get("format") != FORMAT:
            self._h5.close()
            raise RaidError("not a RAID feature store (HDF5 without RAID's layout)", self.path)
        if int(self._h5.attrs.get("format_version", -1)) > FORMAT_VERSION:
            self._h5.close()
            raise RaidError("store written by a newer RAID; upgrade RAID to read it", self.path)
        self._group_names = [s for s in self._h5["group_names"].asstr()[:]]

    # -- metadata ------------------------------------------------------------------------
    @property
    def dim(self) -> int:
        return int(self._h5.attrs["feature_dim"])

    @property
    def provenance(self) -> dict:
        return json.loads(self._h5.attrs["provenance"])

    def __len__(self) -> int:
        return int(self._h5["labels"].shape[0])

    def group_names(self) -> list[str]:
        """Groups that have at least one row, sorted."""
        present = np.unique(self._h5["group_index"][:]) if len(self) else []
        return sorted(self._group_names[i] for i in present)

    def keys(self) -> list[str]:
        return list(self._h5["keys"].asstr()[:])

    def failures(self) -> dict[str, str]:
        """Files that could not be read, with the reason: recorded, not rows."""
        f = self._h5["failures"]
        return dict(zip(f["keys"].asstr()[:], f["reasons"].asstr()[:]))

    def counts(self) -> dict[str, dict[int, int]]:
        """Rows per group and label, read without touching the features."""
        gi, lab = self._h5["group_index"][:], self._h5["labels"][:]
        out: dict[str, dict[int, int]] = {}
        for g, l in zip(*np.unique(np.stack([gi, lab]), axis=1)):
            out.setdefault(self._group_names[g], {})[int(l)] = int(((gi == g) & (lab == l)).sum())
        return dict(sorted(out.items()))

    # -- rows ----------------------------------------------------------------------------
    def select(self, groups: Iterable[str] | None = None,
               labels: Iterable[int] | None = None) -> np.ndarray:
        """Indices of the rows in these groups and with these labels (None = all)."""
        mask = np.ones(len(self), dtype=bool)
        if groups is not None:
            groups = list(groups)
            unknown = [g for g in groups if g not in self._group_names]
            if unknown:
                raise RaidError(f"no group {', '.join(map(repr, unknown))} in the store "
                                f"(it has {', '.join(self.group_names()) or 'none'})", self.path)
            wanted = [self._group_names.index(g) for g in groups]
            mask &= np.isin(self._h5["group_index"][:], wanted)
        if labels is not None:
            mask &= np.isin(self._h5["labels"][:], list(labels))
        return np.flatnonzero(mask)

    def read(self, groups: Iterable[str] | None = None, labels: Iterable[int] | None = None,
             indices: np.ndarray | None = None) -> Rows:
        """Rows by group and label; features are read in contiguous runs, not all at once."""
        idx = self.select(groups, labels) if indices is None else np.asarray(indices)
        names = np.array(self._group_names, dtype=object)
        return Rows(
            features=self._read_features(idx),
            labels=self._h5["labels"][:][idx].astype(np.int8),
            groups=names[self._h5["group_index"][:][idx]] if len(idx) else np.array([], object),
            keys=np.array(self._h5["keys"].asstr()[:], dtype=object)[idx],
        )

    def iter_batches(self, batch_size: int = 65536) -> Iterator[Rows]:
        for start in range(0, len(self), batch_size):
            yield self.read(indices=np.arange(start, min(start + batch_size, len(self))))

    def _read_features(self, idx: np.ndarray) -> np.ndarray:
        out = np.empty((len(idx), self.dim), dtype=np.float32)
        if not len(idx):
            return out
        ds = self._h5["features"]
        # Split the sorted indices into runs of consecutive rows: one slice read per run.
        order = np.argsort(idx, kind="stable")
        sidx = idx[order]
        breaks = np.flatnonzero(np.diff(sidx) != 1) + 1
        pos = 0
        for run in np.split(sidx, breaks):
            out[order[pos:pos + len(run)]] = ds[run[0]:run[-1] + 1]
            pos += len(run)
        return out

    # -- lifetime ------------------------------------------------------------------------
    def close(self) -> None:
        if self._h5.id.valid:
            self._h5.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class StoreWriter(FeatureStore):
    """Appends to a store through a temporary copy, renamed over the store on `commit`.

    Use as a context manager: the copy is committed when the block ends normally and
    discarded when it raises, so the store is never left half-written.
    """

    def __init__(self, path: str | os.PathLike, dim: int, provenance: dict):
        target = Path(path)
        if target.is_dir():
            raise RaidError("is a folder, not a feature store (.h5 file)", target)
        self.target = target
        provenance = {**provenance, "feature_dim": int(dim), "raid_version": __version__}
        self._tmp_ctx = atomic_path(target)
        self._tmp = self._tmp_ctx.__enter__()
        try:
            if target.exists() and target.stat().st_size > 0:
                FeatureStore(target).close()  # validates it is a store before copying
                shutil.copyfile(target, self._tmp)
            else:
                _create(self._tmp, dim, provenance)
            super().__init__(self._tmp, mode="r+")
        except BaseException as exc:
            self._tmp_ctx.__exit__(type(exc), exc, exc.__traceback__)
            raise
        if self.dim != dim:
            have = self.dim
            self.abort()
            raise RaidError(f"feature size differs: store has {have}, new rows have {dim}",
                            target)
        diffs = provenance_differences(self.provenance, provenance)
        if diffs:
            self.abort()
            raise RaidError("refusing to mix rows made with different settings: "
                            + "; ".join(diffs), target)
        self._key_index = {k: i for i, k in enumerate(self.keys())}

    def append(self, keys: Sequence[str], features: np.ndarray, labels: Sequence[int],
               groups: Sequence[str]) -> int:
        """Append rows whose key is not in the store yet; returns how many were added."""
        features = np.asarray(features, dtype=np.float32)
        if features.ndim != 2 or features.shape[1] != self.dim:
            raise ValueError(f"features of shape {features.shape}, store has D={self.dim}")
        keep, seen = [], set()
        for i, k in enumerate(keys):
            if k not in self._key_index and k not in seen:
                keep.append(i)
                seen.add(k)
        if not keep:
            return 0
        n0, n = len(self), len(keep)
        gi = np.array([self._group_id(groups[i]) for i in keep], dtype=np.int32)
        for name, values in (("features", features[keep]),
                             ("labels", np.asarray(labels, dtype=np.int8)[keep]),
                             ("group_index", gi),
                             ("keys", np.array([keys[i] for i in keep], dtype=object))):
            ds = self._h5[name]
            ds.resize(n0 + n, axis=0)
            ds[n0:] = values
        for j, i in enumerate(keep):
            self._key_index[keys[i]] = n0 + j
        self.clear_failures([keys[i] for i in keep])
        return n

    def record_failures(self, keys: Sequence[str], reasons: Sequence[str]) -> None:
        current = self.failures()
        current.update(zip(keys, reasons))
        self._write_failures(current)

    def clear_failures(self, keys: Iterable[str]) -> None:
        current = self.failures()
        if not current:
            return
        remaining = {k: v for k, v in current.items() if k not in set(keys)}
        if len(remaining) != len(current):
            self._write_failures(remaining)

    def _write_failures(self, failures: dict[str, str]) -> None:
        f = self._h5["failures"]
        for name, values in (("keys", list(failures)), ("reasons", list(failures.values()))):
            f[name].resize(len(values), axis=0)
            if values:
                f[name][:] = np.array(values, dtype=object)

    def _group_id(self, name: str) -> int:
        if name not in self._group_names:
            ds = self._h5["group_names"]
            ds.resize(len(self._group_names) + 1, axis=0)
            ds[-1] = name
            self._group_names.append(name)
        return self._group_names.index(name)

    def commit(self) -> None:
        self._h5.flush()
        self.close()
        self._tmp_ctx.__exit__(None, None, None)

    def abort(self) -> None:
        self.close()
        err = RuntimeError("aborted")
        try:
            self._tmp_ctx.__exit__(RuntimeError, err, None)
        except RuntimeError:
            pass

    def __exit__(self, exc_type, *exc) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()


def _create(path: Path, dim: int, provenance: dict) -> None:
    chunk_rows = max(1, min(1024, (1 << 20) // (4 * dim)))  # about 1 MiB feature chunks
    with h5py.File(path, "w") as h5:
        h5.attrs["format"] = FORMAT
        h5.attrs["format_version"] = FORMAT_VERSION
        h5.attrs["feature_dim"] = int(dim)
        h5.attrs["provenance"] = json.dumps(provenance, sort_keys=True)
        h5.create_dataset("features", (0, dim), np.float32, maxshape=(None, dim),
                          chunks=(chunk_rows, dim))
        for name, dt in (("labels", np.int8), ("group_index", np.int32), ("keys", _STR),
                         ("group_names", _STR)):
            h5.create_dataset(name, (0,), dt, maxshape=(None,), chunks=(4096,))
        f = h5.create_group("failures")
        for name in ("keys", "reasons"):
            f.create_dataset(name, (0,), _STR, maxshape=(None,), chunks=(1024,))


def _short(exc: Exception) -> str:
    return str(exc).splitlines()[0][:200]


def merge_shards(store: str | os.PathLike, parts_dir: str | os.PathLike, dim: int,
                 provenance: dict) -> tuple[int, int]:
    """Fold every shard in `parts_dir` into the store (one atomic rewrite), then delete them.
    Returns (rows added, shards dropped as unreadable)."""
    parts_dir = Path(parts_dir)
    shards = sorted(parts_dir.glob("*.h5")) if parts_dir.is_dir() else []
    added = dropped = 0
    with StoreWriter(store, dim, provenance) as w:
        for shard in shards:
            content = read_shard(shard)
            if content is None:
                dropped += 1
                continue
            if content.failed:
                w.record_failures(*zip(*content.failed))
            if content.keys:
                added += w.append(content.keys, content.features, content.labels,
                                  content.groups)
    for shard in shards:  # only after the store that holds their rows is in place
        shard.unlink(missing_ok=True)
    if parts_dir.is_dir() and not any(parts_dir.iterdir()):
        parts_dir.rmdir()
    return added, dropped
