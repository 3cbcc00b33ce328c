"""The torch RBF kernel: Gram matrix and decision values against scikit-learn."""

from __future__ import annotations

import numpy as np
from sklearn.svm import SVC
from svm_helpers import blobs

from raid.svm.kernel import RbfKernel


def test_gram_matches_float64_kernel():
    from sklearn.metrics.pairwise import rbf_kernel
    X, _ = blobs(700, 50, seed=2)
    X = X * 3 + 5  # off-centre, larger norms: the centring must absorb this
    gamma = 1 / 50
    K = RbfKernel(gamma, X.mean(0, dtype=np.float64)).gram(X)
    ref = rbf_kernel(X.astype(np.float64), gamma=gamma)
    assert K.dtype == np.float64 and K.flags.c_contiguous
    assert np.array_equal(K, K.T) and np.all(np.diag(K) == 1.0)
    assert np.abs(K - ref).max() < 1e-6


def test_scoring_matches_sklearn_decision_function(data):
    """The torch scorer alone (plain-path model) against libsvm's own decision values."""
    X, y, Xt, _ = data
    ref = SVC(kernel="rbf", C=2.0, gamma=0.03).fit(X, y)
    kernel = RbfKernel(0.03, ref.support_vectors_.mean(0))
    dec = kernel.decision(Xt, ref.support_vectors_.astype(np.float32), ref.dual_coef_[0],
                          ref.intercept_[0], batch=7)
    assert np.allclose(dec, ref.decision_function(Xt), atol=1e-6)


def test_gram_is_the_mirrored_upper_triangle_of_the_kernel_blocks(monkeypatch):
    """The CPU Gram matrix (numpy, `raid.svm.rbf_cpu.gram`, also behind `RbfKernel` on the
    CPU) is what one full-width kernel block per row panel gives on and right of the
    diagonal (the same products, cut differently: equal to float32 rounding), mirrored
    below it, with ones on the diagonal; small panels and strips, sizes that divide
    neither."""
    from raid.svm import rbf_cpu
    monkeypatch.setattr(rbf_cpu, "PANEL", 64)
    monkeypatch.setattr(rbf_cpu, "STRIP", 24)
    X, _ = blobs(2 * 64 + 38, 24, seed=4)
    center = X.mean(0, dtype=np.float64)
    K = RbfKernel(1 / 24, center, "cpu").gram(X)
    assert np.array_equal(K, rbf_cpu.gram(X, 1 / 24, center))
    x, nx = rbf_cpu.prepare(X, center.astype(np.float32), 1 / 24)
    ref = np.zeros((len(X), len(X)))
    for i in range(0, len(X), 64):
        out = np.empty((len(x[i:i + 64]), len(x) - i), dtype=np.float32)
        ref[i:i + 64, i:] = rbf_cpu.rbf_block(x[i:i + 64], nx[i:i + 64], x[i:], nx[i:],
                                              1 / 24, out)
    upper = np.triu_indices(len(X), 1)
    assert np.abs(K[upper] - ref[upper]).max() <= 1e-7
    assert np.array_equal(K, K.T) and np.all(np.diag(K) == 1.0)
    a = np.arange(49.0).reshape(7, 7)
    rbf_cpu.mirror_upper(a, tile=3)
    assert np.array_equal(a, np.triu(a) + np.triu(a, 1).T)
    assert np.array_equal(a[np.triu_indices(7)], np.arange(49.0).reshape(7, 7)[np.triu_indices(7)])
