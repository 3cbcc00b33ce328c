"""raid.metrics.evaluation against scikit-learn's metrics, and the report files it writes."""

from __future__ import annotations

import csv
import json
import logging

import numpy as np
import pytest
from PIL import Image
from sklearn.metrics import accuracy_score, average_precision_score, roc_auc_score

from raid.primitives.errors import RaidError
from raid.metrics.metrics import METRICS, EvaluationResult, evaluate
from raid.metrics.reports import plot_sweep, write_report

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _synthetic(seed: int = 0, n: int = 600):
    """Three groups with both classes, of different difficulty, plus one generated-only
    group; probabilities rounded to 2 decimals so ties (and exact 0.5s) occur."""
    rng = np.random.default_rng(seed)
    groups = rng.choice(["progan", "ADM", "wukong"], size=n)
    labels = rng.integers(0, 2, size=n)
    shift = np.select([groups == "progan", groups == "ADM"], [0.35, 0.1], 0.2)
    probs = np.clip(np.round(rng.normal(0.5 + np.where(labels == 1, shift, -shift), 0.2), 2), 0, 1)
    only_fake = 40
    groups = np.concatenate([groups, np.full(only_fake, "flux")])
    labels = np.concatenate([labels, np.ones(only_fake, dtype=int)])
    probs = np.concatenate([probs, rng.uniform(0, 1, only_fake)])
    return probs, labels, list(groups)


def test_metrics_match_sklearn_per_group_and_mean():
    probs, labels, groups = _synthetic()
    result = evaluate(probs, labels, groups)
    g = np.asarray(groups)
    assert list(result.metrics) == ["groups", "mean"]
    assert result.groups == list(dict.fromkeys(groups))  # first-appearance order
    expected = {}
    for name in ["progan", "ADM", "wukong"]:
        rows = g == name
        y, p = labels[rows], probs[rows]
        pred = (p > 0.5).astype(int)
        expected[name] = {
            "n": int(rows.sum()),
            "accuracy": accuracy_score(y, pred),
            "real_accuracy": accuracy_score(y[y == 0], pred[y == 0]),
            "fake_accuracy": accuracy_score(y[y == 1], pred[y == 1]),
            "ap": average_precision_score(y, p),
            "auroc": roc_auc_score(y, p),
        }
        got = result.metrics["groups"][name]
        assert set(got) == {"n", *METRICS}
        assert got["n"] == expected[name]["n"]
        for k in ("accuracy", "real_accuracy", "fake_accuracy"):
            assert got[k] == pytest.approx(expected[name][k], abs=1e-12)
        for k in ("ap", "auroc"):  # torchmetrics accumulates in float32
            assert got[k] == pytest.approx(expected[name][k], abs=1e-6)
    # the groups really differ, so a wrong grouping could not pass
    assert expected["progan"]["auroc"] > expected["ADM"]["auroc"] + 0.1

    flux = result.metrics["groups"]["flux"]
    rows = g == "flux"
    assert flux["accuracy"] == pytest.approx(accuracy_score(labels[rows], probs[rows] > 0.5))
    assert flux["fake_accuracy"] == flux["accuracy"]

    mean = result.metrics["mean"]
    for k in ("accuracy", "fake_accuracy"):  # defined for all four groups
        values = [expected[n][k] for n in expected] + [flux[k]]
        assert mean[k] == pytest.approx(np.mean(values), abs=1e-12)
    for k in ("real_accuracy", "ap", "auroc"):  # flux has no real images: three groups
        assert mean[k] == pytest.approx(np.mean([expected[n][k] for n in expected]), abs=1e-6)
    assert set(result.curves) == {"progan", "ADM", "wukong"}
    assert result.skipped() == ["flux"]


def test_one_class_group_reports_none_and_a_note():
    probs = np.array([0.1, 0.7, 0.2, 0.9, 0.3, 0.4])
    labels = np.array([0, 1, 0, 1, 0, 0])
    groups = ["mixed", "mixed", "real_only", "mixed", "real_only", "real_only"]
    result = evaluate(probs, labels, groups)
    m = result.metrics["groups"]["real_only"]
    assert m == {"n": 3, "accuracy": 1.0, "real_accuracy": 1.0, "fake_accuracy": None,
                 "ap": None, "auroc": None}
    assert "mixed" not in result.notes
    (note,) = result.notes["real_only"]
    assert "AUROC" in note and "fake_accuracy" in note
    assert result.metrics["mean"]["auroc"] == result.metrics["groups"]["mixed"]["auroc"] == 1.0


