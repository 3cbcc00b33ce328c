"""Fixtures of the service tests: a tiny random-weight bundle (the tiny AIM of
tests/conftest.py and an SVM fitted on its features of synthetic images), the pipeline
loaded from it (the reference the service must equal), and the service itself running in
this process on a free loopback port (LitServe's workers in child processes)."""

from __future__ import annotations

from pathlib import Path

import pytest

from raid.bench.serve import make_tiny_bundle
from raid.serve.service import running
from servekit import MAX_PIXELS, options


@pytest.fixture(scope="session")
def bundle(tiny_aim, tmp_path_factory) -> Path:
    aim = {k: tiny_aim[k] for k in ("arch", "backbone", "head")}
    return make_tiny_bundle(tmp_path_factory.mktemp("serve-bundle"), n_train=12, aim=aim)


@pytest.fixture(scope="session")
def pipeline(bundle):
    from raid.pipelines.pipeline import DetectorPipeline

    return DetectorPipeline.from_bundle(bundle, accelerator="cpu", max_pixels=MAX_PIXELS)


@pytest.fixture(scope="session")
def service(bundle) -> str:
    """Base URL of the shared service (no API key)."""
    with running(options(bundle)) as url:
        yield url
