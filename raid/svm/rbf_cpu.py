"""The RBF kernel on the CPU in numpy: decision values and the training Gram matrix from
float32 BLAS products, no torch to import (`raid fit` and `raid evaluate` on a CPU never
load it).

The same arithmetic as `raid.svm.kernel.RbfKernel` (its torch twin, for CUDA): rows
centred on a fixed vector, -gamma * squared norms summed in float64 and rounded to
float32, -gamma * ||x - s||^2 = -gamma |x|^2 - gamma |s|^2 + 2 gamma x.s from one float32
matrix product, clamped at 0 and exponentiated; decision values are then summed against
the dual coefficients in float64. Rows go in blocks so that memory stays bounded. (numpy's
BLAS also ran these products faster than torch's on the 2-core test machine.)
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


def rbf_block(a: np.ndarray, na: np.ndarray, b: np.ndarray, nb: np.ndarray, gamma: float,
              out: np.ndarray) -> np.ndarray:
    """Kernel block exp(-gamma ||a_i - b_j||^2) (float32, into the C-contiguous `out` of
    shape (len(a), len(b))) of prepared rows: one BLAS product, then in place
    2 gamma a.b - gamma |a|^2 - gamma |b|^2, clamped at 0 and exponentiated."""
    k = np.matmul(a, b.T, out=out)
    k *= np.float32(2.0 * gamma)
    k += na[:, None]
    k += nb[None, :]
    np.minimum(k, 0.0, out=k)
    return np.exp(k, out=k)


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
        k = rbf_block(x, nx, s, ns, gamma, kbuf[:n])
        for j in range(0, n, ROWS64):  # float64 sums, a few rows at a time (cache-sized)
            w = wide[:min(ROWS64, n - j)]
            np.copyto(w, k[j:j + ROWS64])
            np.matmul(w, c, out=out[i + j:i + j + len(w)])
    return out + float(intercept)


# Rows per panel of the Gram matrix: a 2048-row float32 product against the columns right
# of its diagonal block keeps BLAS efficient; diagonal blocks go in narrower strips so that
# little below the diagonal is computed.
PANEL = 2048
STRIP = 256


def gram(X: np.ndarray, gamma: float, center: np.ndarray, progress=None) -> np.ndarray:
    """The symmetric n x n training kernel matrix as C-contiguous float64 (libsvm's input),
    from float32 BLAS products (`rbf_block`), upper triangle only, then mirrored (which
    also makes it exactly symmetric: a.b and b.a round differently in float32); ones on
    the diagonal (||x - x|| = 0 exactly). `progress.update(0)` is called per panel."""
    gamma = float(gamma)
    n = len(X)
    out = np.empty((n, n), dtype=np.float64)
    x, nx = prepare(X, np.asarray(center, dtype=np.float32), gamma)
    scratch = np.empty(min(PANEL, n) * n, dtype=np.float32)  # one buffer for every block

    def block_into(dst: np.ndarray, rows: slice, cols: slice) -> None:
        m, p = rows.stop - rows.start, cols.stop - cols.start
        dst[...] = rbf_block(x[rows], nx[rows], x[cols], nx[cols], gamma,
                             scratch[:m * p].reshape(m, p))  # widened to float64 here

    for i in range(0, n, PANEL):
        end = min(i + PANEL, n)
        if end < n:
            block_into(out[i:end, end:], slice(i, end), slice(end, n))
        for r in range(i, end, STRIP):
            s = slice(r, min(r + STRIP, end))
            block_into(out[s, r:end], s, slice(r, end))
        if progress is not None:
            progress.update(0)
    del x, nx, scratch
    mirror_upper(out)
    np.fill_diagonal(out, 1.0)
    return out


def mirror_upper(a: np.ndarray, tile: int = 256) -> None:
    """Copy the upper triangle of the square matrix `a` onto its lower triangle, in place.

    Tile by tile, so that the transposed reads stay in cache.
    """
    n = len(a)
    for i in range(0, n, tile):
        d = a[i:i + tile, i:i + tile]
        d[:] = np.triu(d) + np.triu(d, 1).T
        for j in range(i + tile, n, tile):
            a[j:j + tile, i:i + tile] = a[i:i + tile, j:j + tile].T
