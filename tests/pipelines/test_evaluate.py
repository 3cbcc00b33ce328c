"""`raid.pipelines.evaluate`: a store scored by a model that records its training
features' provenance; imported features (no extractor provenance) get the size check only."""

import json
import logging

import numpy as np
import pytest

from raid.pipelines.evaluate import evaluate_store, score_store
from raid.pipelines.provenance import differences
from raid.primitives.errors import RaidError
from raid.store.store import StoreWriter
from raid.svm.detector import RaidDetector

AIM = {"extractor": "aim-v1", "aim": {"arch": "aim-600m", "probe": "best"},
       "checkpoints": {"backbone": "b" * 64, "head": "h" * 64},
       "patch": {"policy": "texture-rich", "size": 224, "seed": 0}, "precision": "32-true",
       "perturbation": "clean"}


def make_store(path, provenance, d=8, seed=0):
    rng = np.random.default_rng(seed)
    y = np.repeat([0, 1], 20)
    X = rng.normal(size=(40, d)).astype(np.float32) + y[:, None]
    with StoreWriter(path, d, provenance) as w:
        w.append([f"g/{i}.png" for i in range(40)], X, y, ["g"] * 40)
    return X, y


def fitted(tmp_path, provenance, d=8):
    X, y = make_store(tmp_path / "train.h5", provenance, d)
    det = RaidDetector(backend="sklearn", progress=False).fit(X, y)
    det.save(tmp_path / "m.safetensors", provenance={**provenance, "feature_dim": d})
    return tmp_path / "m.safetensors"


def test_what_may_differ_and_what_may_not():
    other = {**AIM, "perturbation": "jpeg=50", "patch": {**AIM["patch"], "seed": 3},
             "training_pairs": {"latent": "sample"}, "raid_version": "9"}
    assert differences(AIM, other) == []
    diffs = differences(AIM, {**AIM, "precision": "bf16-mixed",
                              "aim": {**AIM["aim"], "probe": "last"}})
    assert diffs == ["aim.probe: model has 'best', features have 'last'",
                     "precision: model has '32-true', features have 'bf16-mixed'"]


def test_refused_allowed_and_imported(tmp_path, caplog):
    model = fitted(tmp_path, AIM)
    make_store(tmp_path / "bf16.h5", {**AIM, "precision": "bf16-mixed"}, seed=1)
    with pytest.raises(RaidError, match=r"bf16\.h5: .*precision: model has '32-true'"):
        evaluate_store(model, tmp_path / "bf16.h5", tmp_path / "r")
    assert not (tmp_path / "r").exists()
    result = evaluate_store(model, tmp_path / "bf16.h5", tmp_path / "r", allow_mismatch=True)
    assert set(json.loads((tmp_path / "r" / "metrics.json").read_text())["groups"]) == {"g"}
    assert result.metrics["groups"]["g"]["n"] == 40
    # imported .npy features say nothing of their extractor: size checked, warned
    make_store(tmp_path / "npy.h5", {"extractor": "imported-npy"}, seed=2)
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        probs, rows = score_store(model, tmp_path / "npy.h5")
    assert len(probs) == 40 and "only the feature size is checked" in caplog.text
    make_store(tmp_path / "wide.h5", {"extractor": "imported-npy"}, d=9)
    with pytest.raises(RaidError, match="feature size differs"):
        score_store(model, tmp_path / "wide.h5")
