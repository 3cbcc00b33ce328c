"""`raid.pipelines.split`: held-out stores whose units never cross sides, stratified,
deterministic; every refusal leaves nothing behind."""

import math
import shutil

import numpy as np
import pytest

from helpers import require_shared
from raid.pipelines import split as split_mod
from raid.pipelines.split import photo_of, plan_split, split_store
from raid.primitives.errors import RaidError
from raid.primitives.keys import REAL_GROUP, paired_key
from raid.store.store import FeatureStore, StoreWriter

PROV = {"extractor": "test", "patch": {"seed": 3, "size": 224}}
AES = ("sd14", "flux")


def paired_rows(n_photos: int, d: int = 6, seed: int = 0):
    """Rows as `raid build-train` names them: each photo real, plus one row per autoencoder."""
    rng = np.random.default_rng(seed)
    keys, labels, groups = [], [], []
    for i in range(n_photos):
        key = f"sub{i % 3}/p{i}.jpg"
        keys.append(key), labels.append(0), groups.append(REAL_GROUP)
        for ae in AES:
            keys.append(paired_key(ae, key)), labels.append(1), groups.append(ae)
    return keys, rng.normal(size=(len(keys), d)).astype(np.float32), labels, groups


def write_store(path, keys, feats, labels, groups, failures=()):
    with StoreWriter(path, feats.shape[1], PROV) as w:
        w.append(keys, feats, labels, groups)
        if failures:
            w.record_failures(*zip(*failures))
    return path


def read_all(path):
    with FeatureStore(path) as fs:
        rows = fs.read()
        return rows, fs.provenance, fs.failures()


def files(folder):
    return sorted(p.name for p in folder.iterdir())


@pytest.mark.parametrize("key,group,label,photo", [
    ("sub/a.jpg", REAL_GROUP, 0, "sub/a"),
    (paired_key("V", "sub/a.jpg"), "V", 1, "sub/a"),
    ("0_real/x.npy", "train", 0, "x"),
    ("1_fake/x.npy", "train", 1, "x"),
    ("gen/1_fake/x.png", "gen", 1, "x"),
    # a real row is never stripped of its first folder, even when it is named like a group
    ("sub/a.jpg", "sub", 0, "sub/a"),
    ("V/real/a.png", "V", 1, "real/a"),
])
def test_photo_of(key, group, label, photo):
    assert photo_of(key, group, label) == photo


def test_by_pair_keeps_each_photo_with_its_reconstructions_and_both_classes_per_side():
    keys, _, labels, groups = paired_rows(40)
    train, test = plan_split(keys, groups, labels, 0.25, "pair", seed=1)
    assert len(train) + len(test) == len(keys) and not set(train) & set(test)
    side = {}
    for i in range(len(keys)):
        photo = photo_of(keys[i], groups[i], labels[i])
        side.setdefault(photo, set()).add(i in set(test))
    assert len(side) == 40 and all(len(s) == 1 for s in side.values())
    assert sum(next(iter(s)) for s in side.values()) == 10  # 25 % of the photos
    for idx in (train, test):
        assert {labels[i] for i in idx} == {0, 1}
        assert {groups[i] for i in idx} == {REAL_GROUP, *AES}


def test_split_is_deterministic_for_a_seed_and_independent_of_row_order():
    keys, _, labels, groups = paired_rows(30)
    a = plan_split(keys, groups, labels, 0.2, "pair", seed=5)
    b = plan_split(keys, groups, labels, 0.2, "pair", seed=5)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    c = plan_split(keys, groups, labels, 0.2, "pair", seed=6)
    assert not np.array_equal(a[1], c[1])
    perm = np.random.default_rng(0).permutation(len(keys))
    shuffled = plan_split([keys[i] for i in perm], [groups[i] for i in perm],
                          [labels[i] for i in perm], 0.2, "pair", seed=5)
    assert {keys[perm[i]] for i in shuffled[1]} == {keys[i] for i in a[1]}


def test_by_key_is_stratified_by_label():
    keys = [f"k{i}.png" for i in range(50)]
    labels = [0] * 40 + [1] * 10  # unbalanced: a plain 20 % draw could miss class 1
    train, test = plan_split(keys, ["g"] * 50, labels, 0.2, "key", seed=0)
    assert len(test) == 10
    assert sum(labels[i] for i in test) == 2 and sum(labels[i] for i in train) == 8


