"""RBF decision values on the CPU in numpy: float32 BLAS products, no torch to import.

The same arithmetic as `raid.svm.kernel.RbfKernel` (which runs on CUDA and builds the
training Gram matrix): rows centred on a fixed vector, -gamma * squared norms summed in
float64 and rounded to float32, -gamma * ||x - s||^2 = -gamma |x|^2 - gamma |s|^2 +
2 gamma x.s from one float32 matrix product, clamped at 0 and exponentiated, then summed
against the dual coefficients in float64. Rows go in blocks so that memory stays bounded.
"""

from __future__ import annotations

import os
import sys

import numpy as np

BLOCK_BYTES = 1 << 26  # one float32 kernel block of 64 MiB
ROWS64 = 256  # rows widened to float64 at once for the sums against the coefficients


def cuda_present() -> bool:
    """True when torch sees a CUDA device; torch is imported only where an NVIDIA driver
    is installed (or torch is already loaded), so CPU-only machines never pay its import."""
    if "torch" not in sys.modules and not os.path.exists("/proc/driver/nvidia/version"):
        return False
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def resolve_device(device: str | None) -> str:
    """"auto" (or None) = "cuda" when present, else "cpu"; otherwise the name given."""
    if device in (None, "auto"):
        return "cuda" if cuda_present() else "cpu"
    return str(device)


def prepare(X: np.ndarray, center: np.ndarray, gamma: float,
            out: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Centred float32 rows (into `out` when given) and -gamma * their squared norms
    (float64 sums, then float32)."""
    x = np.subtract(X, center, dtype=np.float32, out=out)
    return x, scaled_norms(x, gamma)


def scaled_norms(x: np.ndarray, gamma: float) -> np.ndarray:
    """-gamma * the squared norms of float32 rows: one BLAS-free pass summing in float64
    (einsum, no float64 copy of the rows), rounded to float32."""
    return (np.einsum("ij,ij->i", x, x, dtype=np.float64) * -gamma).astype(np.float32)


def rbf_decision(X: np.ndarray, sv: np.ndarray, coef: np.ndarray, intercept: float,
                 gamma: float, center: np.ndarray, block: int | None = None) -> np.ndarray:
    """sum_j coef_j exp(-gamma ||x - sv_j||^2) + intercept for every row of X, in float64.

    The buffers are allocated once and reused by every block: fresh large arrays per block
    would cost a page fault per 4 KiB on first touch.
    """
    gamma = float(gamma)
    center = np.asarray(center, dtype=np.float32)
    s, ns = prepare(sv, center, gamma)
    c = np.asarray(coef, dtype=np.float64)
    if block is None:
        block = max(1, min(8192, BLOCK_BYTES // (4 * max(len(sv), 1))))
    block = max(1, min(block, len(X)))
    xbuf = np.empty((block, s.shape[1]), dtype=np.float32)
    kbuf = np.empty((block, len(s)), dtype=np.float32)
    wide = np.empty((min(block, ROWS64), len(s)), dtype=np.float64)
    out = np.empty(len(X), dtype=np.float64)
    for i in range(0, len(X), block):
        n = min(block, len(X) - i)
        x, nx = prepare(X[i:i + n], center, gamma, out=xbuf[:n])
        k = np.matmul(x, s.T, out=kbuf[:n])
        k *= np.float32(2.0 * gamma)
        k += nx[:, None]
        k += ns[None, :]
        np.minimum(k, 0.0, out=k)
        np.exp(k, out=k)
        for j in range(0, n, ROWS64):  # float64 sums, a few rows at a time (cache-sized)
            w = wide[:min(ROWS64, n - j)]
            np.copyto(w, k[j:j + ROWS64])
            np.matmul(w, c, out=out[i + j:i + j + len(w)])
    return out + float(intercept)
