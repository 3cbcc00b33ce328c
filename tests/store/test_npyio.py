import os
from pathlib import Path

import numpy as np
import pytest

from raid.cli.main import main
from raid.primitives.errors import RaidError
from raid.store.npyio import export_npy, import_npy, read_npy_tree
from raid.store.store import FeatureStore


def _write(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, array)


@pytest.mark.slow
def test_import_shared_training_features_then_export_them_unchanged(seed_features, tmp_path):
    src = seed_features / "train"
    store = tmp_path / "train.h5"
    s = import_npy(src, store)
    assert s.added == 12000 and s.skipped == []
    assert import_npy(src, store).added == 0  # the same folder twice adds nothing twice
    with FeatureStore(store) as fs:
        assert fs.counts() == {"train": {0: 6000, 1: 6000}}
        assert fs.dim == 3072
    out = tmp_path / "out"
    assert export_npy(store, out) == 12000
    for name in sorted(p.name for p in (src / "1_fake").iterdir())[:5]:
        a, b = np.load(out / "1_fake" / name), np.load(src / "1_fake" / name)
        assert a.shape == b.shape == (1, 3072) and a.dtype == np.float32
        np.testing.assert_array_equal(a, b)


def test_benchmark_layout_labels_groups_and_bad_arrays(tmp_path):
    src = tmp_path / "test"
    rng = np.random.default_rng(0)
    v = lambda: rng.normal(size=(1, 6)).astype(np.float32)  # noqa: E731
    _write(src / "progan/car/0_real/a.npy", v())
    _write(src / "progan/car/1_fake/a.npy", v())
    _write(src / "ADM/0_real/b.npy", v().reshape(6))
    _write(src / "ADM/1_fake/b.npy", v())
    _write(src / "ADM/1_fake/wrong_dim.npy", rng.normal(size=(1, 5)).astype(np.float32))
    _write(src / "ADM/1_fake/matrix.npy", rng.normal(size=(2, 6)).astype(np.float32))
    _write(src / "ADM/1_fake/ints.npy", np.arange(6))
    (src / "ADM/1_fake/garbage.npy").write_bytes(b"nope")
    (src / "ADM/readme.txt").write_text("x")
    tree = read_npy_tree(src)
    assert tree.keys == ["ADM/0_real/b.npy", "ADM/1_fake/b.npy",
                         "progan/car/0_real/a.npy", "progan/car/1_fake/a.npy"]
    assert list(tree.labels) == [0, 1, 0, 1]
    assert tree.groups == ["ADM", "ADM", "progan", "progan"]
    assert {k for k, _ in tree.skipped} == {"ADM/1_fake/wrong_dim.npy", "ADM/1_fake/matrix.npy",
                                           "ADM/1_fake/ints.npy", "ADM/1_fake/garbage.npy"}
    assert tree.other_files == 1
    assert read_npy_tree(src, group="mine").groups == ["mine"] * 4


def test_export_never_collides_for_images_with_same_stem(tmp_path):
    from raid.store.store import StoreWriter
    store = tmp_path / "s.h5"
    with StoreWriter(store, 4, {"extractor": "x"}) as w:
        w.append(["sub/a.jpg", "sub/a.png", "a.jpg"], np.eye(3, 4, dtype=np.float32),
                 [0, 0, 1], ["g"] * 3)
    export_npy(store, tmp_path / "out")
    got = sorted(p.relative_to(tmp_path / "out").as_posix()
                 for p in (tmp_path / "out").rglob("*.npy"))
    assert got == ["a.jpg.npy", "sub/a.jpg.npy", "sub/a.png.npy"]
    np.testing.assert_array_equal(np.load(tmp_path / "out/sub/a.png.npy"), [[0, 1, 0, 0]])


def test_cli_errors_are_one_line(tmp_path, capsys):
    assert main(["import-npy", str(tmp_path / "nope"), "--out", str(tmp_path / "s.h5")]) == 2
    err = capsys.readouterr().err
    assert "no such folder" in err and err.count("\n") == 1
    assert not (tmp_path / "s.h5").exists()
    (tmp_path / "empty").mkdir()
    assert main(["import-npy", str(tmp_path / "empty"), "--out", str(tmp_path / "s.h5")]) == 2
    assert not (tmp_path / "s.h5").exists()
    with pytest.raises(RaidError):
        export_npy(tmp_path / "missing.h5", tmp_path / "o")


# ------------------------------------------------------------ export stays inside OUT

def _store(path, keys):
    from raid.store.store import StoreWriter
    with StoreWriter(path, 3, {"extractor": "x"}) as w:
        w.append(keys, np.arange(3 * len(keys), dtype=np.float32).reshape(-1, 3),
                 [0] * len(keys), ["g"] * len(keys))
    return path


def _files(folder):
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")) \
        if folder.exists() else []


def test_export_refuses_a_key_leading_out_of_out(tmp_path, capsys):
    victim = tmp_path / "x" / "victim.npy"
    victim.parent.mkdir()
    np.save(victim, np.ones(2))
    before = victim.read_bytes()
    out = tmp_path / "a" / "out"
    store = _store(tmp_path / "s.h5", ["ok/first.npy", "../../x/victim.npy", "z.npy"])
    assert main(["export-npy", str(store), str(out)]) == 2
    err = capsys.readouterr().err
    assert "key '../../x/victim.npy' contains a '..' component; nothing was written" in err
    assert err.count("\n") == 1
    assert victim.read_bytes() == before and _files(tmp_path / "a") == []


