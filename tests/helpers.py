"""Shared test helpers (plain functions; the fixtures that use them are in conftest.py).

Import them as `from helpers import ...`: pytest puts tests/ on sys.path (it holds
conftest.py and no __init__.py). Synthetic images come from `raid.primitives.synthetic`.
"""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import pytest

from raid.pipelines.demo_data import TINY_AIM_YAML  # the demo's tiny AIM serves the tests too

SHARED = Path(__file__).resolve().parents[2] / "shared"

__all__ = ["SHARED", "TINY_AIM_YAML", "aim_args", "require_shared", "write_tiny_aim"]


def require_shared(*parts: str) -> Path:
    """A path under the read-only project data `../shared`; the test skips where it is
    absent, except with RAID_REQUIRE_SHARED=1 (set by `.ci/run`), where it fails."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        if os.environ.get("RAID_REQUIRE_SHARED") == "1":
            pytest.fail(f"{path} is missing (RAID_REQUIRE_SHARED=1)")
        pytest.skip(f"{path} is absent")
    return path


def write_tiny_aim(folder: Path, seed: int = 0) -> dict:
    """A tiny random-weight AIM saved in the official two-file layout under `folder`: the
    CLI arguments (arch, backbone, head) as a dict of paths."""
    from raid.models.aim import load_config, random_aim, save_official_checkpoint

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "tiny.yaml").write_text(TINY_AIM_YAML)
    model = random_aim(load_config(folder / "tiny.yaml"), seed=seed)
    save_official_checkpoint(model, folder / "backbone.pth", folder / "head.pth")
    return {"arch": str(folder / "tiny.yaml"), "backbone": str(folder / "backbone.pth"),
            "head": str(folder / "head.pth")}


def aim_args(tiny: dict) -> list[str]:
    """--arch, --backbone, --head for a model made by `write_tiny_aim`."""
    return ["--arch", tiny["arch"], "--backbone", tiny["backbone"], "--head", tiny["head"]]


#: A small AIM size (width 64, 4 blocks) for the model tests: bigger than the demo's tiny one.
SMALL_AIM_YAML = """\
width: 64
depth: 4
heads: 4
probe_layers: [1, 2]
patch_size: 14
image_size: 56
"""


def bomb_png(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims width x height pixels (a decompression bomb's header)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
            + chunk(b"IDAT", zlib.compress(b"\0" * 1024)) + chunk(b"IEND", b""))
