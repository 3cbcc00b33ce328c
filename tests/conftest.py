"""Shared test fixtures.

`shared` is the read-only project data beside the checkout (`../shared`). Tests that need
it skip where it is absent, except when RAID_REQUIRE_SHARED=1 (set by `.ci/run`), where its
absence is a failure.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[2] / "shared"


def require_shared(*parts: str) -> Path:
    path = SHARED.joinpath(*parts)
    if not path.exists():
        if os.environ.get("RAID_REQUIRE_SHARED") == "1":
            pytest.fail(f"{path} is missing (RAID_REQUIRE_SHARED=1)")
        pytest.skip(f"{path} is absent")
    return path


@pytest.fixture(scope="session")
def seed_features() -> Path:
    return require_shared("seed-features")


@pytest.fixture(scope="session")
def bad_images() -> Path:
    return require_shared("bad-images")
