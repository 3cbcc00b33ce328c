"""Per-group detection metrics: the one threshold, the one table of metric names, and their
formatting, used by every report, table and command summary.

Metrics follow the AIGCDetectBenchmark harness and the paper: per group (generator),
accuracy at the threshold, accuracy on real images, accuracy on generated images, average
precision and ROC AUC of P(generated); then the mean over groups of each metric (not a
pooled figure). An image counts as generated when P(generated) > THRESHOLD (0.5, or a
model's own threshold) *strictly*: a probability of exactly 0.5 is called real (as
torchmetrics' binary metrics do). Accuracies are exact ratios of counts; AP,
AUROC and the ROC curve come from torchmetrics in float64 (step-wise AP; trapezoidal AUROC
over the distinct thresholds, ties counted once: scikit-learn's definitions, tested).
"""

from __future__ import annotations

import importlib
import logging
import sys
import threading
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from raid.primitives.decision import THRESHOLD
from raid.primitives.errors import RaidError
from raid.primitives.layout import FAKE, REAL, UNKNOWN

log = logging.getLogger(__name__)



@dataclass(frozen=True)
class Metric:
    key: str  # the name in metrics.json and the CSV column
    header: str  # the column header of every markdown table


# The one table of metrics, in the one column order of every file and table.
METRIC_TABLE: tuple[Metric, ...] = (
    Metric("accuracy", "Accuracy"),
    Metric("real_accuracy", "Real acc."),
    Metric("fake_accuracy", "Fake acc."),
    Metric("ap", "AP"),
    Metric("auroc", "AUROC"),
    Metric("tpr_at_fpr_1pct", "TPR @ 1 % FPR"),
    Metric("tpr_at_fpr_0.1pct", "TPR @ 0.1 % FPR"),
)
#: The false-positive rates at which the true-positive rate is reported (metric key, rate).
FPR_TARGETS: tuple[tuple[str, float], ...] = (("tpr_at_fpr_1pct", 0.01),
                                             ("tpr_at_fpr_0.1pct", 0.001))
METRICS: tuple[str, ...] = tuple(m.key for m in METRIC_TABLE)
HEADERS: dict[str, str] = {m.key: m.header for m in METRIC_TABLE}


def percent(value: float | None) -> str:
    """A metric as a table cell: "99.25" (percent, 2 decimals), "–" when undefined."""
    return "–" if value is None else f"{100.0 * value:.2f}"


def percent_text(value: float | None) -> str:
    """A metric in a sentence: "99.25 %", "n/a" when undefined."""
    return "n/a" if value is None else f"{100.0 * value:.2f} %"


@dataclass(frozen=True)
class RocCurve:
    """ROC corner points of one group (false-positive rate, true-positive rate) and its
    AUROC. Points inside straight segments are dropped: the curve drawn is the same."""

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
    threshold: the P(generated) above which an image was called generated.
    """

    metrics: dict
    notes: dict[str, list[str]] = field(default_factory=dict)
    curves: dict[str, RocCurve] = field(default_factory=dict)
    n_unknown: int = 0
    threshold: float = THRESHOLD

    @property
    def groups(self) -> list[str]:
        return list(self.metrics["groups"])

    def skipped(self) -> list[str]:
        """Groups without a ROC curve (one class only)."""
        return [g for g in self.metrics["groups"] if g not in self.curves]


def predict_labels(probs: np.ndarray, threshold: float = THRESHOLD) -> np.ndarray:
    """Hard labels: 1 (generated) where P(generated) > threshold, else 0 (real)."""
    return (np.asarray(probs, dtype=np.float64) > threshold).astype(np.int64)


def evaluate(probs: np.ndarray, labels: np.ndarray, groups: Sequence[str],
             threshold: float = THRESHOLD) -> EvaluationResult:
    """Metrics per group (in order of first appearance) and their means over groups.

    probs: P(generated) in [0, 1], shape (n,). labels: 0 real, 1 generated, -1 unknown
    (left out and counted). groups: one group name per row. threshold: accuracies call an
    image generated when P(generated) > threshold (a model may carry its own).
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
    if not 0.0 <= threshold < 1.0:
        raise RaidError(f"evaluate: threshold must lie in [0, 1), got {threshold!r}")
    bad = ~np.isin(labels, (REAL, FAKE, UNKNOWN))
    if bad.any():
        raise RaidError(f"evaluate: label {labels[bad][0].item()!r} is not 0 (real), "
                        "1 (generated) or -1 (unknown)")
    labels = labels.astype(np.int64)
    known = labels != UNKNOWN
    n_unknown = int((~known).sum())
    if not known.any():
        raise RaidError(f"evaluate: all {n_unknown} images have an unknown label "
                        "(no 0_real / 1_fake folder above them); nothing to score")
    if n_unknown:
        log.warning("evaluate: %d of %d images have an unknown label and are left out",
                    n_unknown, len(labels))

    codes: dict[str, int] = {}
    group_code = np.fromiter((codes.setdefault(g, len(codes)) for g in groups), np.int64,
                             len(groups))
    per_group: dict[str, dict] = {}
    notes: dict[str, list[str]] = {}
    curves: dict[str, RocCurve] = {}
    for name, code in codes.items():
        rows = known & (group_code == code)
        if not rows.any():
            continue
        metrics, group_notes, curve = _group_metrics(probs[rows], labels[rows], threshold)
        per_group[name] = metrics
        if group_notes:
            notes[name] = group_notes
        if curve is not None:
            curves[name] = curve

    mean: dict[str, float | None] = {}
    for metric in METRICS:
        values = [m[metric] for m in per_group.values() if m[metric] is not None]
        mean[metric] = float(np.mean(values)) if values else None
    return EvaluationResult({"groups": per_group, "mean": mean}, notes, curves, n_unknown,
                            float(threshold))


