import json

import h5py
import numpy as np
import pytest

from raid.primitives.errors import RaidError
from raid.store.store import FeatureStore, StoreWriter

PROV = {"extractor": "test", "patch": {"seed": 0, "size": 224}}


def _files(folder):
    return sorted(p.name for p in folder.iterdir())


def _rows(n, d=8, start=0, group="g"):
    rng = np.random.default_rng(start)
    keys = [f"{group}/{i}.png" for i in range(start, start + n)]
    return keys, rng.normal(size=(n, d)).astype(np.float32), [i % 2 for i in range(n)], [group] * n


def test_append_read_roundtrip_by_group_and_label(tmp_path):
    path = tmp_path / "s.h5"
    ka, fa, la, ga = _rows(10, group="a")
    kb, fb, lb, gb = _rows(7, start=100, group="b")
    with StoreWriter(path, 8, PROV) as w:
        assert w.append(ka, fa, la, ga) == 10
        assert w.append(kb, fb, lb, gb) == 7
    with FeatureStore(path) as s:
        assert len(s) == 17 and s.dim == 8
        assert s.group_names() == ["a", "b"]
        assert s.provenance["patch"] == {"seed": 0, "size": 224}
        assert s.counts() == {"a": {0: 5, 1: 5}, "b": {0: 4, 1: 3}}
        r = s.read(groups=["b"], labels=[1])
        mask = np.array(lb) == 1
        np.testing.assert_array_equal(r.features, fb[mask])
        assert list(r.keys) == [k for k, m in zip(kb, mask) if m]
        assert set(r.groups) == {"b"}
        # arbitrary, unsorted indices come back in the asked order
        r2 = s.read(indices=np.array([16, 0, 3]))
        np.testing.assert_array_equal(r2.features, np.stack([fb[6], fa[0], fa[3]]))
        with pytest.raises(RaidError, match="no group 'c'"):
            s.select(groups=["c"])


def test_duplicate_keys_are_added_once(tmp_path):
    path = tmp_path / "s.h5"
    k, f, l, g = _rows(5)
    with StoreWriter(path, 8, PROV) as w:
        w.append(k, f, l, g)
    with StoreWriter(path, 8, PROV) as w:
        assert w.append(k + ["new.png"], np.vstack([f, f[:1]]), l + [0], g + ["g"]) == 1
    with FeatureStore(path) as s:
        assert len(s) == 6 and len(set(s.keys())) == 6


def test_different_provenance_is_refused_naming_the_difference(tmp_path):
    path = tmp_path / "s.h5"
    with StoreWriter(path, 8, PROV) as w:
        w.append(*_rows(3))
    before = path.read_bytes()
    other = {"extractor": "test", "patch": {"seed": 1, "size": 224}}
    with pytest.raises(RaidError, match=r"patch\.seed: store has 0, new rows have 1"):
        StoreWriter(path, 8, other)
    with pytest.raises(RaidError, match="feature size differs"):
        StoreWriter(path, 9, PROV)
    assert path.read_bytes() == before
    assert _files(tmp_path) == ["s.h5"]  # no temporary left behind


def test_a_failure_keeps_committed_rows_and_a_new_store_is_not_left_half_made(tmp_path):
    path = tmp_path / "s.h5"
    with pytest.raises(ZeroDivisionError):
        with StoreWriter(path, 8, PROV) as w:
            w.append(*_rows(3))
            1 / 0
    assert _files(tmp_path) == []  # a store being created appears whole or not at all
    with StoreWriter(path, 8, PROV) as w:
        w.append(*_rows(3))
    with pytest.raises(ZeroDivisionError):
        with StoreWriter(path, 8, PROV) as w:
            w.append(*_rows(4, start=50))
            1 / 0
    with FeatureStore(path) as s:  # appends are committed one by one, in place
        assert len(s) == 7
    assert _files(tmp_path) == ["s.h5"]


def test_failures_are_recorded_and_cleared_when_the_file_succeeds(tmp_path):
    path = tmp_path / "s.h5"
    with StoreWriter(path, 8, PROV) as w:
        w.record_failures(["bad.jpg", "x.png"], ["truncated image", "empty file"])
    with FeatureStore(path) as s:
        assert s.failures() == {"bad.jpg": "truncated image", "x.png": "empty file"}
        assert len(s) == 0
    with StoreWriter(path, 8, PROV) as w:
        w.append(["x.png"], np.zeros((1, 8), np.float32), [0], ["g"])
    with FeatureStore(path) as s:
        assert s.failures() == {"bad.jpg": "truncated image"}


@pytest.mark.parametrize("content", [b"", b"not hdf5 at all", None])
def test_bad_store_files_give_one_line_errors(tmp_path, content):
    path = tmp_path / "s.h5"
    if content is None:  # a valid HDF5 file that is not a store
        with h5py.File(path, "w") as h5:
            h5["x"] = np.zeros(3)
    else:
        path.write_bytes(content)
    with pytest.raises(RaidError) as info:
        FeatureStore(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(RaidError, match="no such feature store"):
        FeatureStore(tmp_path / "missing.h5")


def test_provenance_is_plain_json(tmp_path):
    path = tmp_path / "s.h5"
    with StoreWriter(path, 8, PROV) as w:
        w.append(*_rows(2))
    with h5py.File(path) as h5:
        prov = json.loads(h5.attrs["provenance"])
    assert prov["extractor"] == "test" and prov["feature_dim"] == 8 and "raid_version" in prov
