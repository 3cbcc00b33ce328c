"""Platt scaling: recovery of a known sigmoid and the minimum of Platt's loss."""

from __future__ import annotations

import numpy as np
import pytest

from raid.svm.platt import fit_platt, platt_probability


def test_platt_recovers_known_sigmoid():
    rng = np.random.default_rng(3)
    f = rng.uniform(-3, 3, 40000)
    a_true, b_true = -2.0, 0.5
    y = rng.random(len(f)) < platt_probability(f, a_true, b_true)
    a, b = fit_platt(f, y)
    assert a == pytest.approx(a_true, abs=0.08) and b == pytest.approx(b_true, abs=0.06)


def test_platt_separable_data_matches_direct_minimisation():
    """Perfectly separated values: only the smoothed targets keep A finite. The Newton fit
    must land on the minimum of Platt's loss, checked against scipy's BFGS."""
    from scipy.optimize import minimize
    f = np.concatenate([np.linspace(-5, -1, 50), np.linspace(1, 5, 70)])
    y = (f > 0).astype(int)
    a, b = fit_platt(f, y)
    t = np.where(y == 1, 71 / 72, 1 / 52)

    def loss(ab):
        z = ab[0] * f + ab[1]
        return np.sum(np.logaddexp(0, z) - (1 - t) * z)

    ref = minimize(loss, [0.0, 0.0], method="BFGS", options={"gtol": 1e-10})
    assert np.isfinite([a, b]).all() and a < 0
    assert a == pytest.approx(ref.x[0], abs=1e-4) and b == pytest.approx(ref.x[1], abs=1e-4)
    assert loss([a, b]) <= ref.fun + 1e-9
