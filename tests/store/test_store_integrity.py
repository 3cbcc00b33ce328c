"""Store format 2: checksums and invariants on open, format 1 still read, bounded reads.

The damage tests flip bytes inside a real store file and expect a one-line error naming
the store (never wrong numbers, never a traceback through the CLI). Format 1 made these
flips train on wrong labels or fail with IndexError / OSError / UnicodeDecodeError.
"""

import json
import time

import h5py
import numpy as np
import pytest

from raid.cli.main import main
from raid.primitives.errors import RaidError
from raid.store.store import FeatureStore, StoreWriter

PROV = {"extractor": "test"}


def make(path, n=300, d=8, seed=0):
    rng = np.random.default_rng(seed)
    keys = [f"g{i % 3}/{'0_real' if i % 2 else '1_fake'}/img{i:05d}.png" for i in range(n)]
    feats = rng.normal(size=(n, d)).astype(np.float32)
    labels = [1 - i % 2 for i in range(n)]
    groups = [f"g{i % 3}" for i in range(n)]
    with StoreWriter(path, d, PROV) as w:
        w.append(keys, feats, labels, groups)
        w.record_failures(["bad.jpg"], ["truncated"])
    return keys, feats, np.array(labels, np.int8)


def _offset(path, dataset, index=0):
    with h5py.File(path, "r") as h5:
        ds = h5[dataset]
        return ds.id.get_chunk_info(index).byte_offset


def _flip(path, offset):
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("dataset,where", [("labels", 5), ("key_bytes", 3), ("features", 40),
                                           ("group_index", 9), ("key_ends", 16)])
def test_a_flipped_byte_gives_a_one_line_error_naming_the_store(tmp_path, dataset, where,
                                                                 capsys):
    path = tmp_path / "s.h5"
    make(path)
    _flip(path, _offset(path, dataset) + where)
    with pytest.raises(RaidError) as info:
        with FeatureStore(path) as fs:
            fs.read()  # every row, features included
    msg = str(info.value)
    assert msg.startswith(f"{path}: damaged feature store") and "\n" not in msg
    assert main(["fit", str(path), "--out", str(tmp_path / "m.safetensors")]) == 2
    err = capsys.readouterr().err
    assert "damaged feature store" in err and "Traceback" not in err
    assert not (tmp_path / "m.safetensors").exists()


def test_invariants_are_checked_on_open(tmp_path):
    path = tmp_path / "s.h5"
    make(path)
    # A store whose commit record says more rows than the datasets hold (written with
    # h5py around RAID, checksums intact): refused, not read past the end.
    with h5py.File(path, "r+") as h5:
        rec = h5["committed"][:]
        slot = int(np.argmax(rec[:, 0]))
        rec[slot, 1] += 5
        h5["committed"][slot] = rec[slot]
    with pytest.raises(RaidError, match="damaged feature store: features holds 300 rows, 305"):
        FeatureStore(path)
    path2 = tmp_path / "t.h5"
    make(path2)
    with h5py.File(path2, "r+") as h5:
        h5["group_index"][7] = 99
    with pytest.raises(RaidError, match="group index is out of range"):
        FeatureStore(path2)


def test_keys_survive_any_bytes_and_duplicates_are_refused(tmp_path):
    path = tmp_path / "s.h5"
    odd = "caf\udce9/0_real/x.png"  # a Latin-1 file name, kept losslessly
    with StoreWriter(path, 2, PROV) as w:
        w.append([odd, "b.png"], np.ones((2, 2)), [0, 1], ["caf\udce9", "b"])
    with FeatureStore(path) as fs:
        assert fs.keys() == [odd, "b.png"] and fs.group_names() == ["b", "caf\udce9"]
    path = tmp_path / "t.h5"
    with StoreWriter(path, 2, PROV) as w:
        w.append(["a.png", "b.png"], np.ones((2, 2)), [0, 1], ["g", "g"])
    with h5py.File(path, "r+") as h5:  # "a.png" -> "b.png", checksums rewritten by HDF5
        h5["key_bytes"][0] = ord("b")
    with pytest.raises(RaidError, match="damaged feature store: duplicate keys"):
        with FeatureStore(path) as fs:
            fs.keys()


