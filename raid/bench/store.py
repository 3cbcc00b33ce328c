"""`raid bench store`: the feature store at scale (default 1 M rows x 64 features).

Each phase runs in a fresh Python process (spawned, so its peak memory is its own) on a
store in a temporary folder, and reports its time, time per million rows, and the peak
resident memory of its process (`resource.getrusage`; tracemalloc is left off because it
slows allocation-heavy code several times over):
  append       build the store from batches of 65,536 rows (what merging shards does)
  append-1%    a second run adding 1 % more rows in place (a run costs what it adds)
  no-op rerun  what a rerun with nothing to do costs: the shard merge (nothing to merge),
               opening the store, its keys against a listing of every key
  read-group   one group of four, features included (what `fit` reads)
  evaluate     every row streamed in batches, scored, labels/groups/keys kept (what
               `raid evaluate` does around the SVM; the SVM's own cost is not included)
  raid evaluate  the real command's function with an RBF SVM fitted on 2,000 rows: every
               row scored, metrics (torchmetrics), report and ROC plot (goal: 1 M rows in
               under 10 s and 1 GB)
  export       `raid export-npy` of the first --export-rows rows and of half as many
               (one file per row: linear in rows)
"""

from __future__ import annotations

import argparse
import multiprocessing
import tempfile
import time
from pathlib import Path

HELP = "feature store at 1 M rows: append, no-op rerun, read by group, evaluate, export"
PROV = {"extractor": "bench-store"}
GROUPS = ("g0", "g1", "g2", "g3")
BATCH = 65536


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--rows", type=int, default=1_000_000, help="rows in the store")
    p.add_argument("--dim", type=int, default=64, help="features per row")
    p.add_argument("--export-rows", type=int, default=20000,
                   help="rows exported (and half as many, to show it is linear)")
    p.add_argument("--dir", default=None, help="work folder (default: a temporary one)")


def _keys(start: int, stop: int) -> list[str]:
    return [f"{GROUPS[i % 4]}/{'0_real' if i % 2 else '1_fake'}/img{i:08d}.png"
            for i in range(start, stop)]


def _append(path: Path, start: int, stop: int, dim: int) -> None:
    import numpy as np

    from raid.store.store import StoreWriter

    rng = np.random.default_rng(start)
    with StoreWriter(path, dim, PROV) as w:
        for a in range(start, stop, BATCH):
            b = min(a + BATCH, stop)
            w.append(_keys(a, b), rng.normal(size=(b - a, dim)).astype(np.float32),
                     [1 - i % 2 for i in range(a, b)], [GROUPS[i % 4] for i in range(a, b)])


def _noop(path: Path, n: int, dim: int) -> None:
    from raid.store.store import FeatureStore, merge_shards, provenance_differences

    merge_shards(path, path.with_name(path.name + ".parts"), dim, PROV)
    listing = _keys(0, n)
    with FeatureStore(path) as fs:
        assert not provenance_differences(fs.provenance, {**PROV, "feature_dim": dim})
        present = set(fs.keys())
    missing = [k for k in listing if k not in present]
    assert not missing


def _read_group(path: Path) -> None:  # every 4th row: the worst case for slicing
    from raid.store.store import FeatureStore

    with FeatureStore(path) as fs:
        rows = fs.read(groups=["g1"])
    assert len(rows)


def _evaluate(path: Path, dim: int) -> None:
    import numpy as np

    from raid.store.store import FeatureStore

    w = np.random.default_rng(0).normal(size=dim).astype(np.float32)
    probs, labels, groups, keys = [], [], [], []
    with FeatureStore(path) as fs:
        for rows in fs.iter_batches(BATCH):
            probs.append(1 / (1 + np.exp(-(rows.features @ w))))
            labels.append(rows.labels)
            groups.append(rows.groups)
            keys.append(rows.keys)
    assert sum(len(p) for p in probs) == len(np.concatenate(labels))


