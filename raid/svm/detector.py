"""The RAID classifier: an RBF-kernel SVM with Platt-scaled probabilities.

Defaults follow the seed (ThunderSVM `SVC(kernel="rbf", probability=True)`): C = 1,
gamma = "auto" = 1 / n_features, tol = 1e-3, all dimensions. Labels: 0 real, 1 generated.

Training runs on one of the backends of `raid.svm.backends` (the fitted model is the same
set of numpy arrays whichever ran); on the CPU, while the n x n Gram matrix fits in
`kernel_memory_gb`, it is computed once (`raid.svm.kernel`) and shared by the final fit
and the calibration folds. Probabilities come from Platt scaling (`raid.svm.platt`) fitted
on out-of-fold decision values of stratified, seeded folds. Scoring needs no training
backend: decision values are computed with torch from the support vectors, dual
coefficients, intercept and gamma.
"""

from __future__ import annotations

import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin

from raid.primitives.errors import RaidError, RaidInputError
from raid.primitives.progress import Progress
from raid.svm.backends import (cuml_available, cuml_fitter, precomputed_fitter,
                               rbf_fitter, resolve_backend)
from raid.svm.kernel import RbfKernel
from raid.svm.modelfile import read_model, write_model
from raid.svm.platt import fit_platt, platt_probability
from raid.svm.validation import (BACKENDS, RaidNotFittedError, check_indices, check_params,
                                 check_X, check_y, resolve_gamma)

__all__ = ["RaidDetector", "cuml_available", "BACKENDS", "DEFAULT_THRESHOLD"]

logger = logging.getLogger(__name__)

DEFAULT_THRESHOLD = 0.5


