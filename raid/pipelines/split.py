"""Split a feature store into a training store and a held-out test store.

Rows are split in units that never cross sides:
- `pair`: a photo and everything made from it. A row's photo is its key without the
  label folders (`0_real`, `1_fake`) and without the file suffix; a generated row (label 1)
  whose key starts with its group loses that prefix too, so `sub/a.jpg` (real) and
  `V/sub/a.png` (reconstructed by autoencoder V) are photo `sub/a`, and the seed's
  `0_real/x.npy` and `1_fake/x.npy` are photo `x`.
- `key`: every row on its own.
- `group`: whole groups (e.g. autoencoders or generators).

Units are stratified by the set of labels they hold, so both sides keep both classes where
the store allows, and shuffled by a seeded generator after sorting by name: the split
depends on the seed and the rows, not on the store's row order. Both outputs carry the
input's provenance unchanged (a model fitted on one side scores the other) and its recorded
failures; they appear together or not at all.
"""

from __future__ import annotations

import math
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Sequence

import numpy as np

from raid.primitives.errors import RaidError
from raid.primitives.keys import REAL_GROUP
from raid.primitives.layout import FAKE, LABEL_DIRS

BY = ("pair", "key", "group")
LABEL_NAMES = {0: "real", 1: "generated", -1: "unknown"}
_BATCH = 16384


def photo_of(key: str, group: str, label: int) -> str:
    """The photo a row comes from (see the module docstring)."""
    parts = list(PurePosixPath(key).parts)
    if label == FAKE and group != REAL_GROUP and len(parts) > 1 and parts[0] == group:
        parts = parts[1:]
    parts = [p for p in parts[:-1] if p not in LABEL_DIRS] + [parts[-1]]
    return str(PurePosixPath(*parts).with_suffix(""))


def units_of(keys: Sequence[str], groups: Sequence[str], labels: Sequence[int],
             by: str) -> list[str]:
    """The unit (what stays on one side) of each row."""
    if by == "pair":
        return [photo_of(k, g, int(l)) for k, g, l in zip(keys, groups, labels)]
    if by == "key":
        return [str(k) for k in keys]
    if by == "group":
        return [str(g) for g in groups]
    raise RaidError(f"split by must be one of {', '.join(BY)}, not {by!r}")


def _round(x: float) -> int:
    return int(math.floor(x + 0.5))


