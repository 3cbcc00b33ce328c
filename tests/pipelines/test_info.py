"""`raid.pipelines.info`: stores, model files and bundles described as text and JSON; a
damaged or foreign file is one line naming it."""

import json
from pathlib import Path

import h5py
import numpy as np
import pytest

from raid.pipelines.info import describe, render
from raid.primitives.errors import RaidError
from raid.store.store import StoreWriter
from raid.svm.detector import RaidDetector

PROV = {"extractor": "test", "patch": {"seed": 7, "size": 224}}


def make_store(path, failures=7):
    rng = np.random.default_rng(0)
    keys = [f"real/{i}.png" for i in range(9)] + [f"V/{i}.png" for i in range(5)] + ["u/0.png"]
    labels = [0] * 9 + [1] * 5 + [-1]
    groups = ["real"] * 9 + ["V"] * 5 + ["u"]
    with StoreWriter(path, 12, PROV) as w:
        w.append(keys, rng.normal(size=(len(keys), 12)), labels, groups)
        w.record_failures([f"bad/{i}.jpg" for i in range(failures)],
                          [f"cannot decode ({i})" for i in range(failures)])
    return path


def make_model(path, provenance=PROV):
    rng = np.random.default_rng(1)
    X = np.concatenate([rng.normal(0, 1, (30, 8)), rng.normal(1.5, 1, (30, 8))])
    y = np.array([0] * 30 + [1] * 30)
    det = RaidDetector(C=2.0, backend="sklearn", progress=False).fit(X, y)
    det.save(path, provenance=provenance)
    return det


def test_store_counts_size_provenance_and_failures(tmp_path):
    info = describe(make_store(tmp_path / "s.h5"))
    assert info["kind"] == "store" and info["rows"] == 15 and info["feature_size"] == 12
    assert info["groups"] == {"V": {"generated": 5}, "real": {"real": 9}, "u": {"unknown": 1}}
    assert list(info["labels"].items()) == [("real", 9), ("generated", 5), ("unknown", 1)]
    assert info["provenance"]["patch"] == {"seed": 7, "size": 224}
    assert info["failures"]["count"] == 7 and len(info["failures"]["first"]) == 5
    assert info["failures"]["first"][0] == {"key": "bad/0.jpg", "reason": "cannot decode (0)"}
    assert json.loads(json.dumps(info)) == info
    text = render(info)
    lines = text.splitlines()
    assert lines[0] == f"{tmp_path / 's.h5'}: RAID feature store"
    assert "  rows          15 (real 9, generated 5, unknown 1)" in lines
    assert "  feature size  12" in lines
    header = next(line for line in lines if line.split()[0] == "group")
    real = next(line for line in lines if line.split()[0] == "real")
    assert header.index("real") + len("real") == real.index("9") + 1  # right-aligned column
    assert "    bad/4.jpg: cannot decode (4)" in lines and "    ... and 2 more" in lines
    assert any(line.split() == ["patch.seed", "7"] for line in lines)


def test_empty_store(tmp_path):
    with StoreWriter(tmp_path / "e.h5", 4, PROV):
        pass
    info = describe(tmp_path / "e.h5")
    assert info["rows"] == 0 and info["groups"] == {} and info["failures"]["count"] == 0
    assert "  rows          0" in render(info).splitlines()


def test_model_settings_platt_threshold_and_provenance(tmp_path):
    det = make_model(tmp_path / "m.safetensors")
    info = describe(tmp_path / "m.safetensors")
    assert info["kind"] == "model"
    assert info["settings"]["C"] == 2.0 and info["settings"]["gamma"] == "auto"
    assert info["settings"]["gamma_value"] == pytest.approx(1 / 8)
    assert info["settings"]["backend"] == det.backend_ == "sklearn"
    assert info["support_vectors"] == len(det.support_vectors_)
    assert info["platt"] == {"a": det.platt_a_, "b": det.platt_b_}
    assert info["threshold"] == det.threshold_ and info["provenance"] == PROV
    assert info["n_features"] == 8
    assert json.loads(json.dumps(info)) == info
    lines = render(info).splitlines()
    assert f"  support vec.  {len(det.support_vectors_)}" in lines
    assert "  gamma         auto (= 0.125)" in lines
    assert "  threshold     0.5" in lines
    assert "  training      not recorded in this file" in lines


