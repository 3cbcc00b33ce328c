"""Former home of the metrics and reports, kept only while callers move their imports:
the metrics live in `raid.metrics.metrics`, the report files in `raid.metrics.reports`,
and scoring a store in `raid.pipelines.evaluate`. Delete once nothing imports it."""

from __future__ import annotations

from raid.metrics.metrics import (HEADERS, METRICS, THRESHOLD, EvaluationResult, RocCurve,
                                  evaluate, percent, percent_text, predict_labels)
from raid.metrics.reports import CSV_COLUMNS, plot_sweep, write_report

__all__ = ["HEADERS", "METRICS", "THRESHOLD", "EvaluationResult", "RocCurve", "evaluate",
           "percent", "percent_text", "predict_labels", "CSV_COLUMNS", "plot_sweep",
           "write_report"]
