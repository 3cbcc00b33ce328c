"""The RAID classifier: an RBF-kernel SVM with Platt-scaled probabilities.

Defaults follow the seed (ThunderSVM `SVC(kernel="rbf", probability=True)`): C = 1,
gamma = "auto" = 1 / n_features, tol = 1e-3, all dimensions. Labels: 0 real, 1 generated.

Training runs on one of the backends of `raid.svm.backends` (the fitted model is the same
set of numpy arrays whichever ran); on the CPU, while the n x n Gram matrix fits in
`kernel_memory_gb`, it is computed once (`raid.svm.kernel`) and shared by the final fit
and the calibration folds. Probabilities come from Platt scaling (`raid.svm.platt`) fitted
on out-of-fold decision values of stratified, seeded folds. Scoring needs no training
backend: decision values come from the support vectors, dual coefficients, intercept and
gamma (`SvmScorer`: numpy on the CPU, torch on CUDA).
"""

from __future__ import annotations

import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.exceptions import NotFittedError

from raid.primitives.decision import THRESHOLD
from raid.primitives.errors import RaidError, RaidInputError
from raid.primitives.progress import Progress
from raid.primitives.threads import available_cpus
from raid.svm.backends import (cuml_available, cuml_fitter, precomputed_fits, rbf_fitter,
                               resolve_backend)
from raid.svm import rbf_cpu
from raid.svm.modelfile import write_model
from raid.svm.platt import fit_platt
from raid.svm.scorer import SvmScorer
from raid.svm.validation import (BACKENDS, check_indices, check_params, check_X, check_y,
                                 resolve_gamma)

__all__ = ["RaidDetector", "RaidNotFittedError", "cuml_available", "BACKENDS",
           "DEFAULT_THRESHOLD"]

logger = logging.getLogger(__name__)
DEFAULT_THRESHOLD = THRESHOLD  # the older name, kept for callers


class RaidNotFittedError(RaidError, NotFittedError):
    """Scoring or saving before `fit`: scikit-learn's `NotFittedError`, and a `RaidError`."""


