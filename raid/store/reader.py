"""Reading a feature store (format 2, and format 1 as written by earlier RAID versions).

The layout and the commit rule are described in `raid.store.store`. A reader takes the
committed counts once when it opens, reads the row metadata (labels, groups, key offsets)
once, checks the store's invariants, and from then on reads features in slices; any
damage (a checksum that fails, an invariant that does not hold) is a one-line
`RaidError` naming the store and what is wrong, never wrong numbers.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import h5py
import numpy as np

from raid.primitives.errors import RaidError
from raid.store.h5file import join_ragged, split_ragged

FORMAT = "raid-feature-store"
FORMAT_VERSION = 2
VOLATILE_PROVENANCE = frozenset({"raid_version", "created", "source"})
# The committed counts, one slot per parity of `seq` (a torn write spoils one slot only).
COUNTS = ("seq", "rows", "key_bytes", "groups", "group_bytes", "failures", "failure_bytes",
          "roots", "root_bytes")
# name -> (entry offsets dataset, bytes dataset, count field, bytes field)
RAGGED = {"keys": ("key_ends", "key_bytes", "rows", "key_bytes"),
          "groups": ("group_ends", "group_bytes", "groups", "group_bytes"),
          "failures": ("failure_ends", "failure_bytes", "failures", "failure_bytes"),
          "roots": ("root_ends", "root_bytes", "roots", "root_bytes")}
ROW_DATASETS = ("features", "labels", "group_index", "key_ends", "digests", "sources")
NO_DIGEST = bytes(16)
_BLOCK = 16384  # rows per feature read when rows are picked (bounds memory per read)


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


def short(exc: BaseException) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0][:200]


def open_h5(path: Path, mode: str = "r") -> h5py.File:
    """Open for reading while a writer may be appending (SWMR), falling back to a plain
    open for files written without SWMR (format 1)."""
    try:
        return h5py.File(path, mode, swmr=True, libver="latest") if mode == "r" else \
            h5py.File(path, mode, libver="latest")
    except OSError:
        if mode != "r":
            raise
        return h5py.File(path, "r")


class FeatureStore:
    """Read access to a store (and the base of `raid.store.writer.StoreWriter`)."""

    def __init__(self, path: str | os.PathLike, mode: str = "r"):
        self.path = Path(path)
        if not self.path.exists():
            raise RaidError("no such feature store", self.path)
        if self.path.is_dir():
            raise RaidError("is a folder, not a feature store (.h5 file)", self.path)
        if self.path.stat().st_size == 0:
            raise RaidError("empty file, not a feature store", self.path)
        try:
            self._h5 = open_h5(self.path, mode)
        except OSError as exc:
            raise RaidError(f"cannot open as HDF5 ({short(exc)})", self.path) from None
        try:
            if self._h5.attrs.get("format") != FORMAT:
                raise RaidError("not a RAID feature store (HDF5 without RAID's layout)",
                                self.path)
            self.version = int(self._h5.attrs.get("format_version", -1))
            if self.version > FORMAT_VERSION:
                raise RaidError("store written by a newer RAID; upgrade RAID to read it",
                                self.path)
            self._load()
        except RaidError:
            self._h5.close()
            raise
        except (OSError, KeyError, ValueError, TypeError, UnicodeError) as exc:
            self._h5.close()
            raise RaidError(f"damaged feature store ({short(exc)})", self.path) from None

    # -- loading and checks ----------------------------------------------------------------
    def _load(self) -> None:
        self._keys: list[str] | None = None
        self._index: dict[str, int] | None = None
        self._key_blob: np.ndarray | None = None
        if self.version < 2:
            self._load_v1()
            return
        self._count = self._read_counts()
        c = self._count
        for name in ROW_DATASETS + tuple(v[1] for v in RAGGED.values()) + tuple(
                v[0] for v in RAGGED.values()):
            ds = self._h5[name]
            if self._h5.swmr_mode:
                ds.refresh()
        n = c["rows"]
        for name in ROW_DATASETS:
            if self._h5[name].shape[0] < n:
                self._damaged(f"{name} holds {self._h5[name].shape[0]} rows, {n} committed")
        self._labels = self._col("labels", 0, n).astype(np.int8)
        self._gidx = self._col("group_index", 0, n).astype(np.int32)
        self._key_ends = self._col("key_ends", 0, n).astype(np.int64)
        self._group_names = self._ragged("groups")
        self._failure_log = self._ragged("failures")
        self._roots = [json.loads(r) for r in self._ragged("roots")]
        self._check()

    def _load_v1(self) -> None:
        h5 = self._h5
        n = int(h5["labels"].shape[0])
        if any(h5[k].shape[0] != n for k in ("features", "group_index", "keys")):
            self._damaged("row datasets have different lengths")
        self._labels = h5["labels"][:].astype(np.int8)
        self._gidx = h5["group_index"][:].astype(np.int32)
        keys = list(h5["keys"].asstr()[:])
        self._key_blob, self._key_ends = join_ragged(keys, 0)
        self._group_names = list(h5["group_names"].asstr()[:])
        f = h5["failures"]
        self._failure_log = [f"{k}\0{r}" for k, r in zip(f["keys"].asstr()[:],
                                                          f["reasons"].asstr()[:])]
        self._roots = []
        self._count = {"rows": n, "key_bytes": int(self._key_ends[-1]) if n else 0}
        self._check()

    def _read_counts(self) -> dict[str, int]:
        best = None
        for slot in (0, 1):
            try:
                row = self._h5["committed"][slot]
            except OSError:  # a torn write of this slot: the other one holds the last commit
                continue
            if best is None or row[0] > best[0]:
                best = row
        if best is None:
            self._damaged("both commit records fail their checksums")
        counts = {name: int(v) for name, v in zip(COUNTS, best)}
        if min(counts.values()) < 0:
            self._damaged("negative committed counts")
        return counts

    def _col(self, name: str, start: int, stop: int) -> np.ndarray:
        try:
            return self._h5[name][start:stop]
        except OSError as exc:
            self._damaged(f"{name} rows {start}-{stop} cannot be read ({short(exc)})")

    def _ragged(self, name: str) -> list[str]:
        ends_name, bytes_name, n_field, b_field = RAGGED[name]
        n, nb = self._count[n_field], self._count[b_field]
        if self._h5[ends_name].shape[0] < n or self._h5[bytes_name].shape[0] < nb:
            self._damaged(f"{name} shorter than committed")
        ends = self._col(ends_name, 0, n).astype(np.int64)
        self._check_ends(name, ends, nb)
        return split_ragged(self._col(bytes_name, 0, nb), ends)

    def _check_ends(self, name: str, ends: np.ndarray, total: int) -> None:
        if len(ends) and (ends[0] < 0 or np.any(np.diff(ends) < 0) or ends[-1] != total):
            self._damaged(f"{name} offsets are out of order")

    def _check(self) -> None:
        n = len(self._labels)
        if len(self._gidx) and (self._gidx.min() < 0 or self._gidx.max() >= len(self._group_names)):
            self._damaged("a row's group index is out of range")
        if n and not np.isin(self._labels, (-1, 0, 1)).all():
            self._damaged("a label is not -1, 0 or 1")
        if len(set(self._group_names)) != len(self._group_names):
            self._damaged("duplicate group names")
        if self.version >= 2:
            self._check_ends("keys", self._key_ends, self._count["key_bytes"])
        if n and (self._key_ends[0] <= 0 or np.any(np.diff(self._key_ends) <= 0)):
            self._damaged("an empty key")
        if any("\0" not in e for e in self._failure_log):
            self._damaged("a failure record without its reason")

    def _damaged(self, what: str):
        raise RaidError(f"damaged feature store: {what}", self.path)

    # -- metadata --------------------------------------------------------------------------
    @property
    def dim(self) -> int:
        return int(self._h5.attrs["feature_dim"])

    @property
    def provenance(self) -> dict:
        return json.loads(self._h5.attrs["provenance"])

    def __len__(self) -> int:
        return len(self._labels)

    def roots(self) -> list[dict]:
        """Input folders extracted into the store: {"root": absolute path, "prefix": key
        prefix ("" for none)}, in the order they were first used."""
        return list(self._roots)

    def group_names(self) -> list[str]:
        """Groups that have at least one row, sorted."""
        present = np.unique(self._gidx) if len(self) else []
        return sorted(self._group_names[i] for i in present)

    def keys(self) -> list[str]:
        """Every row's key, in row order (decoded once; checked to be unique)."""
        if self._keys is None:
            self._keys = split_ragged(self._blob(), self._key_ends)
            self.key_index()
        return self._keys

    def key_index(self) -> dict[str, int]:
        """key -> row (built once; a store with a repeated key is refused as damaged)."""
        if self._index is None:
            keys = self.keys() if self._keys is not None else None
            index = dict(zip(keys if keys is not None else self.keys(), range(len(self))))
            if len(index) != len(self):
                self._damaged("duplicate keys")
            self._index = index
        return self._index

    def _blob(self) -> np.ndarray:
        if self._key_blob is None:
            self._key_blob = self._col("key_bytes", 0, self._count["key_bytes"])
        return self._key_blob

    def digests(self) -> np.ndarray:
        """(n, 16) uint8 BLAKE2b-128 digests of the rows' source files (zeros: unknown)."""
        if self.version < 2:
            return np.zeros((len(self), 16), np.uint8)
        return self._col("digests", 0, len(self))

    def sources(self) -> np.ndarray:
        """(n, 2) int64: size and modification time (ns) of each row's source file, as
        recorded with its digest (zeros: unknown)."""
        if self.version < 2:
            return np.zeros((len(self), 2), np.int64)
        return self._col("sources", 0, len(self))

    def failures(self) -> dict[str, str]:
        """Files that could not be read, with the reason: recorded, not rows."""
        out: dict[str, str] = {}
        for entry in self._failure_log:
            key, reason = entry.split("\0", 1)
            if reason:
                out[key] = reason
            else:
                out.pop(key, None)
        return out

    def counts(self) -> dict[str, dict[int, int]]:
        """Rows per group and label, read without touching the features."""
        out: dict[str, dict[int, int]] = {}
        if not len(self):
            return out
        pairs, n = np.unique(np.stack([self._gidx, self._labels.astype(np.int32)]), axis=1,
                             return_counts=True)
        for (g, lab), c in zip(pairs.T, n):
            out.setdefault(self._group_names[g], {})[int(lab)] = int(c)
        return dict(sorted(out.items()))

    # -- rows ------------------------------------------------------------------------------
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
            mask &= np.isin(self._gidx, [self._group_names.index(g) for g in groups])
        if labels is not None:
            mask &= np.isin(self._labels, list(labels))
        return np.flatnonzero(mask)

    def read(self, groups: Iterable[str] | None = None, labels: Iterable[int] | None = None,
             indices: np.ndarray | None = None) -> Rows:
        """Rows by group and label; features are read in contiguous runs, not all at once."""
        idx = self.select(groups, labels) if indices is None else np.asarray(indices, np.int64)
        if len(idx) and (idx.min() < 0 or idx.max() >= len(self)):
            raise IndexError(f"row index out of range (store has {len(self)} rows)")
        return Rows(self._read_features(idx), self._labels[idx],
                    self._names()[self._gidx[idx]], self._keys_at(idx))

    def iter_batches(self, batch_size: int = 65536, groups: Iterable[str] | None = None,
                     labels: Iterable[int] | None = None) -> Iterator[Rows]:
        """The selected rows (default all) in store order, `batch_size` rows at a time; the
        row metadata was read once when the store opened."""
        idx = self.select(groups, labels) if groups is not None or labels is not None \
            else None
        n = len(self) if idx is None else len(idx)
        for start in range(0, n, batch_size):
            stop = min(start + batch_size, n)
            if idx is None:
                yield Rows(self._slice_features(start, stop), self._labels[start:stop],
                           self._names()[self._gidx[start:stop]],
                           self._keys_at(np.arange(start, stop)))
            else:
                yield self.read(indices=idx[start:stop])

    def _names(self) -> np.ndarray:
        return np.array(self._group_names + [""], dtype=object)

    def _keys_at(self, idx: np.ndarray) -> np.ndarray:
        if self._keys is not None:
            return np.array([self._keys[i] for i in idx.tolist()], dtype=object)
        ends = self._key_ends
        data = self._blob()
        starts = np.where(idx > 0, ends[np.maximum(idx - 1, 0)], 0)
        out = np.empty(len(idx), dtype=object)
        for j, (s, e) in enumerate(zip(starts.tolist(), ends[idx].tolist())):
            out[j] = data[s:e].tobytes().decode("utf-8", "surrogateescape")
        return out

    def _slice_features(self, start: int, stop: int) -> np.ndarray:
        try:
            return self._h5["features"][start:stop]
        except OSError as exc:
            self._damaged(f"features of rows {start}-{stop} cannot be read ({short(exc)})")

    def _read_features(self, idx: np.ndarray) -> np.ndarray:
        """Rows `idx` (any order, repeats allowed), read block by block: each block of
        `_BLOCK` rows that holds a wanted row is read once, as one slice from its first to
        its last wanted row, so scattered rows cost a chunk read per block, not per row."""
        out = np.empty((len(idx), self.dim), dtype=np.float32)
        if not len(idx):
            return out
        order = np.argsort(idx, kind="stable")
        sidx = idx[order]
        bounds = np.flatnonzero(np.diff(sidx // _BLOCK)) + 1
        for lo, hi in zip(np.r_[0, bounds], np.r_[bounds, len(sidx)]):
            first, last = int(sidx[lo]), int(sidx[hi - 1])
            block = self._slice_features(first, last + 1)
            out[order[lo:hi]] = block[sidx[lo:hi] - first]
        return out

    # -- lifetime --------------------------------------------------------------------------
    def close(self) -> None:
        if self._h5.id.valid:
            self._h5.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()
