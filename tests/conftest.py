"""Shared test fixtures; the plain helpers they use live in helpers.py (import them from
there: `from helpers import aim_args`).

`shared` is the read-only project data beside the checkout (`../shared`). Tests that need
it skip where it is absent, except when RAID_REQUIRE_SHARED=1 (set by `.ci/run`), where its
absence is a failure.
"""

from __future__ import annotations

from pathlib import Path

import pytest

# Re-exported for test modules that still write `from conftest import ...`.
from helpers import SHARED, TINY_AIM_YAML, aim_args, require_shared, write_tiny_aim

__all__ = ["SHARED", "TINY_AIM_YAML", "aim_args", "require_shared"]


@pytest.fixture(scope="session")
def seed_features() -> Path:
    return require_shared("seed-features")


@pytest.fixture(scope="session")
def bad_images() -> Path:
    return require_shared("bad-images")


@pytest.fixture(scope="session")
def tiny_aim(tmp_path_factory) -> dict:
    """A tiny random-weight AIM saved in the official two-file layout: the CLI arguments
    (--arch, --backbone, --head) as a dict of paths."""
    return write_tiny_aim(tmp_path_factory.mktemp("tiny_aim"))