def plan_split(keys: Sequence[str], groups: Sequence[str], labels: Sequence[int],
               test: float, by: str = "pair", seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Row indices (sorted) of the training side and of the test side."""
    check_fraction(test)
    units = units_of(keys, groups, labels, by)
    label_sets: dict[str, set[int]] = {}
    for u, l in zip(units, labels):
        label_sets.setdefault(u, set()).add(int(l))
    if len(label_sets) < 2:
        what = {"pair": "photo", "key": "row", "group": "group"}[by]
        raise RaidError(f"cannot split: the store holds a single {what} "
                        f"(split by {by} needs at least two)")
    strata: dict[tuple[int, ...], list[str]] = {}
    for u in sorted(label_sets):
        strata.setdefault(tuple(sorted(label_sets[u])), []).append(u)
    rng = np.random.default_rng(seed)
    test_units: list[str] = []
    train_units: list[str] = []
    for signature in sorted(strata):
        members = strata[signature]
        order = [members[i] for i in rng.permutation(len(members))]
        n = len(order)
        k = min(max(_round(test * n), 1), n - 1) if n >= 2 else 0  # a lone unit trains
        test_units += order[:k]
        train_units += order[k:]
    if not test_units or not train_units:  # only single-unit strata: move one unit over
        src, dst = (train_units, test_units) if not test_units else (test_units, train_units)
        dst.append(src.pop(int(rng.integers(len(src)))))
    chosen = set(test_units)
    is_test = np.fromiter((u in chosen for u in units), dtype=bool, count=len(units))
    return np.flatnonzero(~is_test), np.flatnonzero(is_test)


def check_fraction(test: float) -> None:
    if not (isinstance(test, (int, float)) and 0 < test < 1):
        raise RaidError(f"the test fraction must be between 0 and 1 (exclusive), not {test!r}")


def default_outputs(store: str | os.PathLike) -> tuple[Path, Path]:
    """STORE-train.h5 and STORE-test.h5 beside the input."""
    store = Path(store)
    suffix = store.suffix or ".h5"
    return (store.with_name(f"{store.stem}-train{suffix}"),
            store.with_name(f"{store.stem}-test{suffix}"))


def _same(a: Path, b: Path) -> bool:
    if a.exists() and b.exists():
        return os.path.samefile(a, b)
    return a.resolve() == b.resolve()


def check_outputs(store: Path, train: Path, test: Path, overwrite: bool) -> None:
    """Refuse outputs that are the input, each other, folders, or existing files."""
    for out in (train, test):
        if _same(out, store):
            raise RaidError("output is the input store; name another file", out)
        if out.is_dir():
            raise RaidError("is a folder, not a feature store (.h5 file)", out)
    if _same(train, test):
        raise RaidError("the training and test outputs are the same file", train)
    for out in (train, test):
        if out.exists() and not overwrite:
            raise RaidError("exists (give --overwrite to replace it)", out)


@dataclass
class SplitSummary:
    store: Path
    train: Path
    test: Path
    by: str
    seed: int
    fraction: float
    counts: dict[str, dict[str, dict[int, int]]]  # side -> group -> label -> rows
    units: dict[str, int]  # side -> units
    failures: int = 0
    warnings: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        unit = {"pair": "photos", "key": "rows", "group": "groups"}[self.by]
        out = [f"split {self.store} by {self.by} (seed {self.seed}, test {self.fraction:g}):"]
        for side, path in (("train", self.train), ("test", self.test)):
            c = self.counts[side]
            rows = sum(n for by_label in c.values() for n in by_label.values())
            out.append(f"  {side:<5} {rows} rows, {self.units[side]} {unit} -> {path}")
            for group, by_label in c.items():
                out.append(f"    {group}: " + ", ".join(
                    f"{LABEL_NAMES[l]} {n}" for l, n in sorted(by_label.items())))
        if self.failures:
            out.append(f"  {self.failures} recorded failure(s) copied to both outputs")
        return out


def _counts(groups: np.ndarray, labels: np.ndarray) -> dict[str, dict[int, int]]:
    out: dict[str, dict[int, int]] = {}
    for g, l in zip(groups, labels):
        by_label = out.setdefault(str(g), {})
        by_label[int(l)] = by_label.get(int(l), 0) + 1
    return dict(sorted(out.items()))


def _groups_and_labels(fs) -> tuple[np.ndarray, np.ndarray]:
    """Every row's group and label, from the store's index (features are not read)."""
    groups = np.empty(len(fs), dtype=object)
    labels = np.full(len(fs), -1, dtype=np.int8)
    for g in fs.group_names():
        groups[fs.select(groups=[g])] = g
    for label in (0, 1):
        labels[fs.select(labels=[label])] = label
    return groups, labels


def _publish(tmps: list[Path], targets: list[Path]) -> None:
    """Rename both finished stores into place; if the second rename fails, the first
    output is removed again, so both appear or neither."""
    done: list[Path] = []
    try:
        for tmp, target in zip(tmps, targets):
            os.chmod(tmp, 0o666 & ~_umask())
            os.replace(tmp, target)
            done.append(target)
    except OSError as exc:
        for target in done:
            target.unlink(missing_ok=True)
        raise RaidError(f"cannot write: {exc.strerror or exc}", target) from None


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _write(fs, path: Path, indices: np.ndarray, failures: dict[str, str]) -> None:
    from raid.store.store import StoreWriter

    with StoreWriter(path, fs.dim, fs.provenance) as w:
        if failures:
            w.record_failures(list(failures), list(failures.values()))
        for start in range(0, len(indices), _BATCH):
            rows = fs.read(indices=indices[start:start + _BATCH])
            w.append(list(rows.keys), rows.features, rows.labels, list(rows.groups))


def _temp_beside(target: Path) -> Path:
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".split.tmp",
                                   dir=target.parent)
    except OSError as exc:
        raise RaidError(f"cannot write: {exc.strerror or exc}", target) from None
    os.close(fd)
    return Path(tmp)


def split_store(store: str | os.PathLike, test: float = 0.2, by: str = "pair", seed: int = 0,
                out_train: str | os.PathLike | None = None,
                out_test: str | os.PathLike | None = None,
                overwrite: bool = False) -> SplitSummary:
    """Write the training and test stores of `store` (see the module docstring)."""
    from raid.store.store import FeatureStore

    check_fraction(test)
    if by not in BY:
        raise RaidError(f"split by must be one of {', '.join(BY)}, not {by!r}")
    store = Path(store)
    default_train, default_test = default_outputs(store)
    train_path = Path(out_train) if out_train is not None else default_train
    test_path = Path(out_test) if out_test is not None else default_test
    check_outputs(store, train_path, test_path, overwrite)
    with FeatureStore(store) as fs:
        if len(fs) == 0:
            raise RaidError("the store has no rows to split", store)
        keys = fs.keys()
        groups, labels = _groups_and_labels(fs)
        train_idx, test_idx = plan_split(keys, groups, labels, test, by, seed)
        failures = fs.failures()
        tmps: list[Path] = []
        try:
            for idx, target in ((train_idx, train_path), (test_idx, test_path)):
                tmps.append(_temp_beside(target))
                _write(fs, tmps[-1], idx, failures)
            _publish(tmps, [train_path, test_path])
        finally:
            for tmp in tmps:
                tmp.unlink(missing_ok=True)
    units = units_of(keys, groups, labels, by)
    summary = SplitSummary(
        store=store, train=train_path, test=test_path, by=by, seed=seed, fraction=test,
        counts={"train": _counts(groups[train_idx], labels[train_idx]),
                "test": _counts(groups[test_idx], labels[test_idx])},
        units={"train": len({units[i] for i in train_idx}),
               "test": len({units[i] for i in test_idx})},
        failures=len(failures))
    present = {int(l) for l in labels if l in (0, 1)}
    for side, idx in (("train", train_idx), ("test", test_idx)):
        for missing in sorted(present - {int(l) for l in labels[idx]}):
            summary.warnings.append(f"the {side} side has no {LABEL_NAMES[missing]} rows "
                                    f"(split by {by} cannot keep both classes on both sides)")
    return summary
