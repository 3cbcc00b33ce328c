"""A fitted RAID SVM as a scorer: decision values, Platt probabilities, labels, loading.

`RaidDetector` (the scikit-learn estimator) inherits all of this and adds `fit` and `save`.
This module imports neither scikit-learn nor torch: commands that only score with a saved
model use `SvmScorer.load` and skip their import time. On the CPU, scoring runs in numpy
(`raid.svm.rbf_cpu`); torch is imported only when scoring runs on a CUDA device.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from raid.primitives.errors import RaidError, RaidInputError
from raid.primitives.decision import THRESHOLD
from raid.svm.modelfile import read_model
from raid.svm.platt import platt_probability
from raid.svm.rbf_cpu import rbf_decision, resolve_device
from raid.svm.validation import check_X


class SvmScorer:
    """Fitted attributes: backend_, solver_ ("precomputed" | "rbf" | "cuml"), classes_,
    n_features_in_, indices_, gamma_, support_ (training-row indices), support_vectors_
    (float32, already restricted to indices_), dual_coef_ (float64, (n_SV,)), intercept_
    (float), platt_a_, platt_b_, threshold_, provenance_ (the features' provenance read from
    a model file; None after `fit` and for files without it)."""

    device: str | None = "auto"  # "cpu" (numpy), a CUDA device, "auto" = CUDA when present

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "platt_a_")

    def _check_fitted(self) -> None:
        if not self.__sklearn_is_fitted__():
            from raid.svm.detector import RaidNotFittedError  # imports scikit-learn
            raise RaidNotFittedError(f"this {type(self).__name__} is not fitted yet: call "
                                     f"fit() or load a model")

    def decision_function(self, X: Any) -> np.ndarray:
        """Signed distance to the boundary, (n,); positive = generated (label 1)."""
        self._check_fitted()
        X = check_X(X)
        if X.shape[1] != self.n_features_in_:
            raise RaidInputError(f"X has {X.shape[1]} features, but {type(self).__name__} is "
                                 f"expecting {self.n_features_in_} features as input")
        if self.indices_ is not None:
            X = X[:, self.indices_]
        # Centre on the support vectors' mean: cheap next to the kernel product, and the
        # same whichever backend trained the model.
        center = self.support_vectors_.mean(axis=0, dtype=np.float64)
        device = resolve_device(self.device)
        if device == "cpu":
            return rbf_decision(X, self.support_vectors_, self.dual_coef_, self.intercept_,
                                self.gamma_, center)
        from raid.svm.kernel import RbfKernel  # imports torch
        kernel = RbfKernel(self.gamma_, center, device)
        return kernel.decision(X, self.support_vectors_, self.dual_coef_, self.intercept_)

    def predict_proba(self, X: Any) -> np.ndarray:
        """(n, 2): [P(real), P(generated)] from the Platt sigmoid."""
        p = platt_probability(self.decision_function(X), self.platt_a_, self.platt_b_)
        return np.stack([1.0 - p, p], axis=1)

    def predict(self, X: Any) -> np.ndarray:
        """1 (generated) where P(generated) > threshold_, else 0 (real)."""
        return (self.predict_proba(X)[:, 1] > self.threshold_).astype(np.int64)

    @classmethod
    def _from_params(cls, params: dict[str, Any], indices: np.ndarray | None) -> "SvmScorer":
        """An unfitted instance carrying the saved parameters it needs."""
        model = cls()
        model.device = params.get("device", "auto")
        return model

    @classmethod
    def load(cls, path: str | os.PathLike) -> "SvmScorer":
        """Read a model file (this or the previous format); any other or damaged file
        raises RaidError naming it."""
        tensors, meta = read_model(path)
        try:
            params = {k: v for k, v in dict(meta["params"]).items() if k != "indices"}
            model = cls._from_params(params, tensors.get("indices"))
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
            model.threshold_ = float(meta.get("threshold", THRESHOLD))
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
