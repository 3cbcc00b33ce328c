"""The loaded pipeline: AIM loaded and hashed once per command, predictions per image, and
a model refused on features of another checkpoint (naming the difference)."""

import json
import logging
import shutil

import numpy as np
import pytest

import raid.pipelines.featurizer as featurizer_module
from helpers import aim_args, write_tiny_aim
from raid.cli.main import main
from raid.pipelines.pipeline import DetectorPipeline, Prediction
from raid.primitives.errors import RaidError
from raid.primitives.hashing import hash_calls
from raid.primitives.synthetic import photo, rng_for, write_image

CPU = ["--accelerator", "cpu", "--num-workers", "0", "--batch-size", "4"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """Two tiny AIMs (other weights), a benchmark tree, a model fitted on AIM A's features."""
    d = tmp_path_factory.mktemp("pipe")
    a, b = write_tiny_aim(d / "aimA", seed=0), write_tiny_aim(d / "aimB", seed=1)
    for gen in ("g1", "g2"):
        for i in range(4):
            for label, grain in (("0_real", 25.0), ("1_fake", 0.0)):
                write_image(d / "root" / gen / label / f"{i}.png",
                            photo(rng_for(gen, label, i), 70, 80, grain=grain))
    (d / "bench.yaml").write_text("name: t\ngenerators: [g1, g2]\n")
    assert main(["extract", "--input", str(d / "root"), "--out", str(d / "a.h5"),
                 *aim_args(a), *CPU]) == 0
    assert main(["extract", "--input", str(d / "root"), "--out", str(d / "b.h5"),
                 *aim_args(b), *CPU]) == 0
    assert main(["fit", str(d / "a.h5"), "--out", str(d / "m.safetensors"),
                 "--backend", "sklearn"]) == 0
    return {"dir": d, "a": a, "b": b, "model": d / "m.safetensors"}


class Counter:
    """Wraps the real AIM loader and counts its calls (the real one still runs)."""

    def __init__(self, monkeypatch):
        self.calls = 0
        real = featurizer_module.load_aim

        def counting(*args, **kwargs):
            self.calls += 1
            return real(*args, **kwargs)

        monkeypatch.setattr(featurizer_module, "load_aim", counting)


def fresh_copy(aim: dict, folder) -> dict:
    """Checkpoints never hashed in this process (the digest cache is per path)."""
    folder.mkdir()
    out = dict(aim)
    for k in ("backbone", "head"):
        out[k] = str(shutil.copy(aim[k], folder))
    return out


def test_a_sweep_and_a_three_folder_detect_load_and_hash_aim_once(setup, tmp_path,
                                                                  monkeypatch):
    d = setup["dir"]
    counter = Counter(monkeypatch)
    aim = fresh_copy(setup["a"], tmp_path / "ckpt1")
    before = hash_calls()
    assert main(["benchmark", "--config", str(d / "bench.yaml"), "--root", str(d / "root"),
                 "--model", str(setup["model"]), "--out", str(tmp_path / "out"),
                 "--perturb", "jpeg=50", "blur=1", *aim_args(aim), *CPU]) == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir() if p.is_dir()) == [
        "blur=1", "clean", "features", "jpeg=50"]
    assert counter.calls == 1
    assert hash_calls() - before == 2  # backbone and head, once each

    aim = fresh_copy(setup["a"], tmp_path / "ckpt2")
    folders = [d / "root" / "g1" / "0_real", d / "root" / "g2" / "1_fake", d / "root" / "g1"]
    files = [folders[0] / "0.png", folders[1] / "1.png", folders[2] / "1_fake" / "2.png"]
    counter.calls, before = 0, hash_calls()
    assert main(["detect", str(setup["model"]), *map(str, files), *aim_args(aim), *CPU]) == 0
    assert counter.calls == 1 and hash_calls() - before == 2


