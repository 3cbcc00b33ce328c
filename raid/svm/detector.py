"""The RAID classifier: an RBF-kernel SVM with Platt-scaled probabilities.

Defaults follow the seed (ThunderSVM `SVC(kernel="rbf", probability=True)`): C = 1,
gamma = "auto" = 1 / n_features, tol = 1e-3, all dimensions. Labels: 0 real, 1 generated.

Training backends (the fitted model is the same set of numpy arrays whichever ran):
- ``sklearn`` (CPU): while the n x n Gram matrix fits in `kernel_memory_gb`, RAID computes
  it once with torch (BLAS, or the GPU when present) and hands it to libsvm as a
  precomputed kernel; the solver then does only lookups instead of re-evaluating 3072-d
  dot products, which is where plain `SVC.fit` spends its time. The five calibration folds
  index that one matrix. Beyond the limit it falls back to plain `SVC(kernel="rbf")`.
- ``cuml`` (GPU): `cuml.svm.SVC(kernel="rbf")`.

Probabilities come from Platt scaling fitted on out-of-fold decision values (stratified,
seeded folds), implemented here once for every backend: scikit-learn deprecates and cuML
removed `probability=True`, and both would otherwise calibrate differently.

Scoring needs no training backend: decision values are computed with torch from the
support vectors, dual coefficients, intercept and gamma.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch

from raid.primitives.errors import RaidError
from raid.primitives.fileio import write_bytes
from raid.primitives.progress import Progress

logger = logging.getLogger(__name__)

FORMAT_NAME = "raid-svm"
FORMAT_VERSION = 1
BACKENDS = ("auto", "sklearn", "cuml")

# Rows per kernel block: 2048 x 2048 float64 is 32 MiB, large enough for BLAS efficiency.
_BLOCK = 2048


# --------------------------------------------------------------------------- kernels

def _device(device: str | None) -> torch.device:
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


class RbfKernel:
    """exp(-gamma * ||a - b||^2) between float32 rows, within about 1e-7 of float64.

    The squared distance uses the expanded form |a|^2 + |b|^2 - 2 a.b so that the work is
    one matrix product (BLAS, or the GPU). Rows are first centred on a fixed vector (the
    training mean): that makes the norms small and so shrinks the cancellation error of
    the expanded form. Norms are summed in float64; the product runs in float32, which
    keeps kernel values within about 1e-7 of a float64 computation (libsvm itself caches
    kernel rows in float32). Decision sums are accumulated in float64.
    """

    def __init__(self, gamma: float, center: np.ndarray, device: str | None = None):
        self.gamma = float(gamma)
        self.device = _device(device)
        self.center = torch.as_tensor(np.asarray(center, dtype=np.float32), device=self.device)

    def prepare(self, X: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """Centred float32 rows on the device and -gamma * their squared norms (float32)."""
        t = torch.as_tensor(np.ascontiguousarray(X, dtype=np.float32), device=self.device)
        t = t - self.center
        return t, (t.double().square().sum(1) * -self.gamma).float()

    def block(self, a: torch.Tensor, na: torch.Tensor, b: torch.Tensor,
              nb: torch.Tensor) -> torch.Tensor:
        """Kernel block (float32, on the device) of prepared rows.

        -gamma * d^2 = -gamma |a|^2 - gamma |b|^2 + 2 gamma a.b, fused into one addmm.
        """
        k = torch.addmm(na[:, None] + nb[None, :], a, b.T, alpha=2.0 * self.gamma)
        return k.clamp_max_(0.0).exp_()

    def gram(self, X: np.ndarray, progress: Progress | None = None) -> np.ndarray:
        """The symmetric n x n kernel matrix as C-contiguous float64 (libsvm's input).

        Row panels against the columns on and right of the diagonal: wide products run
        BLAS efficiently, and the lower triangle is mirrored rather than recomputed.
        """
        n = len(X)
        out = np.empty((n, n), dtype=np.float64)
        t, nt = self.prepare(X)
        for i in range(0, n, _BLOCK):
            k = self.block(t[i:i + _BLOCK], nt[i:i + _BLOCK], t[i:], nt[i:]).cpu().numpy()
            rows = len(k)
            out[i:i + rows, i:] = k
            out[i + rows:, i:i + rows] = k[:, rows:].T
            # The diagonal block was computed whole; a.b and b.a round differently in
            # float32, so copy its upper triangle down to make the matrix exactly symmetric.
            diag = out[i:i + rows, i:i + rows]
            lower = np.tril_indices(rows, -1)
            diag[lower] = diag.T[lower]
            if progress is not None:
                progress.update(0)
        np.fill_diagonal(out, 1.0)  # exact: ||x - x|| = 0
        return out

    def decision(self, X: np.ndarray, sv: np.ndarray, coef: np.ndarray, intercept: float,
                 batch: int | None = None) -> np.ndarray:
        """sum_j coef_j K(x, sv_j) + intercept for every row of X, in float64."""
        s, ns = self.prepare(sv)
        c = torch.as_tensor(np.asarray(coef, dtype=np.float64), device=self.device)
        if batch is None:  # one float32 kernel block of about 128 MiB
            batch = max(1, min(8192, (1 << 25) // max(len(sv), 1)))
        out = np.empty(len(X), dtype=np.float64)
        for i in range(0, len(X), batch):
            x, nx = self.prepare(X[i:i + batch])
            out[i:i + len(x)] = (self.block(x, nx, s, ns).double() @ c).cpu().numpy()
        return out + float(intercept)


# --------------------------------------------------------------------------- Platt

def fit_platt(decision: np.ndarray, y: np.ndarray, max_iter: int = 100,
              tol: float = 1e-5) -> tuple[float, float]:
    """Platt's sigmoid P(y=1 | f) = 1 / (1 + exp(A f + B)) by Newton's method.

    Targets are smoothed as in Platt (1999): (N+ + 1) / (N+ + 2) for positives and
    1 / (N- + 2) for negatives. The minimisation follows Lin, Lin and Weng (2007): the
    loss is evaluated in an overflow-free form, the Hessian gets a tiny ridge so it stays
    invertible, and a backtracking line search with a sufficient-decrease test makes each
    step descend. Returns (A, B).
    """
    f = np.asarray(decision, dtype=np.float64).ravel()
    y = np.asarray(y).ravel().astype(bool)
    n_pos = int(y.sum())
    n_neg = len(y) - n_pos
    t = np.where(y, (n_pos + 1.0) / (n_pos + 2.0), 1.0 / (n_neg + 2.0))

    def loss(a: float, b: float) -> float:
        # -log p = softplus(z), -log(1 - p) = softplus(z) - z, with z = A f + B.
        z = a * f + b
        return float(np.sum(np.logaddexp(0.0, z) - (1.0 - t) * z))

    a, b = 0.0, float(np.log((n_neg + 1.0) / (n_pos + 1.0)))
    value = loss(a, b)
    for _ in range(max_iter):
        z = a * f + b
        p = 0.5 * (1.0 - np.tanh(0.5 * z))  # 1 / (1 + e^z), without overflow
        r = t - p                            # d loss / d z
        g = np.array([np.dot(f, r), r.sum()])
        if np.max(np.abs(g)) < tol:
            break
        w = p * (1.0 - p)
        h = np.array([[np.dot(f * f, w), np.dot(f, w)], [np.dot(f, w), w.sum()]])
        h += 1e-12 * np.eye(2)
        step_dir = -np.linalg.solve(h, g)
        slope = float(g @ step_dir)
        step = 1.0
        while step >= 1e-10:
            na, nb = a + step * step_dir[0], b + step * step_dir[1]
            new = loss(na, nb)
            if new < value + 1e-4 * step * slope:
                a, b, value = na, nb, new
                break
            step *= 0.5
        else:
            logger.warning("Platt scaling: line search failed; keeping A=%g, B=%g", a, b)
            break
    return float(a), float(b)


def platt_probability(decision: np.ndarray, a: float, b: float) -> np.ndarray:
    """P(y=1) = 1 / (1 + exp(A f + B)), computed without overflow."""
    z = a * np.asarray(decision, dtype=np.float64) + b
    return 0.5 * (1.0 - np.tanh(0.5 * z))


# --------------------------------------------------------------------------- checks

def _check_X(X: Any, what: str = "X") -> np.ndarray:
    try:
        arr = np.asarray(X, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise RaidError(f"{what} is not a numeric array ({exc})") from None
    if arr.ndim != 2:
        raise RaidError(f"{what} must be a 2-D array (n_samples, n_features), got shape {arr.shape}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise RaidError(f"{what} is empty (shape {arr.shape})")
    bad = ~np.isfinite(arr).all(axis=1)
    if bad.any():
        rows = np.flatnonzero(bad)
        raise RaidError(f"{what} has NaN or infinite features in {len(rows)} of {len(arr)} rows "
                        f"(first at row {rows[0]})")
    return arr


def _check_y(y: Any, n: int) -> np.ndarray:
    arr = np.asarray(y).ravel()
    if len(arr) != n:
        raise RaidError(f"X has {n} rows but y has {len(arr)} labels")
    values = set(np.unique(arr).tolist())
    if not values <= {0, 1}:
        raise RaidError(f"labels must be 0 (real) or 1 (generated), got {sorted(values)[:5]}")
    if len(values) < 2:
        only = "real (0)" if values == {0} else "generated (1)"
        raise RaidError(f"training needs both classes, got only {only} labels")
    return arr.astype(np.int64)


def _check_indices(indices: Any, n_features: int | None = None) -> np.ndarray | None:
    if indices is None:
        return None
    arr = np.asarray(indices)
    if arr.ndim != 1 or arr.size == 0 or not np.issubdtype(arr.dtype, np.integer):
        raise RaidError(f"indices must be a non-empty 1-D integer array, got {arr.dtype} {arr.shape}")
    if len(np.unique(arr)) != len(arr):
        raise RaidError("indices contain duplicates")
    if n_features is not None and (arr.min() < 0 or arr.max() >= n_features):
        raise RaidError(f"indices must lie in [0, {n_features}), got [{arr.min()}, {arr.max()}]")
    return arr.astype(np.int64)


def cuml_available() -> bool:
    """True when cuML imports and a CUDA device is present."""
    try:
        import cuml.svm  # noqa: F401
    except Exception:  # ImportError, or a broken CUDA install raising at import
        return False
    return torch.cuda.is_available()


# --------------------------------------------------------------------------- estimator

class RaidDetector:
    """RBF-kernel SVM with Platt probabilities; scikit-learn estimator conventions.

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

    Fitted attributes: backend_, solver_ ("precomputed" | "rbf" | "cuml"), classes_,
    n_features_in_, indices_, gamma_, support_ (training-row indices), support_vectors_
    (float32, already restricted to indices_), dual_coef_ (float64, (n_SV,)), intercept_
    (float), platt_a_, platt_b_, fit_seconds_.
    """

    def __init__(self, C: float = 1.0, gamma: str | float = "auto",
                 indices: np.ndarray | None = None, backend: str = "auto", cv_folds: int = 5,
                 random_state: int = 0, tol: float = 1e-3, kernel_memory_gb: float = 8.0,
                 precompute: bool | None = None, device: str | None = "auto",
                 cache_size: float = 1024.0, n_jobs: int | None = None, progress: bool = True):
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

    # ---- parameters

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        return {k: getattr(self, k) for k in (
            "C", "gamma", "indices", "backend", "cv_folds", "random_state", "tol",
            "kernel_memory_gb", "precompute", "device", "cache_size", "n_jobs", "progress")}

    def set_params(self, **params: Any) -> "RaidDetector":
        for k, v in params.items():
            if k not in self.get_params():
                raise ValueError(f"unknown parameter {k!r}")
            setattr(self, k, v)
        return self

    def _resolve_backend(self) -> str:
        if self.backend not in BACKENDS:
            raise RaidError(f"backend must be one of {', '.join(BACKENDS)}, got {self.backend!r}")
        if self.backend == "cuml":
            if not cuml_available():
                raise RaidError("backend 'cuml' needs cuML and a CUDA device "
                                "(pip install -e '.[gpu]'); use backend 'sklearn'")
            choice = "cuml"
        elif self.backend == "auto":
            choice = "cuml" if cuml_available() else "sklearn"
        else:
            choice = "sklearn"
        logger.info("SVM backend: %s (asked for %s)", choice, self.backend)
        return choice

    def _resolve_gamma(self, X: np.ndarray) -> float:
        g = self.gamma
        if isinstance(g, str):
            if g == "auto":
                return 1.0 / X.shape[1]
            if g == "scale":
                var = float(X.var(dtype=np.float64))
                return 1.0 / (X.shape[1] * var) if var > 0 else 1.0
            raise RaidError(f"gamma must be 'auto', 'scale' or a positive number, got {g!r}")
        try:
            value = float(g)
        except (TypeError, ValueError):
            raise RaidError(f"gamma must be 'auto', 'scale' or a positive number, got {g!r}") from None
        if not np.isfinite(value) or value <= 0:
            raise RaidError(f"gamma must be positive, got {g!r}")
        return value

    # ---- fit

    def fit(self, X: Any, y: Any) -> "RaidDetector":
        """Train the SVM on all rows, then calibrate on out-of-fold decision values."""
        from sklearn.model_selection import StratifiedKFold

        start = time.perf_counter()
        X = _check_X(X)
        y = _check_y(y, len(X))
        if not (isinstance(self.C, (int, float)) and self.C > 0):
            raise RaidError(f"C must be a positive number, got {self.C!r}")
        n_min = int(np.bincount(y, minlength=2).min())
        if not (isinstance(self.cv_folds, int) and 2 <= self.cv_folds <= n_min):
            raise RaidError(f"cv_folds must be an integer between 2 and the smaller class "
                            f"size ({n_min}), got {self.cv_folds!r}")
        indices = _check_indices(self.indices, X.shape[1])
        self.n_features_in_ = X.shape[1]
        self.indices_ = indices
        Xs = np.ascontiguousarray(X[:, indices]) if indices is not None else X
        self.gamma_ = self._resolve_gamma(Xs)
        self.classes_ = np.array([0, 1])
        self.backend_ = self._resolve_backend()

        kernel = RbfKernel(self.gamma_, Xs.mean(axis=0, dtype=np.float64), self.device)
        folds = list(StratifiedKFold(self.cv_folds, shuffle=True,
                                     random_state=self.random_state).split(Xs, y))
        n = len(Xs)
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        workers = max(1, min(self.n_jobs or cpus or 1, len(folds) + 1))
        if self.backend_ == "cuml":
            self.solver_, workers = "cuml", 1  # one GPU: fits run one after the other
        else:
            fold_gb = 8 * ((n * (self.cv_folds - 1)) // self.cv_folds + 1) ** 2 / 2**30
            gram_gb = 8 * n * n / 2**30
            use_gram = self.precompute if self.precompute is not None else \
                gram_gb + fold_gb <= self.kernel_memory_gb
            self.solver_ = "precomputed" if use_gram else "rbf"
            if use_gram:  # fewer concurrent folds where their sub-matrices do not fit
                room = int((self.kernel_memory_gb - gram_gb) // fold_gb) if fold_gb else workers
                workers = max(1, min(workers, room))
            elif self.precompute is None:
                logger.info("Gram matrix would need %.1f GiB > kernel_memory_gb=%.1f: "
                            "plain SVC(kernel='rbf')", gram_gb + fold_gb, self.kernel_memory_gb)
        logger.info("fitting SVM: %d x %d, C=%g, gamma=%.6g, solver %s, %d calibration folds, "
                    "%d at once", n, Xs.shape[1], self.C, self.gamma_, self.solver_,
                    self.cv_folds, workers)

        steps = 2 + len(folds) + (1 if self.solver_ == "precomputed" else 0)
        with Progress("SVM fit", total=steps, unit="step",
                      delay=2.0 if self.progress else float("inf")) as bar:
            if self.solver_ == "precomputed":
                t0 = time.perf_counter()
                gram = kernel.gram(Xs, bar)
                logger.info("Gram matrix %d x %d in %.1f s", n, n, time.perf_counter() - t0)
                bar.update()
                fit_one = self._gram_fitter(gram)
            else:
                gram = None
                fit_one = self._cuml_fit if self.solver_ == "cuml" else self._plain_fit

            # The final fit (all rows) and the calibration folds are independent.
            jobs = [np.arange(n)] + [train for train, _ in folds]
            with ThreadPoolExecutor(workers) as pool:
                futures = [pool.submit(fit_one, Xs, y, rows) for rows in jobs]
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

    def _gram_fitter(self, gram: np.ndarray):
        from sklearn.svm import SVC

        # One buffer per thread serves its folds' sub-matrices: allocating (and first
        # touching) a fresh 0.7 GB array per fold costs more than the gather itself.
        local = threading.local()

        def fit_one(Xs: np.ndarray, y: np.ndarray, rows: np.ndarray):
            m = len(rows)
            if m == len(gram):
                k = gram
            else:
                if getattr(local, "buffer", np.empty(0)).size < m * m:
                    local.buffer = np.empty(m * m)
                k = local.buffer[:m * m].reshape(m, m)
                for c in range(0, m, 256):  # row chunks keep the gather cache-friendly
                    np.take(gram[rows[c:c + 256]], rows, axis=1, out=k[c:c + 256])
            svc = SVC(C=self.C, kernel="precomputed", tol=self.tol).fit(k, y[rows])
            return svc.support_, svc.dual_coef_[0], svc.intercept_[0]
        return fit_one

    def _plain_fit(self, Xs: np.ndarray, y: np.ndarray, rows: np.ndarray):
        from sklearn.svm import SVC

        svc = SVC(C=self.C, kernel="rbf", gamma=self.gamma_, tol=self.tol,
                  cache_size=self.cache_size).fit(Xs[rows], y[rows])
        # scikit-learn's public dual_coef_/intercept_ give decision > 0 for classes_[1].
        return svc.support_, svc.dual_coef_[0], svc.intercept_[0]

    def _cuml_fit(self, Xs: np.ndarray, y: np.ndarray, rows: np.ndarray):
        from cuml.svm import SVC

        svc = SVC(C=self.C, kernel="rbf", gamma=self.gamma_, tol=self.tol,
                  cache_size=self.cache_size, output_type="numpy")
        svc.fit(Xs[rows], y[rows].astype(np.float32))
        # cuML encodes classes_[0] as -1 and classes_[1] as +1; dual_coef_ = y_i alpha_i and
        # decision = K @ dual_coef_ + intercept_, the sign convention of scikit-learn's
        # public attributes (cuML's own CPU export negates both into sklearn's private
        # _dual_coef_/_intercept_).
        support = _host(svc.support_).astype(np.int64).ravel()
        coef = _host(svc.dual_coef_).astype(np.float64).ravel()
        b = float(_host(svc.intercept_).ravel()[0])
        return support, coef, b

    # ---- scoring

    def _check_fitted(self) -> None:
        if not hasattr(self, "platt_a_"):
            raise RaidError("this RaidDetector is not fitted yet: call fit() or load a model")

    def decision_function(self, X: Any) -> np.ndarray:
        """Signed distance to the boundary, (n,); positive = generated (label 1)."""
        self._check_fitted()
        X = _check_X(X)
        if X.shape[1] != self.n_features_in_:
            raise RaidError(f"model expects {self.n_features_in_} features, got {X.shape[1]}")
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
        """1 where P(generated) > 0.5, else 0."""
        return (self.predict_proba(X)[:, 1] > 0.5).astype(np.int64)

    # ---- model file

    def save(self, path: str | os.PathLike) -> None:
        """Write a safetensors model file (no pickle) atomically."""
        from safetensors.numpy import save as st_save

        self._check_fitted()
        path = Path(path)
        tensors = {"support_vectors": self.support_vectors_.astype(np.float32),
                   "dual_coef": self.dual_coef_.astype(np.float64),
                   "support": self.support_.astype(np.int64)}
        if self.indices_ is not None:
            tensors["indices"] = self.indices_.astype(np.int64)
        from raid import __version__
        params = {k: v for k, v in self.get_params().items() if k != "indices"}
        meta = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION,
                "raid_version": __version__, "params": params, "backend": self.backend_,
                "solver": self.solver_, "n_features_in": int(self.n_features_in_),
                "gamma": self.gamma_, "intercept": self.intercept_,
                "platt_a": self.platt_a_, "platt_b": self.platt_b_}
        meta_json = json.dumps(meta, sort_keys=True)
        data = st_save(tensors, metadata={"format": FORMAT_NAME, "raid": meta_json,
                                          "sha256": _digest(tensors, meta_json)})
        write_bytes(path, data)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "RaidDetector":
        """Read a model written by `save`; any other or damaged file raises RaidError."""
        from safetensors.numpy import load as st_load

        path = Path(path)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise RaidError(f"cannot read model file ({exc.strerror or exc})", path) from None
        header = _safetensors_metadata(data, path)
        if header.get("format") != FORMAT_NAME or "raid" not in header or "sha256" not in header:
            raise RaidError("not a RAID model file (no RAID metadata)", path)
        try:
            tensors = st_load(data)
            meta = json.loads(header["raid"])
        except Exception as exc:
            raise RaidError(f"damaged RAID model file ({type(exc).__name__}: {exc})", path) from None
        if _digest(tensors, header["raid"]) != header["sha256"]:
            raise RaidError("damaged RAID model file (checksum mismatch: the file was altered)", path)
        version = meta.get("format_version")
        if version != FORMAT_VERSION:
            raise RaidError(f"RAID model format version {version} is not supported "
                            f"(this RAID reads version {FORMAT_VERSION})", path)
        try:
            params = dict(meta["params"])
            model = cls(**params, indices=tensors.get("indices"))
            model.backend_ = meta["backend"]
            model.solver_ = meta["solver"]
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
        except (KeyError, TypeError, ValueError) as exc:
            raise RaidError(f"damaged RAID model file (missing or bad entry {exc})", path) from None
        sv = model.support_vectors_
        width = len(model.indices_) if model.indices_ is not None else model.n_features_in_
        if sv.ndim != 2 or sv.shape != (len(model.dual_coef_), width):
            raise RaidError("damaged RAID model file (inconsistent tensor shapes)", path)
        return model


def _host(a: Any) -> np.ndarray:
    """A cuML / CuPy / numpy array as numpy."""
    if hasattr(a, "to_output"):
        a = a.to_output("numpy")
    if hasattr(a, "get"):
        a = a.get()
    return np.asarray(a)


def _digest(tensors: dict[str, np.ndarray], meta_json: str) -> str:
    """sha256 over the metadata JSON and every tensor's name, dtype, shape and bytes."""
    h = hashlib.sha256(meta_json.encode("utf-8"))
    for name in sorted(tensors):
        t = np.ascontiguousarray(tensors[name])
        h.update(f"\0{name}\0{t.dtype.str}\0{t.shape}\0".encode())
        h.update(t.tobytes())
    return h.hexdigest()


def _safetensors_metadata(data: bytes, path: Path) -> dict[str, str]:
    """The `__metadata__` of a safetensors file, checking its header and total length."""
    if len(data) < 8:
        raise RaidError(f"not a RAID model file (only {len(data)} bytes)", path)
    size = int.from_bytes(data[:8], "little")
    if size > len(data) - 8 or size > 100 * 2**20:
        raise RaidError("not a RAID model file (not safetensors, or truncated)", path)
    try:
        header = json.loads(data[8:8 + size].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise RaidError("not a RAID model file (not safetensors)", path) from None
    if not isinstance(header, dict):
        raise RaidError("not a RAID model file (not safetensors)", path)
    try:
        end = max((int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"),
                  default=0)
    except (TypeError, KeyError, IndexError, ValueError):
        raise RaidError("not a RAID model file (bad safetensors header)", path) from None
    if 8 + size + end != len(data):
        raise RaidError(f"damaged RAID model file (truncated or padded: {len(data)} bytes, "
                        f"header says {8 + size + end})", path)
    meta = header.get("__metadata__") or {}
    return meta if isinstance(meta, dict) else {}
