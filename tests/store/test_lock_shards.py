"""One writer at a time, and shards that carry their run's provenance.

Before format 2 a second writer took the first one's live shards for a crashed run's
(616 of 1,200 rows lost, both runs exit 0), and a rerun with other settings merged an
interrupted run's shards under the new settings.
"""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from raid.primitives.errors import RaidError
from raid.store.lock import lock_paths, store_lock
from raid.store.store import FeatureStore, ShardWriter, StoreWriter, merge_shards

PROV = {"extractor": "test", "patch": {"seed": 0}}
HOLD = """
import sys, time
from raid.store.lock import store_lock
with store_lock(sys.argv[1], "other-run"):
    print("held", flush=True)
    time.sleep(60)
"""


def test_a_second_writer_meets_a_one_line_error_naming_the_holder(tmp_path):
    store = tmp_path / "s.h5"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(store)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RaidError) as info:
            StoreWriter(store, 4, PROV)
        msg = str(info.value)
        assert "being written by another run" in msg and f"pid {holder.pid}" in msg
        assert socket.gethostname() in msg and "\n" not in msg
        assert not store.exists()
    finally:
        holder.kill()
        holder.wait()
    # The holder died without cleaning up: its lock went with it, its holder file is stale.
    assert lock_paths(store)[1].exists()
    with StoreWriter(store, 4, PROV) as w:
        assert "took over the lock of a run that is gone" in w.holder["took_over"]
        assert f"pid {holder.pid}" in w.holder["took_over"]
        w.append(["a"], np.zeros((1, 4)), [0], ["g"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.h5"]


def test_a_live_holder_on_this_host_is_not_taken_over(tmp_path):
    """A holder file naming a live process (a filesystem where the OS lock does not reach)."""
    store = tmp_path / "s.h5"
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        lock_paths(store)[1].write_text(json.dumps(
            {"host": socket.gethostname(), "pid": live.pid, "run": "x", "since": 0}))
        with pytest.raises(RaidError, match=f"pid {live.pid}"):
            StoreWriter(store, 4, PROV)
        lock_paths(store)[1].write_text(json.dumps(
            {"host": "elsewhere", "pid": 1, "run": "x", "since": 0}))
        with pytest.raises(RaidError, match="another host .* if that run is gone, delete"):
            StoreWriter(store, 4, PROV)
    finally:
        live.kill()
        live.wait()


def test_the_lock_is_reentrant_within_a_process(tmp_path):
    store = tmp_path / "s.h5"
    with store_lock(store, "run"):
        with StoreWriter(store, 4, PROV) as w:  # the extraction holds it around its merge
            w.append(["a"], np.zeros((1, 4)), [0], ["g"])
        assert lock_paths(store)[0].exists()
    assert not lock_paths(store)[0].exists()


def _shard(parts, tag, keys, prov, seed=0):
    w = ShardWriter(parts, 4, tag, provenance=prov)
    rng = np.random.default_rng(seed)
    w.write(keys, rng.normal(size=(len(keys), 4)), [0] * len(keys), ["g"] * len(keys))
    w.close()


def test_shards_of_other_settings_are_set_aside_not_merged(tmp_path, caplog):
    store, parts = tmp_path / "s.h5", tmp_path / "s.h5.parts"
    _shard(parts, "run1-rank0000", ["a", "b"], PROV)
    _shard(parts, "run2-rank0000", ["c"], {"extractor": "test", "patch": {"seed": 1}})
    _shard(parts, "run3-rank0000", ["d"], None)  # records no settings
    result = merge_shards(store, parts, 4, PROV, "run4")
    assert result.added == 2
    assert sorted(p.name for p in result.set_aside) == [
        "run2-rank0000-00000.h5.set-aside", "run3-rank0000-00000.h5.set-aside"]
    assert all(p.exists() for p in result.set_aside)
    assert "patch.seed" in caplog.text and "records no settings" in caplog.text
    with FeatureStore(store) as fs:
        assert fs.keys() == ["a", "b"]


def test_non_finite_rows_of_a_shard_become_failures_by_key(tmp_path):
    store, parts = tmp_path / "s.h5", tmp_path / "s.h5.parts"
    w = ShardWriter(parts, 2, "r-rank0000", provenance=PROV)
    w.write(["ok", "nan"], np.array([[1, 2], [np.nan, 0]]), [0, 1], ["g", "g"])
    w.close()
    assert w.non_finite == ["nan"]
    merge_shards(store, parts, 2, PROV, "r")
    with FeatureStore(store) as fs:
        assert fs.keys() == ["ok"] and "non-finite" in fs.failures()["nan"]


def test_a_rerun_with_nothing_to_merge_does_not_open_the_store_for_writing(tmp_path):
    store = tmp_path / "s.h5"
    with StoreWriter(store, 4, PROV) as w:
        w.append(["a"], np.zeros((1, 4)), [0], ["g"])
    before = (store.stat().st_mtime_ns, store.read_bytes())
    merge_shards(store, tmp_path / "s.h5.parts", 4, PROV, "r")
    assert (store.stat().st_mtime_ns, store.read_bytes()) == before


def test_stray_temporaries_of_a_killed_run_are_removed_by_the_next_writer(tmp_path):
    store = tmp_path / "s.h5"
    stray = tmp_path / ".s.h5.abc123.tmp"
    stray.write_bytes(b"x" * 1000)
    other = tmp_path / ".other.h5.abc.tmp"  # another file's temporary: left alone
    other.write_bytes(b"y")
    with StoreWriter(store, 4, PROV) as w:
        w.append(["a"], np.zeros((1, 4)), [0], ["g"])
    assert not stray.exists() and other.exists()
    assert os.path.exists(store)
