"""raid.metrics.reports: the report files (JSON, CSV, markdown, ROC plot) and the
robustness plot."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from PIL import Image

from raid.metrics.metrics import HEADERS, METRICS, EvaluationResult, evaluate
from raid.metrics.reports import plot_sweep, write_report
from raid.primitives.errors import RaidError
from test_metrics import synthetic_scores

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def test_write_report_files(tmp_path):
    probs, labels, groups = synthetic_scores(seed=1, n=200)
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
    assert "| Group | n | " + " | ".join(HEADERS[k] for k in METRICS) + " |" in md
    acc = result.metrics["groups"]["progan"]["accuracy"]
    assert f"| progan | {result.metrics['groups']['progan']['n']} | {100 * acc:.2f} |" in md
    assert f"**{100 * result.metrics['mean']['accuracy']:.2f}**" in md
    assert "flux: only generated images" in md
    assert "3 images with an unknown label" in md
    assert "provenance: unit test" in md
    assert "P(generated) > 0.5." in md

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


def test_group_named_mean_is_not_bolded_as_the_mean_row(tmp_path):
    result = evaluate(np.array([0.9, 0.1, 0.8, 0.3]), np.array([1, 0, 1, 0]),
                      ["mean", "mean", "b", "b"])
    md = write_report(result, tmp_path)["markdown"].read_text()
    assert "| mean | 2 | 100.00 |" in md
    assert md.count("| **mean** |") == 1


def test_roc_png_size_is_fixed(tmp_path):
    """One render at a fixed size and 100 dpi (no tight-bbox second pass)."""
    probs, labels, groups = synthetic_scores(seed=2, n=300)
    path = write_report(evaluate(probs, labels, groups), tmp_path)["roc"]
    with Image.open(path) as im:
        assert im.size == (700, 600)
