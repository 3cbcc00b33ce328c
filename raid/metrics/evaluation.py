"""Per-group detection metrics and the report files a person reads.

Metrics follow the AIGCDetectBenchmark harness and the paper: per group (generator),
accuracy at threshold 0.5, accuracy on real images, accuracy on generated images, average
precision and ROC AUC of P(generated); then the mean over groups of each metric (not a
pooled figure). An image counts as generated when P(generated) > 0.5 *strictly*: a
probability of exactly 0.5 is called real. The threshold is applied here and torchmetrics
counts the hard labels (`binary_stat_scores`), so the rule does not depend on torchmetrics'
own thresholding and the accuracies are exact ratios of counts; AP and AUROC get the
probabilities themselves (torchmetrics computes them in float32: they agree with
scikit-learn to about 1e-7).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from torchmetrics.functional.classification import (
    binary_auroc,
    binary_average_precision,
    binary_roc,
    binary_stat_scores,
)

from raid.primitives.errors import RaidError
from raid.primitives.fileio import write_bytes
from raid.primitives.layout import FAKE, REAL, UNKNOWN

log = logging.getLogger(__name__)

THRESHOLD = 0.5
METRICS: tuple[str, ...] = ("accuracy", "real_accuracy", "fake_accuracy", "ap", "auroc")
CSV_COLUMNS: tuple[str, ...] = ("group", "n") + METRICS
_HEADERS = {"accuracy": "Accuracy", "real_accuracy": "Real acc.", "fake_accuracy": "Fake acc.",
            "ap": "AP", "auroc": "AUROC"}


@dataclass(frozen=True)
class RocCurve:
    """ROC points of one group (false-positive rate, true-positive rate) and its AUROC."""

    fpr: np.ndarray
    tpr: np.ndarray
    auroc: float


@dataclass
class EvaluationResult:
    """What `evaluate` found.

    metrics: the JSON-able dict ``{"groups": {name: {"n", <METRICS>}}, "mean": {<METRICS>}}``
        (floats in [0, 1], None where undefined), written as is to metrics.json.
    notes: per group, why some metrics are missing (only groups with missing metrics).
    curves: ROC curves of the groups that have both classes.
    n_unknown: rows left out because their label is unknown (-1).
    """

    metrics: dict
    notes: dict[str, list[str]] = field(default_factory=dict)
    curves: dict[str, RocCurve] = field(default_factory=dict)
    n_unknown: int = 0

    @property
    def groups(self) -> list[str]:
        return list(self.metrics["groups"])

    def skipped(self) -> list[str]:
        """Groups without a ROC curve (one class only)."""
        return [g for g in self.metrics["groups"] if g not in self.curves]


def predict_labels(probs: np.ndarray) -> np.ndarray:
    """Hard labels: 1 (generated) where P(generated) > 0.5, else 0 (real)."""
    return (np.asarray(probs, dtype=np.float64) > THRESHOLD).astype(np.int64)


def evaluate(probs: np.ndarray, labels: np.ndarray, groups: Sequence[str]) -> EvaluationResult:
    """Metrics per group (in order of first appearance) and their means over groups.

    probs: P(generated) in [0, 1], shape (n,). labels: 0 real, 1 generated, -1 unknown
    (left out and counted). groups: one group name per row.
    """
    probs = np.asarray(probs, dtype=np.float64).reshape(-1)
    labels = np.asarray(labels).reshape(-1)
    groups = [str(g) for g in groups]
    if not (len(probs) == len(labels) == len(groups)):
        raise RaidError(f"evaluate: {len(probs)} probabilities, {len(labels)} labels and "
                        f"{len(groups)} groups; expected one of each per image")
    if len(probs) == 0:
        raise RaidError("evaluate: no images to evaluate")
    if not np.all(np.isfinite(probs)) or probs.min() < 0 or probs.max() > 1:
        raise RaidError("evaluate: probabilities must be finite and in [0, 1] "
                        "(give P(generated), not raw SVM margins)")
    bad = ~np.isin(labels, (REAL, FAKE, UNKNOWN))
    if bad.any():
        raise RaidError(f"evaluate: label {labels[bad][0].item()!r} is not 0 (real), 1 (generated) or -1 (unknown)")
    labels = labels.astype(np.int64)
    known = labels != UNKNOWN
    n_unknown = int((~known).sum())
    if not known.any():
        raise RaidError(f"evaluate: all {n_unknown} images have an unknown label "
                        "(no 0_real / 1_fake folder above them); nothing to score")
    if n_unknown:
        log.warning("evaluate: %d of %d images have an unknown label and are left out",
                    n_unknown, len(labels))

    group_arr = np.asarray(groups, dtype=object)
    preds = predict_labels(probs)
    per_group: dict[str, dict] = {}
    notes: dict[str, list[str]] = {}
    curves: dict[str, RocCurve] = {}
    for name in dict.fromkeys(g for g, k in zip(groups, known) if k):
        rows = known & (group_arr == name)
        metrics, group_notes, curve = _group_metrics(probs[rows], preds[rows], labels[rows])
        per_group[name] = metrics
        if group_notes:
            notes[name] = group_notes
        if curve is not None:
            curves[name] = curve

    mean: dict[str, float | None] = {}
    for metric in METRICS:
        values = [m[metric] for m in per_group.values() if m[metric] is not None]
        mean[metric] = float(np.mean(values)) if values else None
    return EvaluationResult({"groups": per_group, "mean": mean}, notes, curves, n_unknown)


def _group_metrics(probs: np.ndarray, preds: np.ndarray, labels: np.ndarray
                   ) -> tuple[dict, list[str], RocCurve | None]:
    p = torch.from_numpy(probs)  # float64: no ties introduced by rounding to float32
    y = torch.from_numpy(labels)
    hard = torch.from_numpy(preds)
    # counts at the strict > 0.5 rule; accuracies are exact ratios of these integers
    tp, fp, tn, fn, _ = (int(v) for v in binary_stat_scores(hard, y))
    n_real, n_fake = tn + fp, tp + fn
    out: dict = {"n": int(len(labels)), "accuracy": (tp + tn) / (n_real + n_fake),
                 "real_accuracy": tn / n_real if n_real else None,
                 "fake_accuracy": tp / n_fake if n_fake else None}
    notes: list[str] = []
    curve = None
    if n_real and n_fake:
        out["ap"] = _item(binary_average_precision(p, y))
        out["auroc"] = _item(binary_auroc(p, y))
        fpr, tpr, _ = binary_roc(p, y)
        curve = RocCurve(fpr.numpy().copy(), tpr.numpy().copy(), out["auroc"])
    else:
        out["ap"] = out["auroc"] = None
        present, missing = ("real", "generated") if n_real else ("generated", "real")
        missing_acc = "fake_accuracy" if n_real else "real_accuracy"
        notes.append(f"only {present} images ({out['n']}): AP, AUROC and {missing_acc} "
                     f"are undefined without {missing} images")
    return out, notes, curve


def _item(value: torch.Tensor) -> float:
    return float(value.item())


# --------------------------------------------------------------------------- report files

def write_report(result: EvaluationResult, out_dir: str | Path, *, title: str = "RAID evaluation",
                 extra_lines: Sequence[str] = ()) -> dict[str, Path]:
    """Write metrics.json, metrics.csv, report.md and roc.png into `out_dir` (created).

    Every file is rendered in memory first and then written to a temporary file beside
    its target and moved into place, so an interrupted run leaves no half-written file.
    Returns ``{"json", "csv", "markdown", "roc"}`` -> path.
    """
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RaidError(f"cannot create the report folder: {exc.strerror}", out_dir) from None
    contents = {
        "json": ("metrics.json", (json.dumps(result.metrics, indent=2) + "\n").encode("utf-8")),
        "csv": ("metrics.csv", _csv_bytes(result)),
        "markdown": ("report.md", _markdown(result, title, extra_lines).encode("utf-8")),
        "roc": ("roc.png", _roc_png(result, title)),
    }
    paths: dict[str, Path] = {}
    for key, (name, data) in contents.items():
        paths[key] = out_dir / name
        write_bytes(paths[key], data)
    return paths


def _rows(result: EvaluationResult) -> Iterable[tuple[str, int | None, Mapping]]:
    for name, m in result.metrics["groups"].items():
        yield name, m["n"], m
    n_total = sum(m["n"] for m in result.metrics["groups"].values())
    yield "mean", n_total, result.metrics["mean"]


def _csv_bytes(result: EvaluationResult) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for name, n, m in _rows(result):
        # repr keeps full precision; an empty cell means undefined
        writer.writerow([name, n] + ["" if m[k] is None else repr(float(m[k])) for k in METRICS])
    return buffer.getvalue().encode("utf-8")


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100.0 * value:.2f}"


def _md_cell(text: str) -> str:
    return str(text).replace("|", "\\|")


def _markdown(result: EvaluationResult, title: str, extra_lines: Sequence[str]) -> str:
    lines = [f"# {title}", "",
             "Metrics in percent. An image is called generated when P(generated) > 0.5. "
             "The mean row averages each metric over the groups where it is defined.", ""]
    lines.append("| Group | n | " + " | ".join(_HEADERS[k] for k in METRICS) + " |")
    lines.append("|---|---:|" + "---:|" * len(METRICS))
    for name, n, m in _rows(result):
        cells = [_pct(m[k]) for k in METRICS]
        if name == "mean" and m is result.metrics["mean"]:
            lines.append(f"| **mean** | {n} | " + " | ".join(f"**{c}**" for c in cells) + " |")
        else:
            lines.append(f"| {_md_cell(name)} | {n} | " + " | ".join(cells) + " |")
    lines.append("")
    if result.notes or result.n_unknown:
        lines += ["## Notes", ""]
        for name, group_notes in result.notes.items():
            lines += [f"- {_md_cell(name)}: {note}" for note in group_notes]
        if result.n_unknown:
            lines.append(f"- {result.n_unknown} images with an unknown label (no 0_real / 1_fake "
                         "folder) were left out.")
        lines.append("")
    if extra_lines:
        lines += list(extra_lines) + [""]
    return "\n".join(lines)


def _png_bytes(fig: Figure) -> bytes:
    FigureCanvasAgg(fig)  # Agg canvas without pyplot: no global state, no display needed
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120, bbox_inches="tight")
    return buffer.getvalue()


def _roc_png(result: EvaluationResult, title: str) -> bytes:
    fig = Figure(figsize=(7, 6))
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], linestyle="--", color="0.6", linewidth=1)
    for name, curve in result.curves.items():
        ax.plot(curve.fpr, curve.tpr, linewidth=1.3, label=f"{name} (AUROC {100 * curve.auroc:.2f})")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.set_xlabel("false-positive rate (real called generated)")
    ax.set_ylabel("true-positive rate (generated detected)")
    ax.set_title(title)
    if result.curves:
        ax.legend(loc="lower right", fontsize="small" if len(result.curves) <= 10 else "x-small")
    skipped = result.skipped()
    if skipped:
        fig.text(0.01, 0.005, "skipped (one class only): " + ", ".join(skipped),
                 fontsize="small", va="bottom", wrap=True)
    return _png_bytes(fig)


_SWEEP_AXES = {"jpeg": "JPEG quality", "blur": "blur sigma (pixels)",
               "noise": "noise sigma ([0, 1] scale)", "resize": "scale factor",
               "crop": "kept fraction of each side"}


def plot_sweep(rows: Iterable[tuple[str, float, float | None]], out_path: str | Path,
               *, title: str = "Robustness") -> Path:
    """Plot mean accuracy against perturbation strength, one line per perturbation kind.

    rows: (kind, strength, mean accuracy in [0, 1] or None). Each kind gets its own panel
    (their strengths have different units: JPEG quality, sigma, factor) with a shared
    accuracy axis; rows of kind "clean" are drawn as a dashed reference line in every panel.
    Written atomically; returns the path.
    """
    out_path = Path(out_path)
    by_kind: dict[str, list[tuple[float, float]]] = {}
    clean: list[float] = []
    for kind, strength, accuracy in rows:
        if accuracy is None or not math.isfinite(float(accuracy)):
            continue
        if kind == "clean":
            clean.append(float(accuracy))
        else:
            by_kind.setdefault(str(kind), []).append((float(strength), float(accuracy)))
    if not by_kind:
        raise RaidError("no perturbed results to plot", out_path)
    fig = Figure(figsize=(4 * len(by_kind) + 1, 4))
    axes = fig.subplots(1, len(by_kind), sharey=True, squeeze=False)[0]
    for ax, (kind, points) in zip(axes, by_kind.items()):
        points.sort()
        ax.plot([s for s, _ in points], [100 * a for _, a in points], marker="o", label=kind)
        if clean:
            ax.axhline(100 * float(np.mean(clean)), linestyle="--", color="0.5", label="clean")
        ax.set_xlabel(_SWEEP_AXES.get(kind, f"{kind} setting"))
        if kind in ("jpeg", "resize", "crop"):
            ax.invert_xaxis()  # smaller values are stronger: stronger to the right everywhere
        ax.set_title(kind)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="small")
    axes[0].set_ylabel("mean accuracy (%)")
    fig.suptitle(title)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    write_bytes(out_path, _png_bytes(fig))
    return out_path


# --------------------------------------------------------------------------- from a store

def score_store(model: str | Path, store: str | Path,
                groups: Sequence[str] | None = None) -> tuple[np.ndarray, "Rows"]:
    """P(generated) of every row of `store` (in `groups`) under the saved detector `model`."""
    from raid.svm.detector import RaidDetector
    from raid.store.store import FeatureStore

    detector = RaidDetector.load(model)
    with FeatureStore(store) as fs:
        if len(fs) == 0:
            raise RaidError("the store has no rows", store)
        if fs.dim != detector.n_features_in_:
            raise RaidError(f"feature size differs: the model expects "
                            f"{detector.n_features_in_}, the store has {fs.dim}", store)
        rows = fs.read(groups=groups)
    if len(rows) == 0:
        raise RaidError(f"no rows in group(s) {', '.join(groups or [])}", store)
    return detector.predict_proba(rows.features)[:, 1], rows


def evaluate_store(model: str | Path, store: str | Path, out_dir: str | Path,
                   groups: Sequence[str] | None = None) -> EvaluationResult:
    """Score a store with a saved detector and write the report files into `out_dir`."""
    probs, rows = score_store(model, store, groups)
    result = evaluate(probs, rows.labels, list(rows.groups))
    write_report(result, out_dir, extra_lines=[f"Model: `{model}`", f"Features: `{store}`"])
    return result
