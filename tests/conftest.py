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


from raid.pipelines.demo import TINY_AIM_YAML  # noqa: E402  (the demo's tiny AIM serves the tests too)


@pytest.fixture(scope="session")
def tiny_aim(tmp_path_factory) -> dict:
    """A tiny random-weight AIM saved in the official two-file layout: the CLI arguments
    (--arch, --backbone, --head) as a dict of paths."""
    from raid.models.aim import load_config, random_aim, save_official_checkpoint

    d = tmp_path_factory.mktemp("tiny_aim")
    (d / "tiny.yaml").write_text(TINY_AIM_YAML)
    model = random_aim(load_config(d / "tiny.yaml"), seed=0)
    save_official_checkpoint(model, d / "backbone.pth", d / "head.pth")
    return {"arch": str(d / "tiny.yaml"), "backbone": str(d / "backbone.pth"),
            "head": str(d / "head.pth")}


def aim_args(tiny: dict) -> list[str]:
    return ["--arch", tiny["arch"], "--backbone", tiny["backbone"], "--head", tiny["head"]]
