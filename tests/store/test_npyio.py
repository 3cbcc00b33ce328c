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
