"""A small AIM configuration shared by the model tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers import SMALL_AIM_YAML

from raid.models.aim import AimConfig, load_config


@pytest.fixture()
def tiny_cfg(tmp_path: Path) -> AimConfig:
    path = tmp_path / "tiny.yaml"
    path.write_text(SMALL_AIM_YAML)
    return load_config(path)