class RaidDetector(ClassifierMixin, BaseEstimator, SvmScorer):
    """RBF-kernel SVM with Platt probabilities, following scikit-learn's conventions.

    Parameters
    ----------
    C, gamma, tol: SVM parameters. gamma is "auto" (1 / n_features after `indices`,
        ThunderSVM's default and the seed's), "scale" (1 / (n_features * X.var()), as
        scikit-learn) or a positive number.
    indices: dimensions to use (e.g. the seed's `important_indices.npy`); None = all.
    backend: "auto" (cuML when it imports and CUDA is present, else scikit-learn),
        "sklearn" or "cuml".
    cv_folds, random_state: the stratified, shuffled folds of the Platt calibration.
    kernel_memory_gb: largest precomputed Gram matrix (plus one fold's copy) allowed on
        the scikit-learn backend; beyond it plain `SVC(kernel="rbf")` is used.
    precompute: True / False force the precomputed-kernel / plain path; None decides by
        `kernel_memory_gb`.
    device: torch device for kernels and scoring ("cpu" scores in numpy); "auto" = CUDA
        when present.
    cache_size: kernel cache (MiB) of the plain and cuML solvers.
    n_jobs: threads for training; None = the CPUs available. The plain solver runs this
        many scikit-learn fits at once (the final fit and the calibration folds are
        independent; libsvm releases the GIL). The precomputed solver solves one at a
        time and, with n_jobs > 1, gathers the next fold's sub-matrix meanwhile (two
        sub-matrices, counted against `kernel_memory_gb`).
    progress: show a progress line during `fit`.
    threshold: `predict` calls an image generated when P(generated) > threshold.

    Fitted attributes: those of `SvmScorer` (support vectors, dual coefficients,
    intercept, gamma_, Platt A and B, threshold_, provenance_, ...) and fit_seconds_.
    Parameters are stored as given; `fit` checks them.
    """

    def __init__(self, C: float = 1.0, gamma: str | float = "auto",
                 indices: np.ndarray | None = None, backend: str = "auto", cv_folds: int = 5,
                 random_state: int = 0, tol: float = 1e-3, kernel_memory_gb: float = 8.0,
                 precompute: bool | None = None, device: str | None = "auto",
                 cache_size: float = 1024.0, n_jobs: int | None = None, progress: bool = True,
                 threshold: float = THRESHOLD):
        self.C = C
        self.gamma = gamma
        self.indices = indices
        self.backend = backend
        self.cv_folds = cv_folds
        self.random_state = random_state
        self.tol = tol
        self.kernel_memory_gb = kernel_memory_gb
        self.precompute = precompute
        self.device = device
        self.cache_size = cache_size
        self.n_jobs = n_jobs
        self.progress = progress
        self.threshold = threshold

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_class = False  # labels are 0 (real) and 1 (generated)
        return tags

    # ---- fit

    def fit(self, X: Any, y: Any) -> "RaidDetector":
        """Train the SVM on all rows, then calibrate on out-of-fold decision values."""
        from sklearn.model_selection import StratifiedKFold

        start = time.perf_counter()
        X = check_X(X)
        y = check_y(y, len(X))
        check_params(self.C, self.cv_folds, self.threshold, self.backend, y)
        indices = check_indices(self.indices, X.shape[1])
        self.n_features_in_ = X.shape[1]
        self.indices_ = indices
        Xs = np.ascontiguousarray(X[:, indices]) if indices is not None else X
        self.gamma_ = resolve_gamma(self.gamma, Xs)
        self.classes_ = np.array([0, 1])
        self.threshold_ = float(self.threshold)
        self.provenance_ = None
        self.backend_ = resolve_backend(self.backend)

        kernel = _kernel(self.gamma_, Xs.mean(axis=0, dtype=np.float64), self.device)
        folds = list(StratifiedKFold(self.cv_folds, shuffle=True,
                                     random_state=self.random_state).split(Xs, y))
        n = len(Xs)
        self.solver_, workers = self._plan(n, len(folds))
        logger.info("fitting SVM: %d x %d, C=%g, gamma=%.6g, solver %s, %d calibration folds, "
                    "%d thread(s)", n, Xs.shape[1], self.C, self.gamma_, self.solver_,
                    self.cv_folds, workers)

        steps = 2 + len(folds) + (1 if self.solver_ == "precomputed" else 0)
        with Progress("SVM fit", total=steps, unit="step",
                      delay=2.0 if self.progress else float("inf")) as bar:
            gram = None
            # The final fit (all rows) and the calibration folds are independent.
            jobs = [np.arange(n)] + [train for train, _ in folds]
            results = []
            if self.solver_ == "precomputed":
                t0 = time.perf_counter()
                gram = kernel.gram(Xs, bar)
                logger.info("Gram matrix %d x %d in %.1f s", n, n, time.perf_counter() - t0)
                bar.update()
                for fit in precomputed_fits(gram, y, jobs, self.C, self.tol,
                                            prefetch=workers > 1):
                    results.append(fit)
                    bar.update()
            else:
                fit_one = (cuml_fitter if self.solver_ == "cuml" else rbf_fitter)(
                    Xs, y, self.C, self.gamma_, self.tol, self.cache_size)
                with ThreadPoolExecutor(workers) as pool:
                    for fit in pool.map(fit_one, jobs):
                        results.append(fit)
                        bar.update()

            support, coef, b = results[0]
            self.support_ = support.astype(np.int64)
            self.support_vectors_ = np.ascontiguousarray(Xs[support], dtype=np.float32)
            self.dual_coef_ = coef.astype(np.float64)
            self.intercept_ = float(b)

            oof = np.empty(n, dtype=np.float64)
            for (train, test), (s, c, b) in zip(folds, results[1:]):
                if gram is not None:  # reuse the Gram matrix: K(test, support)
                    oof[test] = gram[np.ix_(test, train[s])] @ c + b
                else:
                    oof[test] = kernel.decision(Xs[test], Xs[train[s]], c, b)
            del gram
            self.platt_a_, self.platt_b_ = fit_platt(oof, y)
            bar.update()
        self.fit_seconds_ = time.perf_counter() - start
        logger.info("SVM fitted in %.1f s: %d support vectors, Platt A=%.4g B=%.4g",
                    self.fit_seconds_, len(self.support_), self.platt_a_, self.platt_b_)
        return self

    def _plan(self, n: int, n_folds: int) -> tuple[str, int]:
        """The solver ("precomputed", "rbf" or "cuml") and how many fits run at once."""
        cpus = available_cpus()
        workers = max(1, min(self.n_jobs or cpus or 1, n_folds + 1))
        if self.backend_ == "cuml":
            return "cuml", 1  # one GPU: fits run one after the other
        fold_gb = 8 * ((n * (self.cv_folds - 1)) // self.cv_folds + 1) ** 2 / 2**30
        gram_gb = 8 * n * n / 2**30
        use_gram = self.precompute if self.precompute is not None else \
            gram_gb + fold_gb <= self.kernel_memory_gb
        if use_gram:  # fewer concurrent folds where their sub-matrices do not fit
            room = int((self.kernel_memory_gb - gram_gb) // fold_gb) if fold_gb else workers
            return "precomputed", max(1, min(workers, room))
        if self.precompute is None:
            logger.info("Gram matrix would need %.1f GiB > kernel_memory_gb=%.1f: "
                        "plain SVC(kernel='rbf')", gram_gb + fold_gb, self.kernel_memory_gb)
        return "rbf", workers

    # ---- model file

    def save(self, path: str | os.PathLike, provenance: dict | None = None) -> None:
        """Write a safetensors model file (no pickle) atomically.

        `provenance` describes the features the model was fitted on (extractor, checkpoint
        digests, ...); it is stored in the metadata, covered by the file's checksum, and
        read back as `provenance_`. None keeps `provenance_` (e.g. of a loaded model).
        """
        self._check_fitted()
        if provenance is None:
            provenance = self.provenance_
        if provenance is not None and not isinstance(provenance, dict):
            raise RaidInputError(f"provenance must be a dict, got {type(provenance).__name__}")
        tensors = {"support_vectors": self.support_vectors_.astype(np.float32),
                   "dual_coef": self.dual_coef_.astype(np.float64),
                   "support": self.support_.astype(np.int64)}
        if self.indices_ is not None:
            tensors["indices"] = self.indices_.astype(np.int64)
        params = {k: v.item() if isinstance(v, np.generic) else v
                  for k, v in self.get_params().items() if k != "indices"}
        meta = {"params": params, "backend": self.backend_, "solver": self.solver_,
                "n_features_in": int(self.n_features_in_), "gamma": self.gamma_,
                "intercept": self.intercept_, "platt_a": self.platt_a_,
                "platt_b": self.platt_b_, "threshold": self.threshold_,
                "provenance": provenance}
        try:
            write_model(path, tensors, meta)
        except (TypeError, ValueError) as exc:  # from json: a value it cannot write
            raise RaidInputError(f"cannot write the model's metadata as JSON ({exc})",
                                 path) from None

    @classmethod
    def _from_params(cls, params: dict[str, Any], indices: np.ndarray | None) -> "RaidDetector":
        return cls(**params, indices=indices)


class _CpuKernel:
    """The numpy kernel (`raid.svm.rbf_cpu`) behind the interface of the torch one."""

    def __init__(self, gamma: float, center: np.ndarray):
        self.gamma, self.center = gamma, center

    def gram(self, X: np.ndarray, progress: Progress | None = None) -> np.ndarray:
        return rbf_cpu.gram(X, self.gamma, self.center, progress)

    def decision(self, X: np.ndarray, sv: np.ndarray, coef: np.ndarray,
                 intercept: float) -> np.ndarray:
        return rbf_cpu.rbf_decision(X, sv, coef, intercept, self.gamma, self.center)


def _kernel(gamma: float, center: np.ndarray, device: str | None) -> Any:
    """The training kernel: numpy on the CPU (torch is then never imported), torch on CUDA."""
    device = rbf_cpu.resolve_device(device)
    if device == "cpu":
        return _CpuKernel(gamma, center)
    from raid.svm.kernel import RbfKernel  # imports torch

    return RbfKernel(gamma, center, device)