class RaidDetector(ClassifierMixin, BaseEstimator):
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
    device: torch device for kernels and scoring; "auto" = CUDA when present.
    cache_size: kernel cache (MiB) of the plain and cuML solvers.
    n_jobs: scikit-learn fits run at once (the final fit and the calibration folds are
        independent; libsvm releases the GIL); None = the CPUs available. Each concurrent
        fold needs its own sub-matrix, counted against `kernel_memory_gb`.
    progress: show a progress line during `fit`.
    threshold: `predict` calls an image generated when P(generated) > threshold.

    Fitted attributes: backend_, solver_ ("precomputed" | "rbf" | "cuml"), classes_,
    n_features_in_, indices_, gamma_, support_ (training-row indices), support_vectors_
    (float32, already restricted to indices_), dual_coef_ (float64, (n_SV,)), intercept_
    (float), platt_a_, platt_b_, threshold_, fit_seconds_, provenance_ (the features'
    provenance read from a model file; None after `fit` and for files without it).
    Parameters are stored as given; `fit` checks them.
    """

    def __init__(self, C: float = 1.0, gamma: str | float = "auto",
                 indices: np.ndarray | None = None, backend: str = "auto", cv_folds: int = 5,
                 random_state: int = 0, tol: float = 1e-3, kernel_memory_gb: float = 8.0,
                 precompute: bool | None = None, device: str | None = "auto",
                 cache_size: float = 1024.0, n_jobs: int | None = None, progress: bool = True,
                 threshold: float = DEFAULT_THRESHOLD):
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

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "platt_a_")

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

        kernel = RbfKernel(self.gamma_, Xs.mean(axis=0, dtype=np.float64), self.device)
        folds = list(StratifiedKFold(self.cv_folds, shuffle=True,
                                     random_state=self.random_state).split(Xs, y))
        n = len(Xs)
        self.solver_, workers = self._plan(n, len(folds))
        logger.info("fitting SVM: %d x %d, C=%g, gamma=%.6g, solver %s, %d calibration folds, "
                    "%d at once", n, Xs.shape[1], self.C, self.gamma_, self.solver_,
                    self.cv_folds, workers)

        steps = 2 + len(folds) + (1 if self.solver_ == "precomputed" else 0)
        with Progress("SVM fit", total=steps, unit="step",
                      delay=2.0 if self.progress else float("inf")) as bar:
            gram = None
            if self.solver_ == "precomputed":
                t0 = time.perf_counter()
                gram = kernel.gram(Xs, bar)
                logger.info("Gram matrix %d x %d in %.1f s", n, n, time.perf_counter() - t0)
                bar.update()
                fit_one = precomputed_fitter(gram, y, self.C, self.tol)
            elif self.solver_ == "cuml":
                fit_one = cuml_fitter(Xs, y, self.C, self.gamma_, self.tol, self.cache_size)
            else:
                fit_one = rbf_fitter(Xs, y, self.C, self.gamma_, self.tol, self.cache_size)

            # The final fit (all rows) and the calibration folds are independent.
            jobs = [np.arange(n)] + [train for train, _ in folds]
            with ThreadPoolExecutor(workers) as pool:
                futures = [pool.submit(fit_one, rows) for rows in jobs]
                results = []
                for future in futures:
                    results.append(future.result())
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
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
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

    # ---- scoring

    def _check_fitted(self) -> None:
        if not self.__sklearn_is_fitted__():
            raise RaidNotFittedError("this RaidDetector is not fitted yet: call fit() or "
                                     "load a model")

    def decision_function(self, X: Any) -> np.ndarray:
        """Signed distance to the boundary, (n,); positive = generated (label 1)."""
        self._check_fitted()
        X = check_X(X)
        if X.shape[1] != self.n_features_in_:
            raise RaidInputError(f"X has {X.shape[1]} features, but RaidDetector is expecting "
                                 f"{self.n_features_in_} features as input")
        if self.indices_ is not None:
            X = X[:, self.indices_]
        # Centre on the support vectors' mean: cheap next to the kernel product, and the
        # same whichever backend trained the model.
        center = self.support_vectors_.mean(axis=0, dtype=np.float64)
        kernel = RbfKernel(self.gamma_, center, self.device)
        return kernel.decision(X, self.support_vectors_, self.dual_coef_, self.intercept_)

    def predict_proba(self, X: Any) -> np.ndarray:
        """(n, 2): [P(real), P(generated)] from the Platt sigmoid."""
        p = platt_probability(self.decision_function(X), self.platt_a_, self.platt_b_)
        return np.stack([1.0 - p, p], axis=1)

    def predict(self, X: Any) -> np.ndarray:
        """1 (generated) where P(generated) > threshold_, else 0 (real)."""
        return (self.predict_proba(X)[:, 1] > self.threshold_).astype(np.int64)

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
    def load(cls, path: str | os.PathLike) -> "RaidDetector":
        """Read a model written by `save` (this or the previous format); any other or
        damaged file raises RaidError naming it."""
        tensors, meta = read_model(path)
        try:
            params = {k: v for k, v in dict(meta["params"]).items() if k != "indices"}
            model = cls(**params, indices=tensors.get("indices"))
            model.backend_ = str(meta["backend"])
            model.solver_ = str(meta["solver"])
            model.classes_ = np.array([0, 1])
            model.n_features_in_ = int(meta["n_features_in"])
            model.indices_ = tensors.get("indices")
            model.gamma_ = float(meta["gamma"])
            model.support_ = tensors["support"]
            model.support_vectors_ = tensors["support_vectors"]
            model.dual_coef_ = tensors["dual_coef"]
            model.intercept_ = float(meta["intercept"])
            model.platt_a_ = float(meta["platt_a"])
            model.platt_b_ = float(meta["platt_b"])
            model.threshold_ = float(meta.get("threshold", DEFAULT_THRESHOLD))
            model.provenance_ = meta.get("provenance")
        except (KeyError, TypeError, ValueError) as exc:
            raise RaidError(f"damaged RAID model file (missing or bad entry {exc})", path) from None
        sv = model.support_vectors_
        width = len(model.indices_) if model.indices_ is not None else model.n_features_in_
        if sv.ndim != 2 or sv.shape != (len(model.dual_coef_), width):
            raise RaidError("damaged RAID model file (inconsistent tensor shapes)", path)
        if model.provenance_ is not None and not isinstance(model.provenance_, dict):
            raise RaidError("damaged RAID model file (provenance is not an object)", path)
        return model
