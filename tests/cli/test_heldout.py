"""The held-out workflow (issue 11 items 6 and 7): `raid fit` records its training rows and
`raid evaluate` warns, with the count, when the rows it scores overlap them; `raid fit
--target-fpr --calibration-store` picks the threshold on held-out rows and records it."""

import argparse
import json

import numpy as np
import pytest

from raid.cli.commands import info
from raid.cli.main import main
from raid.pipelines.heldout import choose_threshold, key_hash, keys_digest
from raid.pipelines.split import split_store
from raid.store.store import FeatureStore, StoreWriter
from raid.svm.detector import RaidDetector


def make_store(path, n=60, d=8, seed=0, prefix=""):
    rng = np.random.default_rng(seed)
    keys = [f"0_real/{prefix}{i}.npy" for i in range(n)] + \
        [f"1_fake/{prefix}{i}.npy" for i in range(n)]
    feats = rng.normal(size=(2 * n, d)).astype(np.float32)
    feats[n:] += 0.8
    with StoreWriter(path, d, {"extractor": "imported-npy"}) as w:
        w.append(keys, feats, [0] * n + [1] * n, ["g"] * (2 * n))
    return path


def info_json(path, capsys) -> dict:
    """`raid info PATH --json` (through its command module: main.py may not list it yet)."""
    p = argparse.ArgumentParser(prog="raid info")
    info.add_arguments(p)
    capsys.readouterr()
    assert info.run(p.parse_args([str(path), "--json"])) == 0
    return json.loads(capsys.readouterr().out)


def exit_code(argv) -> int:
    """`raid ARGV`'s exit code (argparse's usage errors exit 2 from `parse_args`)."""
    try:
        return main(argv)
    except SystemExit as exc:
        return exc.code


@pytest.fixture
def stores(tmp_path):
    whole = make_store(tmp_path / "all.h5")
    s = split_store(whole, test=0.25, by="pair", seed=1, out_train=tmp_path / "train.h5",
                    out_test=tmp_path / "test.h5")
    assert s is not None
    return whole, tmp_path / "train.h5", tmp_path / "test.h5"


def test_fit_records_its_training_rows(stores, tmp_path, capsys):
    _, train, _ = stores
    model = tmp_path / "m.safetensors"
    assert main(["fit", str(train), "--out", str(model), "--backend", "sklearn"]) == 0
    with FeatureStore(train) as fs:
        keys, labels = list(fs.keys()), fs.read().labels
    recorded = RaidDetector.load(model).provenance_["training"]
    assert recorded["rows"] == len(keys) == recorded["real"] + recorded["generated"]
    assert recorded["real"] == int((labels == 0).sum())
    assert recorded["keys_digest"] == keys_digest(keys)
    assert sorted(recorded["key_hashes"]) == sorted(key_hash(k) for k in keys)
    info = info_json(model, capsys)  # counted, not listed
    assert info["training"]["key_hashes"] == len(keys)
    assert "training" not in info["provenance"]


def test_evaluate_warns_with_the_overlap_count(stores, tmp_path, caplog):
    whole, train, test = stores
    model = tmp_path / "m.safetensors"
    assert main(["fit", str(train), "--out", str(model), "--backend", "sklearn"]) == 0
    n_train = RaidDetector.load(model).provenance_["training"]["rows"]

    caplog.clear()
    assert main(["evaluate", str(model), str(test), "--out", str(tmp_path / "held")]) == 0
    assert "training rows" not in caplog.text  # held out: no warning
    assert "Warning" not in (tmp_path / "held" / "report.md").read_text()

    assert main(["evaluate", str(model), str(whole), "--out", str(tmp_path / "all")]) == 0
    assert f"{n_train} of 120 evaluated rows" in caplog.text and "raid split" in caplog.text
    assert f"{n_train} of 120 evaluated rows" in (tmp_path / "all" / "report.md").read_text()


def test_target_fpr_threshold_is_chosen_on_held_out_rows_and_recorded(stores, tmp_path,
                                                                      capsys):
    _, train, test = stores
    model = tmp_path / "m.safetensors"
    assert main(["fit", str(train), "--out", str(model), "--backend", "sklearn",
                 "--target-fpr", "0.1", "--calibration-store", str(test)]) == 0
    out = capsys.readouterr().out
    det = RaidDetector.load(model)
    with FeatureStore(test) as fs:
        rows = fs.read()
    p = det.predict_proba(rows.features)[:, 1]
    real = p[rows.labels == 0]
    assert det.threshold_ == pytest.approx(choose_threshold(real, 0.1))
    assert (real > det.threshold_).mean() <= 0.1
    assert f"threshold {det.threshold_:.6g} for target FPR 0.1" in out
    cal = det.provenance_["calibration"]
    assert cal["fpr"] == pytest.approx((real > det.threshold_).mean())
    assert cal["real"] == len(real) and cal["store"] == "test.h5"
    assert info_json(model, capsys)["threshold"] == pytest.approx(det.threshold_)
    # predict uses it, and so does `raid evaluate` (on the same held-out rows: same FPR)
    assert (det.predict(rows.features) == (p > det.threshold_)).all()
    assert main(["evaluate", str(model), str(test), "--out", str(tmp_path / "r")]) == 0
    metrics = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert metrics["groups"]["g"]["real_accuracy"] == pytest.approx(1 - cal["fpr"])


def test_threshold_refuses_training_rows_and_lone_options(stores, tmp_path, capsys):
    whole, train, _ = stores
    model = tmp_path / "m.safetensors"
    for argv, message in [
        (["--target-fpr", "0.1", "--calibration-store", str(whole)], "are training rows"),
        (["--target-fpr", "0.1"], "go together"),
        (["--target-fpr", "1.5", "--calibration-store", str(whole)], "--target-fpr"),
    ]:
        capsys.readouterr()
        assert exit_code(["fit", str(train), "--out", str(model), "--backend", "sklearn",
                          *argv]) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1, err
    assert not model.exists()


@pytest.mark.parametrize("fpr", [0.0001, 0.01, 0.1, 0.5])
def test_choose_threshold_is_the_lowest_meeting_the_target(fpr):
    rng = np.random.default_rng(7)
    real = np.concatenate([rng.random(500), np.full(20, 0.3)])  # ties too
    t = choose_threshold(real, fpr)
    assert (real > t).mean() <= fpr
    lower = real[real < t]
    if len(lower):  # any lower threshold lets more than the target through
        assert (real > lower.max()).mean() > fpr or (real > lower.max()).sum() > \
            np.floor(fpr * len(real))
