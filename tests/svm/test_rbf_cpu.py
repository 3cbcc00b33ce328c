"""CPU scoring in numpy (`raid.svm.rbf_cpu`): the same decision values as libsvm and as the
torch kernel, without importing torch, scikit-learn or SciPy; the one threshold."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from sklearn.svm import SVC
from svm_helpers import blobs

from raid.primitives.decision import THRESHOLD
from raid.svm.detector import RaidDetector
from raid.svm.kernel import RbfKernel
from raid.svm.rbf_cpu import rbf_decision, resolve_device


@pytest.fixture(scope="module")
def plain():
    """A plain libsvm model on off-centre data (larger norms: the centring must absorb it)."""
    X, y = blobs(500, 40, seed=3)
    X = X * 2 + 3
    return SVC(kernel="rbf", C=2.0, gamma=0.02).fit(X[:350], y[:350]), X[350:]


@pytest.mark.parametrize("block", [None, 1, 7, 150])
def test_decision_matches_libsvm(plain, block):
    """Every row scored once whatever the block size (1, one that divides nothing, all)."""
    ref, Xt = plain
    sv = ref.support_vectors_.astype(np.float32)
    dec = rbf_decision(Xt, sv, ref.dual_coef_[0], ref.intercept_[0], 0.02,
                       sv.mean(0, dtype=np.float64), block=block)
    assert dec.dtype == np.float64 and dec.shape == (len(Xt),)
    assert np.abs(dec - ref.decision_function(Xt)).max() < 1e-6


def test_decision_matches_the_torch_kernel(plain):
    """The numpy CPU path and the torch path (kept for CUDA) do the same arithmetic."""
    ref, Xt = plain
    sv = ref.support_vectors_.astype(np.float32)
    center = sv.mean(0, dtype=np.float64)
    args = (sv, ref.dual_coef_[0], ref.intercept_[0])
    a = rbf_decision(Xt, *args, 0.02, center)
    b = RbfKernel(0.02, center, "cpu").decision(Xt, *args)
    assert np.abs(a - b).max() < 1e-6


def test_detector_and_scorer_share_the_numpy_path(fitted, data, monkeypatch):
    """`RaidDetector.decision_function` on the CPU is `rbf_decision` (no torch kernel)."""
    from raid.svm import kernel as kernel_module
    _, _, Xt, _ = data
    fitted.device = "cpu"
    expected = rbf_decision(Xt, fitted.support_vectors_, fitted.dual_coef_,
                            fitted.intercept_, fitted.gamma_,
                            fitted.support_vectors_.mean(0, dtype=np.float64))

    def fail(*args, **kwargs):
        raise AssertionError("the torch kernel scored on the CPU")
    monkeypatch.setattr(kernel_module.RbfKernel, "decision", fail)
    try:
        assert np.array_equal(fitted.decision_function(Xt), expected)
    finally:
        fitted.device = "auto"


def test_gram_norms_equal_the_float64_torch_sums():
    """The Gram matrix's norms (numpy einsum on CPU tensors) round to the same float32
    values as summing the squares in float64 with torch, to one float32 ulp."""
    X, _ = blobs(600, 300, seed=5)
    X = X * 4 + 1
    kernel = RbfKernel(1 / 300, X.mean(0, dtype=np.float64), "cpu")
    t, nt = kernel.prepare(X)
    ref = (t.double().square().sum(1) * -kernel.gamma).float()
    assert nt.dtype == torch.float32
    assert torch.all((nt - ref).abs() <= ref.abs() * 2.0 ** -23)


def test_auto_device_is_cuda_only_where_torch_sees_it():
    assert resolve_device("auto") == resolve_device(None) == \
        ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cpu") == "cpu"


def test_one_threshold():
    from raid.svm.detector import DEFAULT_THRESHOLD, RaidDetector
    assert DEFAULT_THRESHOLD == THRESHOLD == RaidDetector().threshold == 0.5


def test_scoring_imports_neither_torch_nor_scikit_learn(fitted, data, tmp_path):
    """A fresh interpreter: importing the scorer loads no torch, scikit-learn or SciPy, and
    neither does loading a model and scoring on the CPU; the values equal the detector's."""
    _, _, Xt, _ = data
    fitted.save(tmp_path / "m")
    np.save(tmp_path / "x.npy", Xt)
    heavy = "sorted(k for k in sys.modules if k.split('.')[0] in ('torch', 'sklearn', 'scipy'))"
    code = ("import sys, numpy as np; import raid.svm.scorer as s; "
            f"print({heavy}); "
            f"m = s.SvmScorer.load({str(tmp_path / 'm')!r}); m.device = 'cpu'; "
            f"np.save({str(tmp_path / 'd.npy')!r}, "
            f"m.decision_function(np.load({str(tmp_path / 'x.npy')!r}))); "
            f"print({heavy})")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.split("\n")[:2] == ["[]", "[]"], out.stdout
    fitted.device = "cpu"
    try:
        assert np.array_equal(np.load(tmp_path / "d.npy"), fitted.decision_function(Xt))
    finally:
        fitted.device = "auto"


def test_fitting_on_the_cpu_imports_no_torch(data):
    """A fresh interpreter fits on the CPU (Gram matrix, folds, Platt) without loading
    torch: `raid fit` does not pay its import; the model equals this process's."""
    X, y, Xt, _ = data
    code = ("import sys, numpy as np; from raid.svm.detector import RaidDetector; "
            f"X, y = np.asarray({X[::4].tolist()!r}, np.float32), np.asarray({y[::4].tolist()!r}); "
            "d = RaidDetector(backend='sklearn', device='cpu', progress=False).fit(X, y); "
            "print('torch' in sys.modules, d.platt_a_, d.platt_b_, len(d.support_))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    here = RaidDetector(backend="sklearn", device="cpu", progress=False).fit(X[::4], y[::4])
    assert out.stdout.split() == ["False", repr(here.platt_a_), repr(here.platt_b_),
                                  str(len(here.support_))], out.stdout


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_scoring_matches_cpu_scoring(fitted, data):
    """device="cuda" scores with the torch kernel on the GPU: the CPU's values to 1e-6."""
    _, _, Xt, _ = data
    try:
        fitted.device = "cuda"
        gpu = fitted.decision_function(Xt)
        fitted.device = "cpu"
        cpu = fitted.decision_function(Xt)
    finally:
        fitted.device = "auto"
    assert np.abs(gpu - cpu).max() < 1e-6
