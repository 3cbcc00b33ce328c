"""Fitting a detector on the rows of a feature store (what `raid fit` runs). The model file
records the store's provenance, so that scoring features made otherwise is refused."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

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


def fit_store(store: str | os.PathLike, out: str | os.PathLike,
              groups: Sequence[str] | None = None, **detector_params) -> FitSummary:
    """Fit a `RaidDetector` on the labelled rows (real and generated) of `store`, in `groups`
    (default: all), and save it to `out`. Rows of unknown label are left out."""
    with FeatureStore(store) as fs:
        if len(fs) == 0:
            raise RaidError("the store has no rows", store)
        rows = fs.read(groups=groups, labels=[REAL, FAKE])
        provenance = fs.provenance
    if len(rows) == 0:
        where = f"group(s) {', '.join(groups)}" if groups else "the store"
        raise RaidError(f"no real or generated rows in {where}", store)
    detector = RaidDetector(**detector_params).fit(rows.features, rows.labels)
    detector.save(out, provenance=provenance)
    n_fake = int((rows.labels == FAKE).sum())
    return FitSummary(Path(out), len(rows) - n_fake, n_fake, len(detector.support_vectors_),
                      detector.backend_, detector.fit_seconds_, provenance)
