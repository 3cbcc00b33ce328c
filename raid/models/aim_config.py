"""AIM sizes: the architecture of one AIM v1 model and its probe layers, read from YAML.

The named sizes (600m, 1b, 3b, 7b) ship inside the package (raid/data/aim/aim-<size>.yaml,
mirrored by configs/aim/ in the repository), so `load_config("3b")` works from any
install; any other size is a YAML file with the same keys.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from raid.primitives.config import builtin_path, load_yaml, looks_like_path
from raid.primitives.errors import RaidError

NAMED_SIZES = ("600m", "1b", "3b", "7b")
REQUIRED_KEYS = ("width", "depth", "heads", "probe_layers", "patch_size", "image_size")
OPTIONAL_KEYS = ("num_classes",)
PROBES = ("best", "last")


@dataclass(frozen=True)
class AimConfig:
    """Architecture of one AIM v1 model plus its probe layers (0-based block indices)."""

    name: str
    width: int
    depth: int
    heads: int
    probe_layers: tuple[int, ...]
    patch_size: int
    image_size: int
    num_classes: int = 1000  # ImageNet classifier of the probe head (unused by RAID)
    source: str = ""  # the YAML file it came from

    @property
    def head_dim(self) -> int:
        return self.width // self.heads

    @property
    def grid(self) -> int:
        """Patches per side (16 for 224 / 14)."""
        return self.image_size // self.patch_size

    @property
    def num_tokens(self) -> int:
        return self.grid * self.grid

    @property
    def last_probe_layer(self) -> int:
        return max(self.probe_layers)


def size_file(arch: str | os.PathLike) -> tuple[Path, str]:
    """A size name ("3b", "aim-3B") or a YAML path -> (file, display name)."""
    if looks_like_path(arch):
        path = Path(arch)
        if not path.is_file():
            raise RaidError("no such AIM config file", path)
        return path, path.stem
    name = os.fspath(arch).strip().lower().removeprefix("aim-").removeprefix("aim_")
    if name not in NAMED_SIZES:
        raise RaidError(f"unknown AIM size {os.fspath(arch)!r} (named sizes: "
                        f"{', '.join(NAMED_SIZES)}; or give a YAML file)")
    return builtin_path(f"aim/aim-{name}.yaml"), f"aim-{name}"


def _positive_int(data: Mapping[str, Any], key: str, path: Path) -> int:
    value = data[key]
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise RaidError(f"{key} must be a positive integer, got {value!r}", path)
    return value


def _probe_layers(data: Mapping[str, Any], depth: int, path: Path) -> list[int]:
    layers = data["probe_layers"]
    if (not isinstance(layers, list) or not layers
            or any(isinstance(i, bool) or not isinstance(i, int) for i in layers)):
        raise RaidError(f"probe_layers must be a non-empty list of integers, got {layers!r}",
                        path)
    bad = [i for i in layers if not 0 <= i < depth]
    if bad:
        raise RaidError(f"probe layer(s) {bad} outside 0..{depth - 1} (depth {depth})", path)
    if len(set(layers)) != len(layers):
        raise RaidError(f"probe_layers has duplicates: {layers}", path)
    return layers


def load_config(arch: str | os.PathLike, probe: str = "best") -> AimConfig:
    """Read an AIM config by size name or YAML path and validate it.

    probe="best" keeps the file's probe_layers; probe="last" uses the last
    len(probe_layers) blocks instead (the official "last layers" heads).
    """
    path, name = size_file(arch)
    data = load_yaml(path, known=REQUIRED_KEYS + OPTIONAL_KEYS, required=REQUIRED_KEYS)
    width, depth, heads, patch, image = (
        _positive_int(data, k, path)
        for k in ("width", "depth", "heads", "patch_size", "image_size"))
    num_classes = _positive_int(data, "num_classes", path) if "num_classes" in data else 1000
    if width % heads:
        raise RaidError(f"width {width} is not divisible by heads {heads}", path)
    if width % 4:  # the 2-D sine-cosine embedding splits the width in four
        raise RaidError(f"width {width} is not divisible by 4", path)
    if image % patch:
        raise RaidError(f"image_size {image} is not a multiple of patch_size {patch}", path)
    layers = _probe_layers(data, depth, path)
    if probe == "last":
        layers = list(range(depth - len(layers), depth))
    elif probe not in PROBES:
        raise RaidError(f"probe must be 'best' or 'last', got {probe!r}", path)
    return AimConfig(name=name, width=width, depth=depth, heads=heads,
                     probe_layers=tuple(layers), patch_size=patch, image_size=image,
                     num_classes=num_classes, source=str(path))
