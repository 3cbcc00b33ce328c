"""`raid fit` and `raid evaluate` from the command line: the happy path on a small store,
and each user mistake as one line, exit code 2, nothing half-written."""

import json

import numpy as np
import pytest

from raid.cli.main import main
from raid.primitives.errors import RaidError
from raid.store.store import StoreWriter


def make_store(path, n=60, d=16, groups=("ga", "gb"), labels=(0, 1), nan=False, seed=0):
    rng = np.random.default_rng(seed)
    keys, feats, labs, grps = [], [], [], []
    for g in groups:
        for i in range(n):
            lab = labels[i % len(labels)]
            keys.append(f"{g}/{i}.png")
            feats.append(rng.normal(loc=1.5 * lab, size=d))
            labs.append(lab)
            grps.append(g)
    feats = np.asarray(feats, np.float32)
    if nan:
        feats[3, 2] = np.nan
    with StoreWriter(path, d, {"extractor": "test"}) as w:
        w.append(keys, feats, labs, grps)
    return path


def test_fit_then_evaluate_writes_the_report(tmp_path, capsys):
    store = make_store(tmp_path / "s.h5")
    model = tmp_path / "m.safetensors"
    assert main(["fit", str(store), "--out", str(model), "--backend", "sklearn"]) == 0
    assert "fitted on 60 real + 60 generated rows" in capsys.readouterr().out
    assert main(["evaluate", str(model), str(store), "--out", str(tmp_path / "r")]) == 0
    metrics = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert set(metrics) == {"groups", "mean"}
    assert set(metrics["groups"]) == {"ga", "gb"}
    assert set(metrics["groups"]["ga"]) == {"n", "accuracy", "real_accuracy", "fake_accuracy",
                                            "ap", "auroc", "tpr_at_fpr_1pct",
                                            "tpr_at_fpr_0.1pct"}
    assert metrics["groups"]["ga"]["n"] == 60
    assert metrics["mean"]["accuracy"] > 0.8  # well-separated classes
    for name in ("metrics.csv", "report.md", "roc.png"):
        assert (tmp_path / "r" / name).is_file()
    # a group chosen for training only
    assert main(["fit", str(store), "--out", str(tmp_path / "ga.safetensors"),
                 "--groups", "ga", "--backend", "sklearn"]) == 0


def test_one_class_group_reports_what_is_defined(tmp_path):
    store = make_store(tmp_path / "s.h5")
    make_store(tmp_path / "real_only.h5", groups=("only",), labels=(0,))
    model = tmp_path / "m.safetensors"
    assert main(["fit", str(store), "--out", str(model), "--backend", "sklearn"]) == 0
    assert main(["evaluate", str(model), str(tmp_path / "real_only.h5"),
                 "--out", str(tmp_path / "r")]) == 0
    m = json.loads((tmp_path / "r" / "metrics.json").read_text())["groups"]["only"]
    assert m["real_accuracy"] is not None and m["fake_accuracy"] is None and m["auroc"] is None
    assert "only" in (tmp_path / "r" / "report.md").read_text()


def _fails(capsys, argv, *needles):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, err


def test_user_mistakes_are_one_line_and_write_nothing(tmp_path, capsys):
    good = make_store(tmp_path / "s.h5")
    out = tmp_path / "m.safetensors"
    _fails(capsys, ["fit", str(tmp_path / "missing.h5"), "--out", str(out)], "missing.h5")
    (tmp_path / "empty.h5").write_bytes(b"")
    _fails(capsys, ["fit", str(tmp_path / "empty.h5"), "--out", str(out)], "empty")
    _fails(capsys, ["fit", str(good), "--out", str(out), "--groups", "nope"], "nope")
    make_store(tmp_path / "one.h5", labels=(1,))
    _fails(capsys, ["fit", str(tmp_path / "one.h5"), "--out", str(out)], "0 real and 120")
    with pytest.raises(RaidError, match="NaN"):  # a store never holds non-finite rows
        make_store(tmp_path / "nan.h5", nan=True)
    assert not out.exists()
    (tmp_path / "fake.safetensors").write_bytes(b"\x89PNG\r\n\x1a\n" + b"0" * 100)
    _fails(capsys, ["evaluate", str(tmp_path / "fake.safetensors"), str(good),
                    "--out", str(tmp_path / "r")], "fake.safetensors")
    assert main(["fit", str(good), "--out", str(out), "--backend", "sklearn"]) == 0
    make_store(tmp_path / "wide.h5", d=17)
    _fails(capsys, ["evaluate", str(out), str(tmp_path / "wide.h5"), "--out",
                    str(tmp_path / "r")], "feature size")
    assert not (tmp_path / "r").exists() or not any((tmp_path / "r").iterdir())
    with StoreWriter(tmp_path / "norows.h5", 16, {"extractor": "test"}):
        pass
    _fails(capsys, ["evaluate", str(out), str(tmp_path / "norows.h5"), "--out",
                    str(tmp_path / "r")], "no rows")
    _fails(capsys, ["fit", str(good), "--out", str(out), "--indices",
                    str(tmp_path / "missing.npy")], "missing.npy")
