"""Folder conventions shared by images and imported features.

RAID follows the AIGCDetectBenchmark layout: `<root>/<generator>/[<subset>/]{0_real,1_fake}/<file>`.
A file's label comes from its nearest ancestor folder named `0_real` (0) or `1_fake` (1),
else it is unknown (-1). Its group is the first path component under the root, or the root's
own folder name when the label folders sit directly under the root (or the file does).
Its key is its path relative to the root, with forward slashes: unique within a root.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath
from typing import Iterator

REAL, FAKE, UNKNOWN = 0, 1, -1
LABEL_DIRS = {"0_real": REAL, "1_fake": FAKE}


def label_of(key: str) -> int:
    """Label from the nearest `0_real` / `1_fake` ancestor of a relative key."""
    for part in reversed(PurePosixPath(key).parts[:-1]):
        if part in LABEL_DIRS:
            return LABEL_DIRS[part]
    return UNKNOWN


def group_of(key: str, root: str | Path) -> str:
    """First component under the root, or the root's own name for label folders at the top."""
    parts = PurePosixPath(key).parts
    if len(parts) < 2 or parts[0] in LABEL_DIRS:
        return Path(os.path.abspath(root)).name
    return parts[0]


def walk(root: str | Path, suffixes: frozenset[str]) -> tuple[list[str], list[str]]:
    """Keys of the files under `root` whose lower-cased suffix is in `suffixes`, sorted,
    and the keys of the other files (counted and skipped by callers).

    Hidden files are included: a hidden name is still an image. Symlinked folders are
    not followed, so a link loop cannot hang a run.
    """
    root = Path(root)
    kept: list[str] = []
    other: list[str] = []
    for key in _iter_files(root):
        (kept if PurePosixPath(key).suffix.lower() in suffixes else other).append(key)
    return sorted(kept), sorted(other)


def _iter_files(root: Path) -> Iterator[str]:
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        rel = Path(dirpath).relative_to(root)
        for name in filenames:
            yield (rel / name).as_posix() if rel.parts else name