def test_by_group_moves_whole_groups():
    keys, _, labels, groups = paired_rows(10)
    keys += [f"extra{j}/q.png" for j in range(4)]
    labels += [1] * 4
    groups += [f"gen{j}" for j in range(4)]
    train, test = plan_split(keys, groups, labels, 0.4, "group", seed=2)
    tr, te = {groups[i] for i in train}, {groups[i] for i in test}
    assert not tr & te and tr | te == set(groups)
    assert len(te) == 2  # 40 % of the 6 generated-only groups; the lone real group trains


def test_split_store_writes_both_stores_with_provenance_and_failures(tmp_path):
    keys, feats, labels, groups = paired_rows(25)
    fails = [("sub0/broken.jpg", "cannot decode")]
    store = write_store(tmp_path / "feats.h5", keys, feats, labels, groups, fails)
    s = split_store(store, test=0.2, seed=0)
    assert (s.train, s.test) == (tmp_path / "feats-train.h5", tmp_path / "feats-test.h5")
    assert files(tmp_path) == ["feats-test.h5", "feats-train.h5", "feats.h5"]
    src, prov, _ = read_all(store)
    tr, prov_tr, fail_tr = read_all(s.train)
    te, prov_te, fail_te = read_all(s.test)
    assert prov_tr == prov_te == prov and fail_tr == fail_te == dict(fails)
    assert s.units == {"train": 20, "test": 5} and s.failures == 1 and not s.warnings
    assert len(te) == 15 and len(tr) == 60
    by_key = {k: f for k, f in zip(src.keys, src.features)}
    for rows in (tr, te):
        for k, f, g, lab in zip(rows.keys, rows.features, rows.groups, rows.labels):
            np.testing.assert_array_equal(f, by_key[k])
            assert (g, lab) == (groups[keys.index(k)], labels[keys.index(k)])
    assert not set(tr.keys) & set(te.keys) and set(tr.keys) | set(te.keys) == set(keys)
    assert s.counts["test"] == {REAL_GROUP: {0: 5}, "flux": {1: 5}, "sd14": {1: 5}}
    assert "test  15 rows, 5 photos" in "\n".join(s.lines())


def test_seed_features_split_by_pair_keeps_pairs_together(tmp_path):
    """The README's 80/20 split by pair of the published features: the real and generated
    arrays of one name stay on one side."""
    from raid.store.npyio import import_npy

    src = require_shared("seed-features", "train")
    names = sorted(p.name for p in (src / "0_real").glob("*.npy"))[:40]
    for label in ("0_real", "1_fake"):
        (tmp_path / "train" / label).mkdir(parents=True)
        for name in names:
            shutil.copy(src / label / name, tmp_path / "train" / label / name)
    import_npy(tmp_path / "train", tmp_path / "seed.h5")
    s = split_store(tmp_path / "seed.h5", test=0.2, by="pair", seed=0)
    tr, _, _ = read_all(s.train)
    te, _, _ = read_all(s.test)
    assert len(te) == 16 and len(tr) == 64  # 8 of 40 pairs held out
    for rows in (tr, te):
        names_here = {k.split("/", 1)[1] for k in rows.keys}
        assert {k for k in rows.keys} == {f"{lab}/{n}" for lab in ("0_real", "1_fake")
                                           for n in names_here}
    assert not {k.split("/", 1)[1] for k in tr.keys} & {k.split("/", 1)[1] for k in te.keys}
    # by key, pairs are free to cross: the split differs from the by-pair one
    k = split_store(tmp_path / "seed.h5", test=0.2, by="key", seed=0,
                    out_train=tmp_path / "k-train.h5", out_test=tmp_path / "k-test.h5")
    ke, _, _ = read_all(k.test)
    assert len(ke) == 16 and sum(ke.labels) == 8
    real = {n.split("/", 1)[1] for n, lab in zip(ke.keys, ke.labels) if lab == 0}
    fake = {n.split("/", 1)[1] for n, lab in zip(ke.keys, ke.labels) if lab == 1}
    assert real != fake


# -- refusals: one RaidError, nothing written -------------------------------------------

@pytest.fixture
def small_store(tmp_path):
    keys, feats, labels, groups = paired_rows(6)
    return write_store(tmp_path / "s.h5", keys, feats, labels, groups)


