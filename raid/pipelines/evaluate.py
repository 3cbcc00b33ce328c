"""A saved detector on a feature store (what `raid evaluate` runs, and `raid benchmark` per
setting): the store's rows scored, after checking that they were made the way the
model's training features were (`raid.pipelines.provenance`)."""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from raid.metrics.evaluation import THRESHOLD, EvaluationResult, evaluate, write_report
from raid.metrics.metrics import preload
from raid.pipelines.heldout import overlap_message, training_overlap
from raid.pipelines.provenance import check_provenance
from raid.primitives.errors import RaidError
from raid.primitives.threads import available_cpus, blas_threads
from raid.store.store import FeatureStore, Rows
from raid.svm.scorer import SvmScorer

log = logging.getLogger(__name__)


def score_store(model: str | os.PathLike, store: str | os.PathLike,
                groups: Sequence[str] | None = None, *, allow_mismatch: bool = False,
                check: bool = True, batch_size: int = 65536,
                busy: Callable[[], bool] | None = None) -> tuple[np.ndarray, Rows]:
    """P(generated) of every row of `store` (in `groups`) under the saved detector `model`
    (a model file, or a loaded `SvmScorer`/`RaidDetector`, named in messages by `path_`), read
    `batch_size` rows at a time: the rows returned carry labels, groups and keys but no
    features, so memory is bounded by one batch of features.
    Features made otherwise than the model's are refused unless `allow_mismatch`
    (`check=False`: the caller has checked already). While `busy()` is true, BLAS leaves
    one CPU to the caller's other work (see `evaluate_store`)."""
    detector = model if isinstance(model, SvmScorer) else SvmScorer.load(model)
    model = getattr(detector, "path_", None) or model
    with FeatureStore(store) as fs:
        if len(fs) == 0:
            raise RaidError("the store has no rows", store)
        if fs.dim != detector.n_features_in_:
            raise RaidError(f"feature size differs: the model expects "
                            f"{detector.n_features_in_}, the store has {fs.dim}", store)
        if check:
            check_provenance(detector, fs.provenance, store, model, allow_mismatch)
        probs, labels, names, keys, dim = [], [], [], [], fs.dim
        cpus = available_cpus()
        for batch in fs.iter_batches(batch_size, groups=groups):
            share = busy is not None and cpus > 1 and busy()
            with blas_threads(cpus - 1) if share else contextlib.nullcontext():
                probs.append(detector.predict_proba(batch.features)[:, 1])
            labels.append(batch.labels)
            names.append(batch.groups)
            keys.append(batch.keys)
    if not probs:
        raise RaidError(f"no rows in group(s) {', '.join(groups or [])}", store)
    rows = Rows(np.empty((0, dim), np.float32), np.concatenate(labels),
                np.concatenate(names), np.concatenate(keys))
    return np.concatenate(probs), rows


def evaluate_store(model: str | os.PathLike, store: str | os.PathLike,
                   out_dir: str | os.PathLike, groups: Sequence[str] | None = None, *,
                   allow_mismatch: bool = False) -> EvaluationResult:
    """Score a store with a saved detector and write the report files into `out_dir`."""
    # torchmetrics and matplotlib load on one core while the rows are scored on the others,
    # in batches small enough to take every core back once the imports are done (BLAS
    # splits a product evenly among its threads: one sharing a core with the imports
    # would hold every product back).
    imports = preload()
    detector = SvmScorer.load(model)
    detector.path_ = str(model)  # named in messages
    probs, rows = score_store(detector, store, groups, allow_mismatch=allow_mismatch,
                              batch_size=4096, busy=imports.is_alive)
    imports.join()
    result = evaluate(probs, rows.labels, list(rows.groups),
                      threshold=float(getattr(detector, "threshold_", THRESHOLD)))
    # one list item per line: markdown would join plain lines into one paragraph
    extra = [f"- Model: `{model}`", f"- Features: `{store}`"]
    warning = overlap_warning(detector, store, rows.keys)
    if warning:
        extra.append(f"- **Warning: {warning}.**")
    write_report(result, Path(out_dir), extra_lines=extra)
    return result


def overlap_warning(detector: SvmScorer, store: str | os.PathLike, keys) -> str:
    """Logs and returns the warning when rows being evaluated are training rows of the
    model (empty when none are, or when the model does not record its training rows)."""
    n = training_overlap(getattr(detector, "provenance_", None), keys)
    if not n:
        return ""
    message = overlap_message(n, len(keys), getattr(detector, "path_", "the model"), str(store))
    log.warning("warning: %s", message)
    return message
