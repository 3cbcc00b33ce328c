"""raid.metrics.metrics against scikit-learn's metrics: per group, means, ties, threshold."""

from __future__ import annotations

import logging
import subprocess
import sys

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, average_precision_score, roc_auc_score, roc_curve

from raid.primitives.errors import RaidError
from raid.metrics.metrics import HEADERS, METRIC_TABLE, METRICS, evaluate, percent, percent_text

def synthetic_scores(seed: int = 0, n: int = 600):
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
    probs, labels, groups = synthetic_scores()
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
        for k in ("ap", "auroc"):  # torchmetrics accumulates in float32: ~1e-7
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
                 "ap": None, "auroc": None, "tpr_at_fpr_1pct": None, "tpr_at_fpr_0.1pct": None}
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


def test_a_model_threshold_moves_the_accuracies_not_ap_or_auroc():
    probs = np.array([0.2, 0.4, 0.6, 0.8, 0.3, 0.7])
    labels = np.array([0, 0, 1, 1, 1, 0])
    default = evaluate(probs, labels, ["g"] * 6)
    strict = evaluate(probs, labels, ["g"] * 6, threshold=0.65)
    assert strict.threshold == 0.65 and default.threshold == 0.5
    assert strict.metrics["groups"]["g"]["fake_accuracy"] == pytest.approx(1 / 3)
    assert default.metrics["groups"]["g"]["fake_accuracy"] == pytest.approx(2 / 3)
    for k in ("ap", "auroc"):
        assert strict.metrics["groups"]["g"][k] == default.metrics["groups"]["g"][k]
    with pytest.raises(RaidError, match="threshold"):
        evaluate(probs, labels, ["g"] * 6, threshold=1.5)


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




def test_heavy_ties_and_roc_corners_match_sklearn():
    """Scores with many ties (each tie is one threshold): AP and AUROC as scikit-learn's,
    and the kept ROC corners trace scikit-learn's curve exactly."""
    rng = np.random.default_rng(5)
    labels = rng.integers(0, 2, 3000)
    probs = np.round(np.clip(rng.normal(0.5 + 0.15 * (2 * labels - 1), 0.2), 0, 1), 1)
    result = evaluate(probs, labels, ["g"] * len(labels))
    m = result.metrics["groups"]["g"]
    assert m["ap"] == pytest.approx(average_precision_score(labels, probs), abs=1e-6)
    assert m["auroc"] == pytest.approx(roc_auc_score(labels, probs), abs=1e-6)
    fpr, tpr, _ = roc_curve(labels, probs)  # drop_intermediate: the corners only
    curve = result.curves["g"]
    np.testing.assert_allclose(curve.fpr, fpr, atol=1e-7)
    np.testing.assert_allclose(curve.tpr, tpr, atol=1e-7)
    assert len(curve.fpr) < 20  # 11 distinct scores: a handful of corners, not 3000 points


def test_one_metric_table_and_formats():
    assert METRICS == tuple(m.key for m in METRIC_TABLE) == tuple(HEADERS)
    assert len(set(HEADERS.values())) == len(HEADERS)
    assert percent(0.99256) == "99.26" and percent(None) == "–"
    assert percent_text(1.0) == "100.00 %" and percent_text(None) == "n/a"


def test_metrics_import_no_torch_and_no_upper_layer():
    """Metrics and reports are what `raid evaluate` pays for at start-up: numpy only."""
    code = ("import sys, raid.metrics.metrics, raid.metrics.reports, raid.metrics.evaluation; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('torch', 'torchmetrics', 'matplotlib', 'sklearn') or "
            "m.startswith(('raid.svm', 'raid.store', 'raid.pipelines', 'raid.cli'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