def test_predict_and_predict_proba(setup, caplog):
    d = setup["dir"]
    a = setup["a"]
    pipe = DetectorPipeline.from_files(setup["model"], a["arch"], a["backbone"], a["head"])
    path = d / "root" / "g1" / "0_real" / "0.png"
    preds = pipe.predict([path, path.read_bytes(), b"junk", path.read_bytes()],
                         keys=[None, "0.png", "x", "other.png"])
    assert [p.key for p in preds] == ["0.png", "0.png", "x", "other.png"]
    assert isinstance(preds[0], Prediction) and preds[0].error == ""
    assert preds[1].p_generated == pytest.approx(preds[0].p_generated, abs=1e-6)
    assert preds[3].patch != preds[0].patch  # the key seeds the patch choice
    assert preds[2].p_generated is None and preds[2].verdict is None and preds[2].error
    for p in (preds[0], preds[1], preds[3]):
        assert p.verdict == ("generated" if p.p_generated > 0.5 else "real")
    probs = pipe.predict_proba([path])
    assert probs.shape == (1, 2) and probs[0, 1] == pytest.approx(preds[0].p_generated, 1e-6)
    np.testing.assert_allclose(probs.sum(1), 1.0)
    with pytest.raises(RaidError, match="^x: not an image"):
        pipe.predict_proba([path, b"junk"], keys=["0.png", "x"])
    info = pipe.info
    assert info["checkpoints"]["backbone"] == pipe.featurizer.provenance["checkpoints"]["backbone"]
    assert info["aim"]["arch"] == "tiny" and info["svm"]["n_features_in"] == 32
    json.dumps(info)  # JSON-able, for a service


def test_a_model_is_refused_on_another_checkpoints_features(setup, tmp_path, capsys, caplog):
    d, b = setup["dir"], setup["b"]
    image = str(d / "root" / "g1" / "0_real" / "0.png")
    cases = [
        ["detect", str(setup["model"]), image, *aim_args(b), *CPU],
        ["evaluate", str(setup["model"]), str(d / "b.h5"), "--out", str(tmp_path / "r")],
        ["benchmark", "--config", str(d / "bench.yaml"), "--features", str(d / "b.h5"),
         "--model", str(setup["model"]), "--out", str(tmp_path / "bf")],
        ["benchmark", "--config", str(d / "bench.yaml"), "--root", str(d / "root"),
         "--model", str(setup["model"]), "--out", str(tmp_path / "bi"), *aim_args(b), *CPU],
    ]
    for argv in cases:
        capsys.readouterr()
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1, err
        assert "checkpoints.backbone: model has" in err and "checkpoints.head" in err, err
        assert "aim.arch" not in err  # same size: only what differs is named
    assert not (tmp_path / "r").exists() and not (tmp_path / "bi" / "features").exists()
    # --allow-mismatch scores anyway, with a warning naming the difference
    for argv in cases[:2]:
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            assert main(argv + ["--allow-mismatch"]) == 0
        assert "checkpoints.backbone" in caplog.text
    # the same model on its own checkpoint's features: no complaint
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert main(["evaluate", str(setup["model"]), str(d / "a.h5"), "--out",
                     str(tmp_path / "ok")]) == 0
    assert "checkpoints" not in caplog.text and "skipped" not in caplog.text


def test_a_model_of_the_previous_format_loads_with_a_warning(setup, tmp_path, caplog):
    from raid.svm.detector import RaidDetector

    old = RaidDetector.load(setup["model"])
    old.provenance_ = None
    old.save(tmp_path / "old.safetensors")  # no provenance recorded
    assert RaidDetector.load(tmp_path / "old.safetensors").provenance_ is None
    with caplog.at_level(logging.WARNING):
        assert main(["evaluate", str(tmp_path / "old.safetensors"), str(setup["dir"] / "b.h5"),
                     "--out", str(tmp_path / "r")]) == 0
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("previous format" in w and "skipped" in w for w in warnings), warnings
