"""Checks of what callers hand the detector: feature arrays, labels, dimension indices and
parameters. Every failure is a `RaidInputError` (a `ValueError`) with a one-line reason.
Importing this module does not import scikit-learn (scoring does not need it)."""

from __future__ import annotations

from typing import Any

import numpy as np

from raid.primitives.errors import RaidInputError

BACKENDS = ("auto", "sklearn", "cuml")


def check_X(X: Any, what: str = "X") -> np.ndarray:
    """A finite, non-empty, dense 2-D float32 array."""
    if hasattr(X, "toarray") or hasattr(X, "tocsr"):  # scipy.sparse matrices and arrays
        raise RaidInputError(f"{what} is sparse: sparse input is not supported, "
                             f"pass a dense array")
    try:
        arr = np.asarray(X)
        if np.iscomplexobj(arr):
            raise RaidInputError(f"{what}: Complex data not supported")
        arr = arr.astype(np.float32, copy=False)
    except (TypeError, ValueError) as exc:
        if isinstance(exc, RaidInputError):
            raise
        raise RaidInputError(f"{what} is not a numeric array ({exc})") from None
    if arr.ndim != 2:
        raise RaidInputError(f"{what} must be a 2-D array (n_samples, n_features), got shape "
                             f"{arr.shape}. Reshape your data, e.g. with x.reshape(1, -1) "
                             f"for one sample")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        kind = "sample" if arr.shape[0] == 0 else "feature"
        raise RaidInputError(f"{what} is empty: 0 {kind}(s) (shape={arr.shape}) while a "
                             f"minimum of 1 is required.")
    bad = ~np.isfinite(arr).all(axis=1)
    if bad.any():
        rows = np.flatnonzero(bad)
        raise RaidInputError(f"{what} has NaN or infinite features in {len(rows)} of "
                             f"{len(arr)} rows (first at row {rows[0]})")
    return arr


def check_y(y: Any, n: int) -> np.ndarray:
    """Labels 0 (real) and 1 (generated), both present, one per row of X.

    A column vector is accepted with scikit-learn's `DataConversionWarning`; other labels
    are refused (a store's -1, "unknown", must never be trained on as a class).
    """
    from sklearn.utils.multiclass import type_of_target
    from sklearn.utils.validation import column_or_1d

    if y is None:
        raise RaidInputError("RaidDetector requires y to be passed, but the target y is None")
    try:
        arr = column_or_1d(np.asarray(y), warn=True)
        if arr.dtype.kind in "fc" and not np.isfinite(arr).all():
            raise RaidInputError("labels y contain NaN or infinity")
        kind = type_of_target(arr, input_name="y", raise_unknown=True)
    except ValueError as exc:
        if isinstance(exc, RaidInputError):
            raise
        raise RaidInputError(f"bad labels y of shape {np.shape(y)}: {exc}") from None
    if len(arr) != n:
        raise RaidInputError(f"X has {n} rows but y has {len(arr)} labels")
    values = set(np.unique(arr).tolist())
    shown = sorted(values, key=repr)[:5]
    if kind.startswith("continuous"):
        raise RaidInputError(f"Unknown label type: continuous; labels must be 0 (real) or "
                             f"1 (generated), got {shown}")
    if kind == "multiclass":
        raise RaidInputError(f"Only binary classification is supported: labels must be "
                             f"0 (real) or 1 (generated), got {shown}")
    if not values <= {0, 1}:
        raise RaidInputError(f"labels must be 0 (real) or 1 (generated), got {shown}")
    if len(values) < 2:
        only = "real (0)" if values == {0} else "generated (1)"
        raise RaidInputError(f"training needs both classes (one class found): got only "
                             f"{only} labels")
    return arr.astype(np.int64)


def check_indices(indices: Any, n_features: int | None = None) -> np.ndarray | None:
    """None, or distinct integer dimensions in [0, n_features)."""
    if indices is None:
        return None
    arr = np.asarray(indices)
    if arr.ndim != 1 or arr.size == 0 or not np.issubdtype(arr.dtype, np.integer):
        raise RaidInputError(f"indices must be a non-empty 1-D integer array, got "
                             f"{arr.dtype} {arr.shape}")
    if len(np.unique(arr)) != len(arr):
        raise RaidInputError("indices contain duplicates")
    if n_features is not None and (arr.min() < 0 or arr.max() >= n_features):
        raise RaidInputError(f"indices must lie in [0, {n_features}), got "
                             f"[{arr.min()}, {arr.max()}]")
    return arr.astype(np.int64)


def resolve_gamma(gamma: Any, X: np.ndarray) -> float:
    """"auto" = 1 / n_features, "scale" = 1 / (n_features * X.var()), or a positive number."""
    if isinstance(gamma, str):
        if gamma == "auto":
            return 1.0 / X.shape[1]
        if gamma == "scale":
            var = float(X.var(dtype=np.float64))
            return 1.0 / (X.shape[1] * var) if var > 0 else 1.0
        raise RaidInputError(f"gamma must be 'auto', 'scale' or a positive number, got {gamma!r}")
    try:
        value = float(gamma)
    except (TypeError, ValueError):
        raise RaidInputError(f"gamma must be 'auto', 'scale' or a positive number, "
                             f"got {gamma!r}") from None
    if not np.isfinite(value) or value <= 0:
        raise RaidInputError(f"gamma must be positive, got {gamma!r}")
    return value


def check_params(C: Any, cv_folds: Any, threshold: Any, backend: Any, y: np.ndarray) -> None:
    """The parameters `fit` needs beyond gamma and indices."""
    if isinstance(C, bool) or not (isinstance(C, (int, float, np.number)) and C > 0):
        raise RaidInputError(f"C must be a positive number, got {C!r}")
    n_min = int(np.bincount(y, minlength=2).min())
    if isinstance(cv_folds, bool) or not (isinstance(cv_folds, (int, np.integer))
                                          and 2 <= cv_folds <= n_min):
        raise RaidInputError(f"cv_folds must be an integer between 2 and the smaller class "
                             f"size ({n_min}), got {cv_folds!r}")
    if isinstance(threshold, bool) or not (isinstance(threshold, (int, float, np.number))
                                           and 0.0 < threshold < 1.0):
        raise RaidInputError(f"threshold must be a probability in (0, 1), got {threshold!r}")
    if backend not in BACKENDS:
        raise RaidInputError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
