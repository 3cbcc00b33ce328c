"""Writing a feature store: in place, one committed batch at a time, under the store's lock.

`StoreWriter` takes the lock (`raid.store.lock`), reopens a store whose last writer was
killed (`raid.store.h5file.clear_write_flags`), deletes stray temporary files of earlier
runs, and appends: each `append` writes past the committed counts, flushes, then writes
the new counts (and flushes again). A SIGKILL at any moment leaves every committed row
readable; what was written past the counts is ignored and overwritten by the next writer.
A new store is built in a temporary file renamed into place when the writer closes
cleanly; a format-1 store is converted once, the same way.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from contextlib import ExitStack
from pathlib import Path
from typing import Iterable, Sequence

import h5py
import numpy as np

from raid import __version__
from raid.primitives.errors import RaidError
from raid.store.h5file import clear_write_flags, join_ragged
from raid.store.lock import store_lock
from raid.store.reader import (COUNTS, FORMAT, FORMAT_VERSION, RAGGED, FeatureStore,
                               provenance_differences)

log = logging.getLogger(__name__)
_BIG = 1 << 16


def _create(path: Path, dim: int, provenance: dict) -> None:
    chunk_rows = max(1, min(1024, (1 << 20) // (4 * dim)))  # about 1 MiB feature chunks
    opts = {"fletcher32": True, "maxshape": None}
    with h5py.File(path, "w", libver="latest") as h5:
        h5.attrs["format"] = FORMAT
        h5.attrs["format_version"] = FORMAT_VERSION
        h5.attrs["feature_dim"] = int(dim)
        h5.attrs["provenance"] = json.dumps(provenance, sort_keys=True)
        h5.create_dataset("features", (0, dim), np.float32, chunks=(chunk_rows, dim),
                          fletcher32=True, maxshape=(None, dim))
        h5.create_dataset("digests", (0, 16), np.uint8, chunks=(4096, 16), fletcher32=True,
                          maxshape=(None, 16))
        h5.create_dataset("sources", (0, 2), np.int64, chunks=(4096, 2), fletcher32=True,
                          maxshape=(None, 2))
        for name, dt in (("labels", np.int8), ("group_index", np.int32)):
            h5.create_dataset(name, (0,), dt, chunks=(_BIG,), **{**opts, "maxshape": (None,)})
        for ends, blob, _, _ in RAGGED.values():
            big = ends == "key_ends"
            h5.create_dataset(ends, (0,), np.int64, chunks=(_BIG if big else 1024,),
                              fletcher32=True, maxshape=(None,))
            h5.create_dataset(blob, (0,), np.uint8, chunks=(_BIG * 4 if big else 4096,),
                              fletcher32=True, maxshape=(None,))
        h5.create_dataset("committed", (2, 16), np.int64, chunks=(1, 16), fletcher32=True,
                          data=np.zeros((2, 16), np.int64))


def _stray_temporaries(target: Path) -> list[Path]:
    return sorted(target.parent.glob(f".{target.name}.*.tmp"))


def remove_stray_temporaries(target: str | os.PathLike) -> list[Path]:
    """Delete the temporary files an interrupted writer of `target` left (call only while
    holding its lock); returns them."""
    found = _stray_temporaries(Path(target))
    for tmp in found:
        log.warning("removed %s, left by an interrupted run", tmp)
        tmp.unlink(missing_ok=True)
    return found


class StoreWriter(FeatureStore):
    """Appends rows to a store (created when missing) in place, one commit per call.

    Use as a context manager: rows of every completed `append` are kept even when the
    block raises (they are committed); a store that did not exist before the block is
    only put in place when the block ends normally.
    """

    def __init__(self, path: str | os.PathLike, dim: int, provenance: dict,
                 run_id: str = ""):
        target = Path(path)
        if target.is_dir():
            raise RaidError("is a folder, not a feature store (.h5 file)", target)
        self.target, self._tmp = target, None
        provenance = {**provenance, "feature_dim": int(dim), "raid_version": __version__}
        self._stack = ExitStack()
        try:
            self.holder = self._stack.enter_context(store_lock(target, run_id))
            remove_stray_temporaries(target)
            if target.exists() and target.stat().st_size > 0:
                path_open = target
                with FeatureStore(target) as old:  # a store at all? (one-line error if not)
                    version = old.version
                clear_write_flags(target)
                if version < FORMAT_VERSION:
                    path_open = self._upgrade(target, dim, provenance)
            else:
                path_open = self._temporary(target)
                _create(path_open, dim, provenance)
            super().__init__(path_open, mode="r+")
            self._h5.swmr_mode = True
        except BaseException:
            self._discard()
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
        self.key_index()  # kept up to date by `append`
        self._bufs: dict[str, np.ndarray] = {}

    # -- setup -----------------------------------------------------------------------------
    def _temporary(self, target: Path) -> Path:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        os.close(fd)
        self._tmp = Path(tmp)
        return self._tmp

    def _upgrade(self, target: Path, dim: int, provenance: dict) -> Path:
        """Copy a format-1 store into format 2 once (a temporary renamed over it)."""
        log.warning("%s: converting the store to format %d (once)", target, FORMAT_VERSION)
        tmp = self._temporary(target)
        with FeatureStore(target) as old:
            _create(tmp, dim, {**old.provenance})
            with _Raw(tmp) as w:
                for rows in old.iter_batches():
                    w.append(list(rows.keys), rows.features, rows.labels, list(rows.groups))
                fails = old.failures()
                if fails:
                    w.record_failures(list(fails), list(fails.values()))
        return tmp

    # -- writing ---------------------------------------------------------------------------
    def append(self, keys: Sequence[str], features: np.ndarray, labels: Sequence[int],
               groups: Sequence[str], digests: np.ndarray | None = None,
               sources: np.ndarray | None = None) -> int:
        """Append (and commit) rows whose key is not in the store yet; returns how many.
        `digests`: (n, 16) uint8 BLAKE2b-128 of each source file, `sources`: (n, 2) size
        and mtime_ns (zeros: unknown). Non-finite features are refused, naming the keys."""
        features = np.asarray(features, dtype=np.float32)
        n_in = len(keys)
        if features.ndim != 2 or features.shape != (n_in, self.dim):
            raise ValueError(f"features of shape {features.shape}, store has D={self.dim}")
        bad = ~np.isfinite(features).all(axis=1)
        if bad.any():
            names = [keys[i] for i in np.flatnonzero(bad)[:3]]
            raise RaidError(f"refusing non-finite features (NaN or inf) of {int(bad.sum())} "
                            f"row(s): {', '.join(names)}", self.target)
        keep, seen = [], set()
        for i, k in enumerate(keys):
            if k not in self._index and k not in seen:
                keep.append(i)
                seen.add(k)
        if not keep:
            return 0
        digests = np.zeros((n_in, 16), np.uint8) if digests is None else np.asarray(digests)
        sources = np.zeros((n_in, 2), np.int64) if sources is None else np.asarray(sources)
        c = dict(self._count)
        n0, n = c["rows"], len(keep)
        kept = [keys[i] for i in keep]
        ids = {g: self._group_id(g, c) for g in dict.fromkeys(groups[i] for i in keep)}
        gi = np.array([ids[groups[i]] for i in keep], dtype=np.int32)
        blob, ends = join_ragged(kept, c["key_bytes"])
        if (ends - np.concatenate([[c["key_bytes"]], ends[:-1]]) <= 0).any():
            raise RaidError("refusing an empty key", self.target)
        for name, values in (("features", features[keep]),
                             ("labels", np.asarray(labels, dtype=np.int8)[keep]),
                             ("group_index", gi), ("key_ends", ends),
                             ("digests", digests[keep].astype(np.uint8)),
                             ("sources", sources[keep].astype(np.int64))):
            self._put(name, n0, values)
        self._put("key_bytes", c["key_bytes"], blob)
        c["rows"], c["key_bytes"] = n0 + n, int(ends[-1])
        self._commit(c)
        self._blob()
        for name, values in (("_labels", np.asarray(labels, np.int8)[keep]), ("_gidx", gi),
                             ("_key_ends", ends), ("_key_blob", blob)):
            setattr(self, name, self._grow(name, values))
        for j, k in enumerate(kept):
            self._index[k] = n0 + j
        if self._keys is not None:
            self._keys.extend(kept)
        self.clear_failures(kept)
        return n

    def _grow(self, name: str, values: np.ndarray) -> np.ndarray:
        """The in-memory metadata `name` + `values`, amortised by doubling a buffer."""
        arr, buf = getattr(self, name), self._bufs.get(name)
        n, m = len(arr), len(values)
        if buf is None or len(buf) < n + m:
            buf = np.empty((max(2 * (n + m), 1024),) + arr.shape[1:], arr.dtype)
            buf[:n] = arr
            self._bufs[name] = buf
        buf[n:n + m] = values
        return buf[:n + m]

    def record_failures(self, keys: Sequence[str], reasons: Sequence[str]) -> None:
        current = self.failures()
        self._log_failures([(k, r) for k, r in zip(keys, reasons) if current.get(k) != r])

    def clear_failures(self, keys: Iterable[str]) -> None:
        current = self.failures()
        self._log_failures([(k, "") for k in dict.fromkeys(keys) if k in current])

    def add_root(self, root: str | os.PathLike, prefix: str = "") -> None:
        """Record an input folder (absolute) and the key prefix its rows were given."""
        entry = {"root": os.path.abspath(root), "prefix": prefix}
        if entry not in self._roots:
            c = dict(self._count)
            self._extend_ragged("roots", [json.dumps(entry, sort_keys=True)], c)
            self._commit(c)
            self._roots.append(entry)

    def _log_failures(self, entries: list[tuple[str, str]]) -> None:
        if entries:
            c = dict(self._count)
            self._extend_ragged("failures", [f"{k}\0{r}" for k, r in entries], c)
            self._commit(c)
            self._failure_log += [f"{k}\0{r}" for k, r in entries]

    def _group_id(self, name: str, c: dict) -> int:
        if name not in self._group_names:
            self._extend_ragged("groups", [name], c)
            self._group_names.append(name)
        return self._group_names.index(name)

    def _extend_ragged(self, name: str, items: list[str], c: dict) -> None:
        ends_name, bytes_name, n_field, b_field = RAGGED[name]
        blob, ends = join_ragged(items, c[b_field])
        self._put(ends_name, c[n_field], ends)
        self._put(bytes_name, c[b_field], blob)
        c[n_field] += len(items)
        c[b_field] = int(ends[-1])

    def _put(self, name: str, start: int, values: np.ndarray) -> None:
        ds = self._h5[name]
        stop = start + len(values)
        if ds.shape[0] < stop:
            ds.resize(stop, axis=0)
        if len(values):
            ds[start:stop] = values

    def _commit(self, counts: dict) -> None:
        """Make everything written so far count: data first, then the counts that say so."""
        counts["seq"] = self._count.get("seq", 0) + 1
        self._h5.flush()
        vec = np.zeros(16, np.int64)
        vec[:len(COUNTS)] = [counts[k] for k in COUNTS]
        self._h5["committed"][counts["seq"] % 2] = vec
        self._h5.flush()
        self._count = counts

    # -- lifetime --------------------------------------------------------------------------
    def commit(self) -> None:
        """Close; a new (or converted) store is renamed into place now."""
        if self._h5.id.valid:
            self._h5.flush()
        self.close()
        if self._tmp is not None:
            mask = os.umask(0)
            os.umask(mask)
            os.chmod(self._tmp, 0o666 & ~mask)
            with open(self._tmp, "rb+") as fh:  # whole on disk before it gets the name
                os.fsync(fh.fileno())
            os.replace(self._tmp, self.target)
            self._tmp = None
        self._stack.close()

    def abort(self) -> None:
        """Close; a store being created is discarded (committed rows of an existing store
        stay: they are complete)."""
        self.close()
        self._discard()

    def _discard(self) -> None:
        if self._tmp is not None:
            self._tmp.unlink(missing_ok=True)
        self._stack.close()

    def __exit__(self, exc_type, *exc) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()


class _Raw(StoreWriter):
    """A writer on a fresh temporary file, for the format conversion (no lock, no checks)."""

    def __init__(self, path: Path):
        self.target, self._tmp, self._stack = path, None, ExitStack()
        FeatureStore.__init__(self, path, mode="r+")
        self._h5.swmr_mode = True
        self._index, self._bufs = {}, {}

