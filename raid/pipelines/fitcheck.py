"""Checks of the training rows before `raid fit` spends time on them.

The SVM's RBF kernel exp(-gamma * |x - y|^2) only works when gamma times the typical
squared distance between rows is of order one (RAID's AIM features with gamma "auto": about
1.4 on the seed's training features). Far above, every kernel value between two rows rounds
to 0: every row becomes a support vector and the model answers 0.5 for every image; far
below, every value rounds to 1 and nothing separates the classes; values near 1e20 overflow
the float32 kernel and the solver fails. Nothing is standardised silently: such features are
refused by name, with what to do. The Platt calibration splits the rows into stratified
folds, so each class needs at least as many rows as folds.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from raid.primitives.errors import RaidError
from raid.svm.validation import resolve_gamma

#: Median of gamma * squared distance outside which the kernel is degenerate:
#: exp(-50) ~ 2e-22 (zero next to the diagonal's 1); 1 - 1e-5 is a few float32 steps from 1.
MAX_SCALED_DISTANCE = 50.0
MIN_SCALED_DISTANCE = 1e-5
#: Largest |value| * sqrt(n_features) whose squared distances stay far inside float32.
MAX_NORM = 1e18
SAMPLE_PAIRS = 4096


def check_kernel_scale(X: np.ndarray, gamma: Any, where: str | os.PathLike,
                       seed: int = 0) -> float:
    """Refuse features the RBF kernel cannot use (see the module docstring); returns the
    median of gamma * squared distance over a seeded sample of row pairs."""
    n, d = X.shape
    hi, lo = (X.max(axis=0), X.min(axis=0)) if n else (np.zeros(d), np.zeros(d))
    if n > 1 and not (hi - lo).any():
        raise RaidError(f"every one of the {d} features has the same value in all {n} rows: "
                        "the SVM can only fit a chance-level model; check how the features "
                        "were made (a broken checkpoint or the same image again?)", where)
    peak = float(max(np.abs(hi).max(), np.abs(lo).max())) if X.size else 0.0
    if peak * np.sqrt(d) > MAX_NORM:
        raise RaidError(f"feature values reach {peak:.3g}: squared distances overflow the "
                        "RBF kernel; rescale the features (RAID's AIM features are of order "
                        "1), e.g. divide them by a constant before importing", where)
    g = resolve_gamma(gamma, X)
    rng = np.random.default_rng(seed)
    i = rng.integers(0, n, SAMPLE_PAIRS)
    j = (i + rng.integers(1, n, SAMPLE_PAIRS)) % n  # another row, never the same one
    diff = X[i].astype(np.float64) - X[j].astype(np.float64)
    scaled = float(np.median(g * np.einsum("ij,ij->i", diff, diff)))
    fix = ("rescale the features to values of order 1, or pass --gamma scale "
           "(1 / (n_features * variance)) or a suitable --gamma")
    if scaled > MAX_SCALED_DISTANCE:
        raise RaidError(f"with gamma {g:.3g} the RBF kernel between two rows is about "
                        f"exp(-{scaled:.3g}), i.e. 0: every row would be a support vector and "
                        f"every image would score 0.5; {fix}", where)
    if scaled < MIN_SCALED_DISTANCE:
        raise RaidError(f"with gamma {g:.3g} the RBF kernel between two rows is about "
                        f"exp(-{scaled:.3g}), i.e. 1: the rows cannot be told apart and the "
                        f"model would be at chance level; {fix}", where)
    return scaled


def check_folds(labels: np.ndarray, cv_folds: int, where: str | os.PathLike) -> None:
    """Each class needs at least `cv_folds` rows (and at least 2) for the calibration."""
    counts = {"real": int((labels == 0).sum()), "generated": int((labels == 1).sum())}
    name, smallest = min(counts.items(), key=lambda kv: kv[1])
    if smallest < 2:
        raise RaidError(f"{counts['real']} real and {counts['generated']} generated rows: "
                        "fitting needs at least 2 rows of each class (more for a useful model)",
                        where)
    if smallest < cv_folds:
        raise RaidError(f"only {smallest} {name} rows for {cv_folds} calibration folds (each "
                        f"fold needs rows of both classes): add rows, or lower --cv-folds "
                        f"(2 to {smallest})", where)
