"""TPR at a fixed low FPR (issue 11 item 7): per group in metrics.json, the CSV and the
markdown, None where a group has too few real images to measure that FPR; the ROC plot
has a log-scale FPR axis."""

import json

import numpy as np
import pytest

from raid.metrics.metrics import FPR_TARGETS, HEADERS, METRICS, evaluate, tpr_at_fpr
from raid.metrics.reports import write_report


def brute_force(probs, labels, target):
    """Highest TPR over every threshold t (generated when P > t) with FPR <= target."""
    best = 0.0
    real, fake = probs[labels == 0], probs[labels == 1]
    for t in np.r_[-1.0, np.unique(probs)]:
        if (real > t).mean() <= target:
            best = max(best, (fake > t).mean())
    return best


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_tpr_at_fpr_matches_a_brute_force_search(seed):
    rng = np.random.default_rng(seed)
    labels = np.r_[np.zeros(1500, int), np.ones(700, int)]
    probs = np.round(np.r_[rng.beta(2, 8, 1500), rng.beta(8, 2, 700)], 3)  # ties too
    m = evaluate(probs, labels, ["g"] * len(labels)).metrics["groups"]["g"]
    for key, target in FPR_TARGETS:
        assert m[key] == pytest.approx(brute_force(probs, labels, target)), key


def test_too_few_real_images_give_none_and_a_dash(tmp_path):
    labels = np.r_[np.zeros(50, int), np.ones(50, int)]
    probs = np.r_[np.linspace(0, 0.6, 50), np.linspace(0.4, 1, 50)]
    result = evaluate(probs, labels, ["small"] * 100)
    m = result.metrics["groups"]["small"]
    assert m["tpr_at_fpr_1pct"] is None and m["tpr_at_fpr_0.1pct"] is None
    assert tpr_at_fpr(np.array([0.0, 1.0]), np.array([0.5, 1.0]), 0.01, 100) == 0.5
    files = write_report(result, tmp_path)
    assert json.loads(files["json"].read_text())["groups"]["small"]["tpr_at_fpr_1pct"] is None
    header = next(line for line in files["markdown"].read_text().splitlines()
                  if line.startswith("| Group"))
    assert [c.strip() for c in header.strip("|").split("|")] == \
        ["Group", "n", *(HEADERS[k] for k in METRICS)]
    assert files["csv"].read_text().splitlines()[0].endswith("tpr_at_fpr_1pct,tpr_at_fpr_0.1pct")


def test_roc_plot_has_a_log_fpr_axis(tmp_path, monkeypatch):
    from matplotlib.axes import Axes

    scales = []
    original = Axes.set_xscale
    monkeypatch.setattr(Axes, "set_xscale",
                        lambda self, value, **kw: (scales.append(value),
                                                   original(self, value, **kw))[1])
    labels = np.r_[np.zeros(2000, int), np.ones(2000, int)]
    probs = np.r_[np.full(2000, 0.01), np.full(2000, 0.99)]
    write_report(evaluate(probs, labels, ["g"] * 4000), tmp_path)
    assert scales == ["log"]