def _group_metrics(probs: np.ndarray, labels: np.ndarray,
                   threshold: float) -> tuple[dict, list[str], RocCurve | None]:
    preds = predict_labels(probs, threshold)
    fake = labels == FAKE
    tp = int(np.count_nonzero(preds[fake]))
    n_fake = int(np.count_nonzero(fake))
    n_real = len(labels) - n_fake
    tn = n_real - int(np.count_nonzero(preds[~fake]))
    out: dict = {"n": int(len(labels)), "accuracy": (tp + tn) / len(labels),
                 "real_accuracy": tn / n_real if n_real else None,
                 "fake_accuracy": tp / n_fake if n_fake else None}
    notes: list[str] = []
    curve = None
    if n_real and n_fake:
        out["ap"], out["auroc"], fpr, tpr = _curve_metrics(probs, fake)
        # Corners from the integer counts behind each rate, so "turns" are exact.
        keep = _corners(np.rint(fpr * n_real), np.rint(tpr * n_fake))
        curve = RocCurve(fpr[keep], tpr[keep], out["auroc"])
        for key, target in FPR_TARGETS:
            out[key] = tpr_at_fpr(fpr, tpr, target, n_real)
    else:
        out["ap"] = out["auroc"] = None
        for key, _ in FPR_TARGETS:
            out[key] = None
        present, missing = ("real", "generated") if n_real else ("generated", "real")
        missing_acc = "fake_accuracy" if n_real else "real_accuracy"
        notes.append(f"only {present} images ({out['n']}): AP, AUROC and {missing_acc} "
                     f"are undefined without {missing} images")
    return out, notes, curve


def tpr_at_fpr(fpr: np.ndarray, tpr: np.ndarray, target: float, n_real: int) -> float | None:
    """The highest true-positive rate of a threshold whose false-positive rate is at most
    `target`; None when `n_real` real images cannot measure that rate (fewer than 1/target)."""
    if n_real * target < 1 - 1e-9:
        return None
    return float(tpr[fpr <= target + 1e-12].max())


#: What drawing metrics and plots imports: torchmetrics (with torch and SciPy, about 1.5 s
#: on 2 cores) and matplotlib's Agg canvas.
METRIC_MODULES = ("torchmetrics.functional.classification", "matplotlib.backends.backend_agg",
                  "matplotlib.figure")


def preload() -> threading.Thread:
    """Start importing `METRIC_MODULES` on a thread and return it (join before use).

    For callers that first score (BLAS, which releases the GIL): the imports then overlap
    the scoring instead of following it. An import that fails here is left for the
    caller's own import to report."""
    def run() -> None:
        # Hand the GIL back often: the caller's Python between two BLAS calls would
        # otherwise wait up to 5 ms (the default switch interval) each time.
        switch = sys.getswitchinterval()
        sys.setswitchinterval(1e-4)
        try:
            for name in METRIC_MODULES:
                importlib.import_module(name)
        except Exception:  # reported by the real import later
            pass
        finally:
            sys.setswitchinterval(switch)
    thread = threading.Thread(target=run, name="raid-metric-imports", daemon=True)
    thread.start()
    return thread


def _curve_metrics(probs: np.ndarray,
                   fake: np.ndarray) -> tuple[float, float, np.ndarray, np.ndarray]:
    """AP, AUROC and the ROC points (from (0, 0), one per distinct score) by torchmetrics,
    in float64; imported here so that commands which draw no metrics never pay for it."""
    import torch
    from torchmetrics.functional.classification import (binary_auroc,
                                                        binary_average_precision, binary_roc)

    preds = torch.from_numpy(np.ascontiguousarray(probs, dtype=np.float64))
    target = torch.from_numpy(fake.astype(np.int64))
    fpr, tpr, _ = binary_roc(preds, target, validate_args=False)
    ap = binary_average_precision(preds, target, validate_args=False)
    auroc = binary_auroc(preds, target, validate_args=False)
    return (float(ap), float(auroc), fpr.double().numpy(), tpr.double().numpy())


def _corners(fps: np.ndarray, tps: np.ndarray) -> np.ndarray:
    """Indices of the points where the curve turns (ends included), from integer counts."""
    turn = np.logical_or(np.diff(fps, 2) != 0, np.diff(tps, 2) != 0)
    return np.flatnonzero(np.r_[True, turn, True])
