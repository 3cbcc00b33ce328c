"""Folder conventions shared by images and imported features.

RAID follows the AIGCDetectBenchmark layout: `<root>/<generator>/[<subset>/]{0_real,1_fake}/<file>`.
A file's label comes from its nearest ancestor folder named `0_real` (0) or `1_fake` (1),
else it is unknown (-1). Its group is the first path component under the root, or the root's
own folder name when the label folders sit directly under the root (or the file does).
Its key is its path relative to the root, with forward slashes: unique within a root.
"""

from __future__ import annotations

import logging
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from raid.primitives.fileio import file_kind
from raid.primitives.keys import display_key

log = logging.getLogger(__name__)

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
    and the keys of the other files (counted and skipped by callers). What `scan` skips
    (special files, link loops, unreadable folders) is logged as a warning with its reason."""
    found = scan(root, suffixes)
    for key, reason in found.skipped:
        log.warning("skipped %s: %s", display_key(os.path.join(str(root), key)), reason)
    return found.keys, found.other


@dataclass
class Scan:
    keys: list[str]  # files with a wanted suffix, sorted
    other: list[str]  # other files, sorted
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (key, reason), sorted


def scan(root: str | Path, suffixes: frozenset[str]) -> Scan:
    """Walk `root` (see `walk`).

    Hidden files are included: a hidden name is still an image. Symlinked folders are
    followed; a link back to a folder being walked (a loop) is skipped with its reason.
    FIFOs, sockets and devices are skipped with their reason (opening a FIFO would block
    the run). Links to files are kept as files (a dangling one then fails with its reason
    where it is read). Names that are not UTF-8 keep their bytes (see `raid.primitives.keys`).
    """
    out = Scan([], [], [])
    root_str = os.fspath(root)
    try:
        st = os.stat(root_str)
    except OSError:
        return out
    _walk_dir(root_str, "", {(st.st_dev, st.st_ino)}, suffixes, out)
    out.keys.sort(), out.other.sort(), out.skipped.sort()
    return out


def _walk_dir(path: str, prefix: str, ancestors: set[tuple[int, int]],
              suffixes: frozenset[str], out: Scan) -> None:
    try:
        with os.scandir(path) as it:
            entries = sorted(it, key=lambda e: e.name)
    except OSError as exc:
        out.skipped.append((prefix.rstrip("/") or ".", f"folder not readable "
                            f"({exc.strerror or exc})"))
        return
    for entry in entries:
        key = prefix + entry.name
        try:
            if entry.is_file(follow_symlinks=False):  # the common case, from d_type: no stat
                _add_file(key, suffixes, out)
                continue
            st = entry.stat(follow_symlinks=True)
        except OSError:
            if entry.is_symlink():  # dangling or looping link: kept as a file, as before
                _add_file(key, suffixes, out)
            else:
                out.skipped.append((key, "cannot read its file status"))
            continue
        if stat.S_ISDIR(st.st_mode):
            ident = (st.st_dev, st.st_ino)
            if ident in ancestors:
                out.skipped.append((key, "symlinked folder loops back to a folder above it"))
                continue
            _walk_dir(entry.path, key + "/", ancestors | {ident}, suffixes, out)
        elif stat.S_ISREG(st.st_mode):
            _add_file(key, suffixes, out)
        else:
            out.skipped.append((key, f"{file_kind(st.st_mode)}, not a regular file"))


def _add_file(key: str, suffixes: frozenset[str], out: Scan) -> None:
    (out.keys if PurePosixPath(key).suffix.lower() in suffixes else out.other).append(key)
