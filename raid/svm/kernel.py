"""The RBF kernel in torch: kernel blocks, the Gram matrix handed to libsvm, and decision
values on a CUDA device. On the CPU the Gram matrix comes from `raid.svm.rbf_cpu` (numpy,
the same arithmetic), and so do the decision values of saved models."""

from __future__ import annotations

import warnings

import numpy as np
import torch

from raid.primitives.progress import Progress
from raid.svm import rbf_cpu
from raid.svm.rbf_cpu import mirror_upper, scaled_norms  # noqa: F401 (mirror_upper: re-export)

# Rows per kernel block: 2048 x 2048 float64 is 32 MiB, large enough for BLAS efficiency.
BLOCK = 2048
STRIP = 256  # rows per strip of a diagonal block of the Gram matrix


def torch_device(device: str | None) -> torch.device:
    """"auto" (or None) = CUDA when present, else the CPU; otherwise the named device."""
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
        self.device = torch_device(device)
        self.center = torch.as_tensor(np.asarray(center, dtype=np.float32), device=self.device)

    def prepare(self, X: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """Centred float32 rows on the device and -gamma * their squared norms (float32)."""
        x = np.ascontiguousarray(X, dtype=np.float32)
        if x.flags.writeable:
            t = torch.as_tensor(x, device=self.device)
        else:  # read-only input (e.g. a memmap) is fine: it is only read here
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
                t = torch.as_tensor(x, device=self.device)
        t = t - self.center
        if t.device.type == "cpu":  # einsum sums in float64 without a float64 copy of t
            return t, torch.from_numpy(scaled_norms(t.numpy(), self.gamma))
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

        Only the upper triangle is computed: row panels against the columns right of
        their diagonal block (wide products run BLAS efficiently), the diagonal block in
        narrower strips so that little below the diagonal is computed. Each product is
        widened to float64 straight into the matrix by torch (threaded, no intermediate
        array); the lower triangle is then mirrored from the upper one, which also makes
        the matrix exactly symmetric (a.b and b.a round differently in float32).
        """
        if self.device.type == "cpu":
            return rbf_cpu.gram(X, self.gamma, self.center.numpy(), progress)
        n = len(X)
        out = np.empty((n, n), dtype=np.float64)
        dst = torch.from_numpy(out)
        t, nt = self.prepare(X)
        for i in range(0, n, BLOCK):
            end = min(i + BLOCK, n)
            if end < n:
                dst[i:end, end:].copy_(self.block(t[i:end], nt[i:end], t[end:], nt[end:]))
            for r in range(i, end, STRIP):
                s = slice(r, min(r + STRIP, end))
                dst[s, r:end].copy_(self.block(t[s], nt[s], t[r:end], nt[r:end]))
            if progress is not None:
                progress.update(0)
        del t, nt
        mirror_upper(out)
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
