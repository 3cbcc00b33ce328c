"""Platt scaling: the sigmoid that turns SVM decision values into P(generated).

Implemented here once for every training backend: scikit-learn deprecates and cuML removed
`probability=True`, and the two would otherwise calibrate differently.
"""

from __future__ import annotations

import logging

import numpy as np

logger = logging.getLogger(__name__)


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
