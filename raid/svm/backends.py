"""Training backends: each fits one SVM on a subset of rows and returns plain arrays.

- precomputed (scikit-learn, CPU): libsvm gets rows of a Gram matrix RAID computed once,
  so the solver does lookups instead of re-evaluating high-dimensional dot products; the
  calibration folds gather their sub-matrices from that one matrix (`precomputed_fits`).
- rbf (scikit-learn, CPU): plain `SVC(kernel="rbf")`, for Gram matrices beyond the memory limit.
- cuml (GPU): `cuml.svm.SVC(kernel="rbf")`.

A fit returns (support, dual_coef, intercept): the support rows' positions within the
rows fitted, y_i alpha_i, and b, with decision = K(x, SV) @ dual_coef + b > 0 for label 1.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Iterator

import numpy as np

from raid.primitives.errors import RaidInputError

logger = logging.getLogger(__name__)

Fit = tuple[np.ndarray, np.ndarray, float]
FitOne = Callable[[np.ndarray], Fit]  # training rows -> Fit


def cuml_available() -> bool:
    """True when cuML imports and a CUDA device is present."""
    try:
        import cuml.svm  # noqa: F401
    except Exception:  # ImportError, or a broken CUDA install raising at import
        return False
    import torch

    return torch.cuda.is_available()


def resolve_backend(backend: str) -> str:
    """"auto" -> "cuml" when available, else "sklearn"; "cuml" without cuML is refused."""
    if backend == "cuml":
        if not cuml_available():
            raise RaidInputError("backend 'cuml' needs cuML and a CUDA device "
                                 "(pip install -e '.[gpu]'); use backend 'sklearn'")
        choice = "cuml"
    elif backend == "auto":
        choice = "cuml" if cuml_available() else "sklearn"
    else:
        choice = "sklearn"
    logger.info("SVM backend: %s (asked for %s)", choice, backend)
    return choice


GATHER_ROWS = 256  # rows of a fold's sub-matrix gathered at once (cache-friendly strips)


def precomputed_fits(gram: np.ndarray, y: np.ndarray, jobs: list[np.ndarray], C: float,
                     tol: float, prefetch: bool = True) -> Iterator[Fit]:
    """libsvm on rows of `gram` (float64, C-contiguous), one fit per job in order: the
    whole matrix, or a fold's sub-matrix gathered from it.

    The solves run one after another: two side by side took longer than in turn on 2
    cores (they share the memory bandwidth). With `prefetch`, the next fold's sub-matrix
    is gathered on another thread while the current one solves; two buffers serve all
    folds (allocating and first touching a fresh 0.7 GB array per fold costs more than
    the gather itself).
    """
    from sklearn import config_context
    from sklearn.svm import SVC

    n = len(gram)
    buffers: list[np.ndarray] = [np.empty(0), np.empty(0)]
    strip = np.empty((min(GATHER_ROWS, n), n))  # used by one gathering thread at a time

    def gather(i: int) -> np.ndarray:
        rows = jobs[i]
        m = len(rows)
        if m == n:
            return gram
        slot = i % 2 if prefetch else 0
        if buffers[slot].size < m * m:
            buffers[slot] = np.empty(m * m)
        k = buffers[slot][:m * m].reshape(m, m)
        for c in range(0, m, GATHER_ROWS):
            part = strip[:len(rows[c:c + GATHER_ROWS])]
            # mode="clip" (the indices are valid): with the default mode numpy gathers
            # into a fresh temporary and copies it over, a page fault per 4 KiB each time.
            np.take(gram, rows[c:c + GATHER_ROWS], axis=0, out=part, mode="clip")
            np.take(part, rows, axis=1, out=k[c:c + GATHER_ROWS], mode="clip")
        return k

    def solve(k: np.ndarray, rows: np.ndarray) -> Fit:
        # The matrix is finite by construction: skip scikit-learn's scan of all of it.
        with config_context(assume_finite=True):
            svc = SVC(C=C, kernel="precomputed", tol=tol).fit(k, y[rows])
        return svc.support_, svc.dual_coef_[0], svc.intercept_[0]

    if not prefetch:
        for i, rows in enumerate(jobs):
            yield solve(gather(i), rows)
        return
    with ThreadPoolExecutor(1) as gatherer:
        pending = gatherer.submit(gather, 0)
        for i, rows in enumerate(jobs):
            k = pending.result()
            if i + 1 < len(jobs):  # its buffer is not the one being solved
                pending = gatherer.submit(gather, i + 1)
            yield solve(k, rows)


def rbf_fitter(X: np.ndarray, y: np.ndarray, C: float, gamma: float, tol: float,
               cache_size: float) -> FitOne:
    """Plain `SVC(kernel="rbf")` on rows of X."""
    from sklearn.svm import SVC

    def fit_one(rows: np.ndarray) -> Fit:
        svc = SVC(C=C, kernel="rbf", gamma=gamma, tol=tol,
                  cache_size=cache_size).fit(X[rows], y[rows])
        # scikit-learn's public dual_coef_/intercept_ give decision > 0 for classes_[1].
        return svc.support_, svc.dual_coef_[0], svc.intercept_[0]
    return fit_one


def cuml_fitter(X: np.ndarray, y: np.ndarray, C: float, gamma: float, tol: float,
                cache_size: float) -> FitOne:
    """cuML's `SVC(kernel="rbf")` on the GPU."""
    from cuml.svm import SVC

    def fit_one(rows: np.ndarray) -> Fit:
        svc = SVC(C=C, kernel="rbf", gamma=gamma, tol=tol, cache_size=cache_size,
                  output_type="numpy")
        svc.fit(X[rows], y[rows].astype(np.float32))
        # cuML encodes classes_[0] as -1 and classes_[1] as +1; dual_coef_ = y_i alpha_i and
        # decision = K @ dual_coef_ + intercept_, the sign convention of scikit-learn's
        # public attributes (cuML's own CPU export negates both into sklearn's private
        # _dual_coef_/_intercept_).
        support = _host(svc.support_).astype(np.int64).ravel()
        coef = _host(svc.dual_coef_).astype(np.float64).ravel()
        b = float(_host(svc.intercept_).ravel()[0])
        return support, coef, b
    return fit_one


def _host(a: Any) -> np.ndarray:
    """A cuML / CuPy / numpy array as numpy."""
    if hasattr(a, "to_output"):
        a = a.to_output("numpy")
    if hasattr(a, "get"):
        a = a.get()
    return np.asarray(a)