def _evaluate_command(path: Path, dim: int, out: Path) -> float:
    """The real `raid evaluate`: an RBF SVM fitted on 2,000 rows scores every row, then
    metrics, report and plot; only the command itself is timed."""
    import numpy as np

    from raid.pipelines.evaluate import evaluate_store
    from raid.store.store import FeatureStore
    from raid.svm.detector import RaidDetector

    with FeatureStore(path) as fs:
        rows = fs.read(indices=np.arange(2000))
    model = out.with_suffix(".safetensors")
    RaidDetector(progress=False).fit(rows.features, rows.labels).save(
        model, provenance={**PROV, "feature_dim": dim})
    t = time.perf_counter()
    evaluate_store(model, path, out)
    return time.perf_counter() - t


def _export(path: Path, rows: int, out: Path) -> None:
    from raid.store.npyio import export_npy
    from raid.store.store import FeatureStore, StoreWriter

    small = out.with_suffix(".h5")
    with FeatureStore(path) as fs, StoreWriter(small, fs.dim, PROV) as w:
        r = fs.read(indices=__import__("numpy").arange(rows))
        w.append(list(r.keys), r.features, r.labels, list(r.groups))
    t = time.perf_counter()
    export_npy(small, out)
    return time.perf_counter() - t


def _phase(conn, name: str, args: tuple) -> None:
    import logging
    import resource

    import raid.store.npyio  # noqa: F401  imports are not what is timed
    import raid.store.store  # noqa: F401

    logging.disable(logging.WARNING)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    t = time.perf_counter()
    try:
        extra = PHASES[name](*args)
    except BaseException as exc:  # the parent waits for an answer: send the failure
        conn.send(f"{name}: {type(exc).__name__}: {exc}")
        raise
    seconds = time.perf_counter() - t if extra is None else extra
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    conn.send((seconds, base, rss))


PHASES = {"append": _append, "noop": _noop, "read-group": _read_group,
          "evaluate": _evaluate, "evaluate-cmd": _evaluate_command, "export": _export}


def _run_phase(name: str, *args) -> tuple[float, int, int]:
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_phase, args=(child, name, args))
    proc.start()
    result = parent.recv()
    proc.join()
    if isinstance(result, str):
        from raid.primitives.errors import RaidError

        raise RaidError(f"bench phase failed: {result}")
    return result


def run(args: argparse.Namespace) -> int:
    from raid.primitives.errors import RaidError

    if args.rows < 1000 or args.dim < 1 or args.export_rows < 2:
        raise RaidError("--rows must be at least 1000, --dim and --export-rows at least 1")
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        folder = Path(tmp)
        store, n, d = folder / "bench.h5", args.rows, args.dim
        extra = max(1, n // 100)
        e = min(args.export_rows, n)
        results = [
            ("append", n, _run_phase("append", store, 0, n, d)),
            ("append-1%", extra, _run_phase("append", store, n, n + extra, d)),
            ("no-op rerun", n + extra, _run_phase("noop", store, n + extra, d)),
            ("read-group", (n + extra) // 4, _run_phase("read-group", store)),
            ("evaluate", n + extra, _run_phase("evaluate", store, d)),
            ("raid evaluate", n + extra, _run_phase("evaluate-cmd", store, d, folder / "rep")),
            ("export", e, _run_phase("export", store, e, folder / "out")),
            ("export/2", e // 2, _run_phase("export", store, e // 2, folder / "out2")),
        ]
        size = store.stat().st_size
    print(f"feature store: {n + extra:,} rows x {d} float32 ({size / 2**20:.0f} MiB on disk)")
    print(f"{'phase':<12} {'rows':>10} {'seconds':>9} {'s / M rows':>11} "
          f"{'peak RSS':>10} {'(imports)':>10}")
    for name, rows, (sec, base, rss) in results:
        print(f"{name:<12} {rows:>10,} {sec:>9.2f} {sec / rows * 1e6:>11.2f} "
              f"{rss / 2**20:>6.0f} MiB {base / 2**20:>6.0f} MiB")
    return 0