@pytest.mark.parametrize("fraction", [0, 1, -0.2, 1.5, math.nan])
def test_refuses_a_test_fraction_outside_0_1(small_store, fraction):
    with pytest.raises(RaidError, match="between 0 and 1"):
        split_store(small_store, test=fraction)
    assert files(small_store.parent) == ["s.h5"]


def test_refuses_an_unknown_split_unit(small_store):
    with pytest.raises(RaidError, match="pair, key, group"):
        split_store(small_store, by="photo")


@pytest.mark.parametrize("which", ["out_train", "out_test"])
def test_refuses_an_output_equal_to_the_input(small_store, which):
    same = small_store.parent / "." / "s.h5"  # another spelling of the same file
    with pytest.raises(RaidError, match="output is the input store"):
        split_store(small_store, **{which: same})
    link = small_store.parent / "link.h5"
    link.symlink_to(small_store)
    with pytest.raises(RaidError, match="output is the input store"):
        split_store(small_store, **{which: link})
    assert files(small_store.parent) == ["link.h5", "s.h5"]


def test_refuses_the_same_file_for_both_outputs(small_store):
    out = small_store.parent / "both.h5"
    with pytest.raises(RaidError, match="same file"):
        split_store(small_store, out_train=out, out_test=out)
    assert files(small_store.parent) == ["s.h5"]


def test_refuses_existing_outputs_unless_overwrite(small_store):
    first = split_store(small_store, seed=0)
    before = first.test.read_bytes()
    with pytest.raises(RaidError, match="exists"):
        split_store(small_store, seed=1)
    assert first.test.read_bytes() == before
    first.train.unlink()  # one output left over is refused as well
    with pytest.raises(RaidError, match="exists"):
        split_store(small_store, seed=1)
    assert not first.train.exists()
    again = split_store(small_store, seed=1, overwrite=True)
    assert again.train.exists() and files(small_store.parent) == [
        "s-test.h5", "s-train.h5", "s.h5"]


def test_refuses_a_folder_as_output(small_store):
    (small_store.parent / "dir.h5").mkdir()
    with pytest.raises(RaidError, match="is a folder"):
        split_store(small_store, out_test=small_store.parent / "dir.h5", overwrite=True)
    assert files(small_store.parent) == ["dir.h5", "s.h5"]


def test_refuses_a_split_that_leaves_a_side_empty(tmp_path):
    keys, feats, labels, groups = paired_rows(1)  # one photo: every row is one unit
    store = write_store(tmp_path / "one.h5", keys, feats, labels, groups)
    with pytest.raises(RaidError, match="single photo"):
        split_store(store, test=0.5)
    with pytest.raises(RaidError, match="single group"):
        split_store(write_store(tmp_path / "g.h5", keys[:1], feats[:1], labels[:1],
                                groups[:1]), by="group")
    by_key = split_store(store, by="key", test=0.5)  # rows may split: the lone real trains
    assert by_key.units == {"train": 2, "test": 1}
    assert by_key.warnings == ["the test side has no real rows (split by key cannot keep "
                               "both classes on both sides)"]
    with StoreWriter(tmp_path / "empty.h5", 4, PROV):
        pass
    with pytest.raises(RaidError, match="no rows"):
        split_store(tmp_path / "empty.h5")
    assert files(tmp_path) == ["empty.h5", "g.h5", "one-test.h5", "one-train.h5", "one.h5"]


def test_refuses_a_missing_or_foreign_input(tmp_path):
    with pytest.raises(RaidError, match="no such feature store"):
        split_store(tmp_path / "nope.h5")
    (tmp_path / "notes.h5").write_text("hello")
    with pytest.raises(RaidError, match="notes.h5: cannot open as HDF5"):
        split_store(tmp_path / "notes.h5")
    assert files(tmp_path) == ["notes.h5"]


def test_outputs_are_both_or_neither(small_store):
    folder = small_store.parent
    (folder / "blocker").write_text("a file where a folder should be")
    with pytest.raises(RaidError, match="cannot write"):
        split_store(small_store, out_test=folder / "blocker" / "test.h5")
    assert files(folder) == ["blocker", "s.h5"]  # the finished training store is gone too


def test_interrupted_split_leaves_nothing(small_store, monkeypatch):
    real_write, calls = split_mod._write, []

    def write_then_interrupt(*args):
        calls.append(1)
        real_write(*args)
        if len(calls) == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(split_mod, "_write", write_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        split_store(small_store)
    assert files(small_store.parent) == ["s.h5"]
