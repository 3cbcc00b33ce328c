"""Fitting a detector on the rows of a feature store (what `raid fit` runs). The model file
records the store's provenance, so that scoring features made otherwise is refused."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from raid.pipelines.fitcheck import check_folds, check_kernel_scale
from raid.pipelines.heldout import choose_threshold, training_overlap, training_record
from raid.pipelines.provenance import check_provenance
from raid.svm.detector import RaidDetector
from raid.primitives.errors import RaidError
from raid.primitives.layout import FAKE, REAL
from raid.store.store import FeatureStore

log = logging.getLogger(__name__)


def load_indices(path: str | os.PathLike) -> np.ndarray:
    """A 1-D integer array of feature dimensions, e.g. the seed's `important_indices.npy`."""
    try:
        indices = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise RaidError("no such file", path) from None
    except Exception as exc:  # not an .npy file at all
        raise RaidError(f"not a readable .npy file ({str(exc).splitlines()[0]})", path) from None
    if indices.ndim != 1 or not np.issubdtype(indices.dtype, np.integer) or not len(indices):
        raise RaidError(f"expected a 1-D integer array of dimensions, got {indices.dtype} "
                        f"{indices.shape}", path)
    return indices.astype(np.int64)


@dataclass
class FitSummary:
    model: Path
    n_real: int
    n_fake: int
    n_support: int
    backend: str
    seconds: float
    provenance: dict = field(default_factory=dict)  # the store's, recorded in the model
    calibration: dict | None = None  # the threshold chosen for a target FPR, if asked


def fit_store(store: str | os.PathLike, out: str | os.PathLike,
              groups: Sequence[str] | None = None, *, target_fpr: float | None = None,
              calibration_store: str | os.PathLike | None = None,
              **detector_params) -> FitSummary:
    """Fit a `RaidDetector` on the labelled rows (real and generated) of `store`, in `groups`
    (default: all), and save it to `out`. Rows of unknown label are left out. The model
    records the store's provenance and its training rows (`raid.pipelines.heldout`); with
    `target_fpr` and `calibration_store`, also the threshold chosen on the held-out rows."""
    if (target_fpr is None) != (calibration_store is None):
        raise RaidError("a target false-positive rate needs a held-out calibration store")
    with FeatureStore(store) as fs:
        if len(fs) == 0:
            raise RaidError("the store has no rows", store)
        rows = fs.read(groups=groups, labels=[REAL, FAKE])
        provenance = fs.provenance
    if len(rows) == 0:
        where = f"group(s) {', '.join(groups)}" if groups else "the store"
        raise RaidError(f"no real or generated rows in {where}", store)
    check_folds(rows.labels, detector_params.get("cv_folds", 5), store)
    indices = detector_params.get("indices")
    if indices is None or all(0 <= int(i) < rows.features.shape[1] for i in indices):
        used = rows.features if indices is None else rows.features[:, np.asarray(indices)]
        check_kernel_scale(used, detector_params.get("gamma", "auto"), store,
                           seed=detector_params.get("random_state", 0))
    detector = RaidDetector(**detector_params).fit(rows.features, rows.labels)
    recorded = {**provenance, "training": training_record(rows.keys, rows.labels)}
    calibration = None
    if target_fpr is not None:
        calibration = calibrate(detector, recorded, calibration_store, target_fpr, groups)
        detector.threshold_ = calibration["threshold"]
        recorded["calibration"] = calibration
    detector.save(out, provenance=recorded)
    n_fake = int((rows.labels == FAKE).sum())
    return FitSummary(Path(out), len(rows) - n_fake, n_fake, len(detector.support_vectors_),
                      detector.backend_, detector.fit_seconds_, provenance, calibration)


def calibrate(detector: RaidDetector, recorded: dict, store: str | os.PathLike,
              target_fpr: float, groups: Sequence[str] | None = None) -> dict:
    """The threshold for `target_fpr` on the real rows of the held-out `store` (checked
    to be made like the training features; rows the model was trained on are refused),
    with the FPR and TPR it gives there."""
    if not 0.0 < target_fpr < 1.0:
        raise RaidError(f"the target false-positive rate must lie between 0 and 1, "
                        f"got {target_fpr}")
    with FeatureStore(store) as fs:
        check_provenance(recorded, fs.provenance, store, "being fitted")
        rows = fs.read(groups=groups, labels=[REAL, FAKE])
    real = rows.labels == REAL
    if not real.any():
        raise RaidError("no real rows to choose a threshold on", store)
    overlap = training_overlap(recorded, rows.keys)
    if overlap:
        raise RaidError(f"{overlap} of its {len(rows)} rows are training rows: a threshold "
                        "must be chosen on held-out rows (see `raid split`)", store)
    if target_fpr * real.sum() < 1:
        log.warning("%s: %d real rows cannot measure a false-positive rate of %g (at least "
                    "%d are needed); the threshold lets none of them through", store,
                    real.sum(), target_fpr, int(np.ceil(1 / target_fpr)))
    probs = detector.predict_proba(rows.features)[:, 1]
    threshold = choose_threshold(probs[real], target_fpr)
    fake = ~real
    return {"target_fpr": float(target_fpr), "threshold": threshold,
            "fpr": float((probs[real] > threshold).mean()),
            "tpr": float((probs[fake] > threshold).mean()) if fake.any() else None,
            "real": int(real.sum()), "generated": int(fake.sum()),
            "store": os.path.basename(os.fspath(store))}