def test_model_without_provenance(tmp_path):
    make_model(tmp_path / "m.safetensors", provenance=None)
    info = describe(tmp_path / "m.safetensors")
    assert info["provenance"] is None and info["training"] is None
    assert "  provenance    not recorded" in render(info).splitlines()


def test_bundle_shows_aim_checkpoints_and_the_model(tmp_path, tiny_aim):
    from raid.pipelines.bundle import write_bundle
    from raid.pipelines.featurizer import Featurizer

    feat = Featurizer.load(tiny_aim["arch"], tiny_aim["backbone"], tiny_aim["head"])
    rng = np.random.default_rng(2)
    d = feat.provenance["feature_dim"]
    X = np.concatenate([rng.normal(0, 1, (20, d)), rng.normal(1, 1, (20, d))])
    det = RaidDetector(backend="sklearn", progress=False).fit(X, [0] * 20 + [1] * 20)
    det.save(tmp_path / "m.safetensors", provenance=feat.provenance)
    bundle = write_bundle(tmp_path / "b", tmp_path / "m.safetensors", **tiny_aim)
    info = describe(bundle)
    assert info["kind"] == "bundle" and info["model"]["kind"] == "model"
    assert info["model"]["support_vectors"] == len(det.support_vectors_)
    assert info["checkpoints"]["backbone"] == str(Path(tiny_aim["backbone"]).resolve())
    assert info["index"]["format"] == "raid-detector-bundle"
    assert describe(bundle / "bundle.json")["path"] == info["path"]
    json.dumps(info)
    text = render(info)
    assert text.splitlines()[0] == f"{bundle.resolve()}: RAID detector bundle"
    assert f"    support vec.  {len(det.support_vectors_)}" in text.splitlines()
    (bundle / "detector.safetensors").write_bytes(b"changed")
    with pytest.raises(RaidError, match="changed since the bundle was written"):
        describe(bundle)


# -- damaged and foreign files: one line naming the file --------------------------------

def _one_line(path, match):
    with pytest.raises(RaidError, match=match) as exc:
        describe(path)
    assert str(path) in str(exc.value) and "\n" not in str(exc.value)


def test_damaged_and_foreign_files(tmp_path):
    _one_line(tmp_path / "missing.h5", "no such file")
    (tmp_path / "notes.h5").write_text("not hdf5")
    _one_line(tmp_path / "notes.h5", "cannot open as HDF5")
    with h5py.File(tmp_path / "other.h5", "w") as h5:
        h5["x"] = np.zeros(3)
    _one_line(tmp_path / "other.h5", "not a RAID feature store")
    (tmp_path / "random.safetensors").write_bytes(np.random.default_rng(0).bytes(64))
    _one_line(tmp_path / "random.safetensors", "not a RAID model file")
    make_model(tmp_path / "m.safetensors")
    data = (tmp_path / "m.safetensors").read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[:-10])
    _one_line(tmp_path / "cut.safetensors", "damaged RAID model file")
    (tmp_path / "notes.txt").write_text("hello")
    _one_line(tmp_path / "notes.txt", "not a RAID feature store .* or bundle folder")
    (tmp_path / "folder").mkdir()
    _one_line(tmp_path / "folder", "not a detector bundle")


def test_files_are_recognised_by_content_not_name(tmp_path):
    make_store(tmp_path / "s.h5")
    (tmp_path / "store.dat").write_bytes((tmp_path / "s.h5").read_bytes())
    assert describe(tmp_path / "store.dat")["kind"] == "store"
    make_model(tmp_path / "m.safetensors")
    (tmp_path / "model.bin").write_bytes((tmp_path / "m.safetensors").read_bytes())
    assert describe(tmp_path / "model.bin")["kind"] == "model"
