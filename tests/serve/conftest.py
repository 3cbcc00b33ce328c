"""Fixtures of the service tests: a tiny random-weight bundle (the tiny AIM of
tests/conftest.py and an SVM fitted on its features of synthetic images), the pipeline
loaded from it (the reference the service must equal), and the service itself running in
this process on a free loopback port (LitServe's workers in child processes)."""

from __future__ import annotations

from pathlib import Path

import pytest

from raid.bench.serve import make_tiny_bundle
from raid.serve.app import ServeOptions
from raid.serve.service import running

#: The limits of the shared test service (small, so the refusals are cheap to provoke).
MAX_UPLOAD_MB = 1.0
MAX_PIXELS = 2_000_000
MAX_FILES = 6


@pytest.fixture(scope="session")
def bundle(tiny_aim, tmp_path_factory) -> Path:
    aim = {k: tiny_aim[k] for k in ("arch", "backbone", "head")}
    return make_tiny_bundle(tmp_path_factory.mktemp("serve-bundle"), n_train=12, aim=aim)


@pytest.fixture(scope="session")
def pipeline(bundle):
    from raid.pipelines.pipeline import DetectorPipeline

    return DetectorPipeline.from_bundle(bundle, accelerator="cpu", max_pixels=MAX_PIXELS)


def options(bundle: Path, **changes) -> ServeOptions:
    base = dict(bundle=str(bundle), port=0, accelerator="cpu", max_upload_mb=MAX_UPLOAD_MB,
                max_pixels=MAX_PIXELS, max_files=MAX_FILES, max_batch_size=4,
                batch_timeout=0.005)
    return ServeOptions(**{**base, **changes})


@pytest.fixture(scope="session")
def service(bundle) -> str:
    """Base URL of the shared service (no API key)."""
    with running(options(bundle)) as url:
        yield url