def test_non_finite_rows_are_refused_by_key(tmp_path):
    path = tmp_path / "s.h5"
    f = np.zeros((3, 4), np.float32)
    f[1, 2] = np.nan
    with pytest.raises(RaidError, match=r"non-finite features .* 1 row\(s\): b\.png"):
        with StoreWriter(path, 4, PROV) as w:
            w.append(["a.png", "b.png", "c.png"], f, [0, 0, 1], ["g"] * 3)
    assert not path.exists()


def test_a_format_1_store_is_read_and_converted_once_by_a_writer(tmp_path):
    path = tmp_path / "old.h5"
    s = h5py.string_dtype("utf-8")
    with h5py.File(path, "w") as h5:  # the layout RAID 0.1 wrote
        h5.attrs.update(format="raid-feature-store", format_version=1, feature_dim=3,
                        provenance=json.dumps({**PROV, "feature_dim": 3}))
        h5["features"] = np.arange(6, dtype=np.float32).reshape(2, 3)
        h5["labels"] = np.array([0, 1], np.int8)
        h5["group_index"] = np.array([0, 0], np.int32)
        h5.create_dataset("keys", data=np.array(["a.png", "b.png"], object), dtype=s)
        h5.create_dataset("group_names", data=np.array(["g"], object), dtype=s)
        h5.create_dataset("failures/keys", data=np.array(["x.jpg"], object), dtype=s)
        h5.create_dataset("failures/reasons", data=np.array(["empty"], object), dtype=s)
    with FeatureStore(path) as fs:
        assert fs.version == 1 and fs.keys() == ["a.png", "b.png"]
        np.testing.assert_array_equal(fs.read().features[1], [3, 4, 5])
    with StoreWriter(path, 3, PROV) as w:
        w.append(["c.png"], np.ones((1, 3)), [1], ["g"])
    with FeatureStore(path) as fs:
        assert fs.version == 2 and fs.keys() == ["a.png", "b.png", "c.png"]
        assert fs.failures() == {"x.jpg": "empty"}
        np.testing.assert_array_equal(fs.read().features[1], [3, 4, 5])


def test_iter_batches_reads_row_metadata_once(tmp_path):
    """Format 1 re-read every key, label and group per batch: quadratic in the rows."""
    path = tmp_path / "s.h5"
    n = 40000
    with StoreWriter(path, 2, PROV) as w:
        w.append([f"k{i}" for i in range(n)], np.zeros((n, 2)), [0] * n, ["g"] * n)
    with FeatureStore(path) as fs:
        calls = []
        ds = fs._h5["labels"]
        orig = type(ds).__getitem__

        def counting(self, sel):
            calls.append(self.name)
            return orig(self, sel)

        type(ds).__getitem__ = counting
        try:
            batches = list(fs.iter_batches(batch_size=1000))
        finally:
            type(ds).__getitem__ = orig
        meta = [c for c in calls if c in ("/labels", "/group_index", "/key_ends", "/key_bytes")]
        assert len(batches) == 40 and sum(len(b) for b in batches) == n
        assert len(meta) <= 1  # key bytes once at most; labels and groups were read at open
        assert [c for c in calls if c == "/features"] == ["/features"] * 40
        assert batches[-1].keys[-1] == f"k{n - 1}"


def test_an_appending_run_costs_what_it_adds(tmp_path):
    path = tmp_path / "s.h5"
    n = 200000
    with StoreWriter(path, 16, PROV) as w:
        w.append([f"k{i}" for i in range(n)], np.zeros((n, 16)), [0] * n, ["g"] * n)
    inode = path.stat().st_ino
    size = path.stat().st_size
    with StoreWriter(path, 16, PROV) as w:
        w.append(["new"], np.ones((1, 16)), [1], ["g"])
    assert path.stat().st_ino == inode  # in place: no copy renamed over the store
    assert path.stat().st_size < size + (1 << 20)
    with FeatureStore(path) as fs:
        assert len(fs) == n + 1 and fs.keys()[-1] == "new"
