"""RaidDetector on the GPU: the cuML backend and torch kernels on CUDA.

Skipped where cuML or a CUDA device is absent (CI is CPU only)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.svm import SVC

from raid.svm.detector import RaidDetector, cuml_available
from raid.svm.kernel import RbfKernel

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
needs_cuml = pytest.mark.skipif(not cuml_available(), reason="cuML or a CUDA device is absent")


def blobs(n: int = 600, d: int = 32, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = np.repeat([0, 1], n // 2)
    X = rng.normal(size=(n, d)) + 0.6 * y[:, None] * rng.normal(size=d)
    return X.astype(np.float32), y


@needs_cuda
def test_gpu_kernel_matches_cpu_kernel():
    X, _ = blobs(900, 64)
    center = X.mean(0, dtype=np.float64)
    cpu = RbfKernel(1 / 64, center, "cpu").gram(X)
    gpu = RbfKernel(1 / 64, center, "cuda").gram(X)
    assert np.abs(cpu - gpu).max() < 1e-6


@needs_cuda
def test_sklearn_backend_with_gpu_kernel_matches_plain_svc():
    X, y = blobs()
    det = RaidDetector(backend="sklearn", device="cuda", progress=False).fit(X[:450], y[:450])
    ref = SVC(kernel="rbf", gamma=1 / 32).fit(X[:450], y[:450])
    assert np.array_equal(det.support_, ref.support_)
    assert np.allclose(det.decision_function(X[450:]), ref.decision_function(X[450:]), atol=1e-4)


@needs_cuml
def test_cuml_backend_attributes_and_decisions(tmp_path):
    from cuml.svm import SVC as CumlSVC

    X, y = blobs()
    Xtr, ytr, Xte = X[:450], y[:450], X[450:]
    det = RaidDetector(backend="cuml", progress=False).fit(Xtr, ytr)
    assert det.backend_ == "cuml" and det.solver_ == "cuml"
    assert det.support_vectors_.dtype == np.float32 and det.dual_coef_.dtype == np.float64
    assert det.support_vectors_.shape == (len(det.dual_coef_), 32)
    assert np.array_equal(det.support_vectors_, Xtr[det.support_])

    # Our torch scorer against cuML's own decision function on the same fit.
    native = CumlSVC(C=1.0, kernel="rbf", gamma=1 / 32, output_type="numpy").fit(
        Xtr, ytr.astype(np.float32))
    ref = np.asarray(native.decision_function(Xte)).ravel()
    assert np.allclose(det.decision_function(Xte), ref, atol=1e-3)

    # And against libsvm: same problem, another solver.
    plain = SVC(kernel="rbf", gamma=1 / 32).fit(Xtr, ytr).decision_function(Xte)
    assert np.mean((det.decision_function(Xte) > 0) == (plain > 0)) >= 0.99
    assert np.allclose(det.decision_function(Xte), plain, atol=2e-2)

    proba = det.predict_proba(Xte)
    det.save(tmp_path / "gpu.safetensors")
    again = RaidDetector.load(tmp_path / "gpu.safetensors")
    assert again.backend_ == "cuml"
    assert np.array_equal(again.predict_proba(Xte), proba)


@needs_cuml
def test_auto_backend_picks_cuml():
    X, y = blobs(200)
    assert RaidDetector(progress=False).fit(X, y).backend_ == "cuml"
