"""Fixtures of the SVM tests: a small two-class problem and a detector fitted on it."""

from __future__ import annotations

import pytest
from svm_helpers import blobs

from raid.svm.detector import RaidDetector


@pytest.fixture(scope="module")
def data():
    X, y = blobs(400, 20, seed=1)
    return X[:300], y[:300], X[300:], y[300:]


@pytest.fixture(scope="module")
def fitted(data):
    X, y, _, _ = data
    return RaidDetector(backend="sklearn", progress=False).fit(X, y)
