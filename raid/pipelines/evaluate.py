"""A saved detector on a feature store (what `raid evaluate` runs, and `raid benchmark` per
setting): the store's rows scored, after checking that they were made the way the
model's training features were (`raid.pipelines.provenance`)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from raid.metrics.evaluation import EvaluationResult, evaluate, write_report
from raid.pipelines.provenance import check_provenance
from raid.primitives.errors import RaidError
from raid.store.store import FeatureStore, Rows
from raid.svm.detector import RaidDetector


def score_store(model: str | os.PathLike, store: str | os.PathLike,
                groups: Sequence[str] | None = None, *, allow_mismatch: bool = False,
                check: bool = True) -> tuple[np.ndarray, Rows]:
    """P(generated) of every row of `store` (in `groups`) under the saved detector `model`.
    Features made otherwise than the model's are refused unless `allow_mismatch`
    (`check=False`: the caller has checked already)."""
    detector = RaidDetector.load(model)
    with FeatureStore(store) as fs:
        if len(fs) == 0:
            raise RaidError("the store has no rows", store)
        if fs.dim != detector.n_features_in_:
            raise RaidError(f"feature size differs: the model expects "
                            f"{detector.n_features_in_}, the store has {fs.dim}", store)
        if check:
            check_provenance(detector, fs.provenance, store, model, allow_mismatch)
        rows = fs.read(groups=groups)
    if len(rows) == 0:
        raise RaidError(f"no rows in group(s) {', '.join(groups or [])}", store)
    return detector.predict_proba(rows.features)[:, 1], rows


def evaluate_store(model: str | os.PathLike, store: str | os.PathLike,
                   out_dir: str | os.PathLike, groups: Sequence[str] | None = None, *,
                   allow_mismatch: bool = False) -> EvaluationResult:
    """Score a store with a saved detector and write the report files into `out_dir`."""
    probs, rows = score_store(model, store, groups, allow_mismatch=allow_mismatch)
    result = evaluate(probs, rows.labels, list(rows.groups))
    write_report(result, Path(out_dir),
                 extra_lines=[f"Model: `{model}`", f"Features: `{store}`"])
    return result