def test_threshold_is_strictly_above_half():
    probs = np.array([0.5, 0.5, 0.5000001, 0.4999999])
    labels = np.array([0, 1, 1, 0])
    m = evaluate(probs, labels, ["g"] * 4).metrics["groups"]["g"]
    # 0.5 is called real: right for the real image, wrong for the generated one
    assert m["real_accuracy"] == 1.0
    assert m["fake_accuracy"] == 0.5
    assert m["accuracy"] == 0.75


def test_unknown_labels_are_left_out_and_counted(caplog):
    probs = np.array([0.9, 0.1, 0.8, 0.2])
    labels = np.array([1, 0, -1, -1])
    with caplog.at_level(logging.WARNING, logger="raid.metrics.metrics"):
        result = evaluate(probs, labels, ["a", "a", "a", "b"])
    assert result.n_unknown == 2
    assert "2 of 4" in caplog.text
    assert list(result.metrics["groups"]) == ["a"]  # b has no labelled rows
    assert result.metrics["groups"]["a"]["n"] == 2
    with pytest.raises(RaidError, match="unknown label"):
        evaluate(probs, np.full(4, -1), ["a"] * 4)


@pytest.mark.parametrize("probs, labels, groups, match", [
    ([0.2, 1.5], [0, 1], ["a", "a"], r"\[0, 1\]"),
    ([0.2, float("nan")], [0, 1], ["a", "a"], r"\[0, 1\]"),
    ([0.2, 0.3], [0, 2], ["a", "a"], "label 2"),
    ([0.2, 0.3], [0, 1], ["a"], "one of each"),
    ([], [], [], "no images"),
])
def test_bad_inputs_raise(probs, labels, groups, match):
    with pytest.raises(RaidError, match=match):
        evaluate(np.asarray(probs, dtype=float), np.asarray(labels, dtype=int), groups)


def test_write_report_files(tmp_path):
    probs, labels, groups = _synthetic(seed=1, n=200)
    labels[:3] = -1
    result = evaluate(probs, labels, groups)
    out = tmp_path / "new" / "report"
    paths = write_report(result, out, title="Test run", extra_lines=["provenance: unit test"])
    assert {p.name for p in paths.values()} == {"metrics.json", "metrics.csv", "report.md", "roc.png"}
    assert sorted(p.name for p in out.iterdir()) == ["metrics.csv", "metrics.json", "report.md", "roc.png"]

    loaded = json.loads(paths["json"].read_text())
    assert loaded == result.metrics
    assert set(loaded) == {"groups", "mean"}
    assert set(loaded["mean"]) == set(METRICS)
    for m in loaded["groups"].values():
        assert set(m) == {"n", *METRICS}
    assert loaded["groups"]["flux"]["auroc"] is None

    with paths["csv"].open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["group", "n", *METRICS]
    assert [r["group"] for r in rows] == result.groups + ["mean"]
    progan = next(r for r in rows if r["group"] == "progan")
    assert float(progan["auroc"]) == result.metrics["groups"]["progan"]["auroc"]
    assert next(r for r in rows if r["group"] == "flux")["ap"] == ""

    md = paths["markdown"].read_text()
    assert md.startswith("# Test run")
    acc = result.metrics["groups"]["progan"]["accuracy"]
    assert f"| progan | {result.metrics['groups']['progan']['n']} | {100 * acc:.2f} |" in md
    assert f"**{100 * result.metrics['mean']['accuracy']:.2f}**" in md
    assert "flux: only generated images" in md
    assert "3 images with an unknown label" in md
    assert "provenance: unit test" in md

    data = paths["roc"].read_bytes()
    assert data.startswith(PNG_SIGNATURE)
    with Image.open(paths["roc"]) as im:
        im.verify()
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


def test_write_report_overwrites_and_stays_consistent(tmp_path):
    r1 = evaluate(np.array([0.9, 0.1]), np.array([1, 0]), ["a", "a"])
    r2 = evaluate(np.array([0.1, 0.9]), np.array([1, 0]), ["a", "a"])
    write_report(r1, tmp_path)
    paths = write_report(r2, tmp_path)
    assert json.loads(paths["json"].read_text())["groups"]["a"]["accuracy"] == 0.0
    assert isinstance(r2, EvaluationResult)


def test_plot_sweep_png(tmp_path):
    rows = [("clean", 0, 0.93), ("jpeg", 95, 0.9), ("jpeg", 75, 0.8), ("jpeg", 50, 0.7),
            ("blur", 1, 0.85), ("blur", 2, 0.75), ("resize", 0.5, None)]
    path = plot_sweep(rows, tmp_path / "sweep" / "robustness.png")
    assert path.read_bytes().startswith(PNG_SIGNATURE)
    with Image.open(path) as im:
        assert im.format == "PNG" and im.width > im.height  # one panel per kind, side by side
    with pytest.raises(RaidError):
        plot_sweep([("clean", 0, 0.9)], tmp_path / "empty.png")