@pytest.mark.parametrize("key, reason", [
    ("{tmp}/abs_victim.npy", "is an absolute path"),
    ("C:/Windows/x.npy", "starts with a drive letter"),
    ("C:x.npy", "starts with a drive letter"),
    ("a\\..\\..\\x.npy", "contains a backslash"),
    ("a\x1b[2Jb.npy", "contains a control character"),
    ("./.", "names no file"),
])
def test_export_refuses_unsafe_keys_by_name(tmp_path, capsys, key, reason):
    key = key.format(tmp=tmp_path)
    out = tmp_path / "out"
    assert main(["export-npy", str(_store(tmp_path / "s.h5", ["fine.npy", key])), str(out)]) == 2
    err = capsys.readouterr().err
    from raid.primitives.keys import display_key
    assert f"key '{display_key(key)}' {reason}; nothing was written" in err
    assert err.count("\n") == 1 and "\x1b" not in err
    assert _files(out) == [] and not (tmp_path / "abs_victim.npy").exists()


def test_export_refuses_nul_in_keys():
    from raid.store.npyio import plan_export
    with pytest.raises(RaidError) as err:
        plan_export(Path("out"), ["fine.npy", "a\0b.npy"])
    assert str(err.value) == "key 'a\\x00b.npy' contains a NUL character; nothing was written"


def test_export_normalises_keys_and_detects_clashes_before_writing(tmp_path, capsys):
    out = tmp_path / "out"
    # A key that is another key's folder: before, FileExistsError and a partial export.
    store = _store(tmp_path / "s.h5", ["0.npy", "a.npy", "a.npy/b.npy", "z.npy"])
    assert main(["export-npy", str(store), str(out)]) == 2
    err = capsys.readouterr().err
    assert "key 'a.npy' is a file where key 'a.npy/b.npy' needs a folder" in err
    assert err.count("\n") == 1 and _files(out) == []
    from raid.store.npyio import export_path, plan_export
    assert [export_path(out, k) for k in ["a//./b.npy", "c"]] == [out / "a/b.npy",
                                                                 out / "c.npy"]
    with pytest.raises(RaidError, match="name one file"):
        plan_export(out, ["a/b.npy", "a//b.npy"])
    # Names sorting between a file and the paths inside it do not hide the clash.
    with pytest.raises(RaidError, match="'f.npy' is a file where key 'f.npy/b/c' needs"):
        plan_export(out, ["f.npy/b/c", "f.npy-x", "f.npy.", "f.npy", "f.npy0"])
    plan_export(out, ["f.npy-x/a", "f.npy", "f.npyx/b", "g/f.npy"])  # no clash


def test_export_refuses_what_exists_under_out_before_writing(tmp_path, capsys):
    outside = tmp_path / "outside"
    outside.mkdir()
    out = tmp_path / "out"
    out.mkdir()
    (out / "sub").symlink_to(outside, target_is_directory=True)
    store = _store(tmp_path / "s.h5", ["a.npy", "sub/x.npy"])
    assert main(["export-npy", str(store), str(out)]) == 2
    assert "is a link leading out of the output folder" in capsys.readouterr().err
    assert _files(outside) == [] and _files(out) == ["sub"]
    (out / "sub").unlink()
    os.mkfifo(out / "sub")  # where a folder is needed
    assert main(["export-npy", str(store), str(out)]) == 2
    assert "sub: exists and is not a folder, but key 'sub/x.npy' needs one" \
        in capsys.readouterr().err
    os.unlink(out / "sub")
    os.mkfifo(out / "b.npy")
    store = _store(tmp_path / "u.h5", ["a.npy", "b.npy"])
    assert main(["export-npy", str(store), str(out)]) == 2
    assert "b.npy: exists and is a FIFO, not a regular file" in capsys.readouterr().err
    assert _files(out) == ["b.npy"]


def test_export_writes_non_utf8_keys_with_their_bytes(tmp_path):
    key = os.fsdecode(b"0_real/caf\xe9.jpg")
    store = _store(tmp_path / "s.h5", [key, "0_real/b.jpg"])
    out = tmp_path / "out"
    assert export_npy(store, out) == 2
    assert os.path.exists(os.fsencode(out) + b"/0_real/caf\xe9.jpg.npy")


# ------------------------------------------------------------ import refuses non-finite

def test_import_skips_non_finite_arrays_by_key(tmp_path, capsys):
    src = tmp_path / "src"
    _write(src / "0_real/good.npy", np.ones((1, 4), np.float32))
    _write(src / "1_fake/good.npy", np.zeros((1, 4), np.float32))
    _write(src / "1_fake/all_nan.npy", np.full((1, 4), np.nan, np.float32))
    _write(src / "1_fake/one_inf.npy", np.array([1, 2, np.inf, 4], np.float32))
    _write(src / "0_real/huge64.npy", np.array([[1e300, 0, 0, 0]]))  # inf as float32
    store = tmp_path / "s.h5"
    assert main(["import-npy", str(src), "--out", str(store)]) == 1  # 1: arrays were skipped
    text = capsys.readouterr().out
    assert "skipped 1_fake/all_nan.npy: 4 of 4 values are NaN or infinite" in text
    assert "skipped 1_fake/one_inf.npy: 1 of 4 values are NaN or infinite" in text
    assert "skipped 0_real/huge64.npy: 1 of 4 values are NaN or infinite" in text
    with FeatureStore(store) as fs:
        assert sorted(fs.keys()) == ["0_real/good.npy", "1_fake/good.npy"]
        assert np.isfinite(fs.read().features).all()
