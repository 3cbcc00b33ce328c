"""Atomic file output: a file appears whole under its name, or not at all.

Everything RAID writes (stores, models, reports, exported features, images) goes through
`atomic_path`, so a crash or a user error never leaves a half-written file behind. The
content is written to a temporary file in the target's folder and renamed over it.

- A symlinked target is written through: the link stays, the file it points to gets the new
  content (a dangling link creates its target).
- An existing target that is not a regular file (a folder, a device such as /dev/null, a
  FIFO, a socket) is refused with one line before anything is written: renaming over it
  would replace a device node with a plain file, or fail half-way.
- Replacing a file keeps its permission bits; a new file gets 0666 minus the umask.
"""

from __future__ import annotations

import os
import stat
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from raid.primitives.errors import RaidError

_KINDS = ((stat.S_ISDIR, "a folder"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISFIFO, "a FIFO"),
          (stat.S_ISSOCK, "a socket"))


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def file_kind(mode: int) -> str:
    """'a folder', 'a FIFO', ... for a non-regular `st_mode` ('a special file' otherwise)."""
    return next((name for test, name in _KINDS if test(mode)), "a special file")


def output_target(target: str | os.PathLike) -> tuple[Path, int | None]:
    """The file a write to `target` replaces (a symlink's final target) and the permission
    bits of the file there (None when there is none yet); raises `RaidError` naming
    `target` when something other than a regular file is there."""
    target = Path(target)
    real = Path(os.path.realpath(target)) if target.is_symlink() else target
    try:
        st = os.stat(real)
    except FileNotFoundError:
        return real, None
    except OSError as exc:
        raise RaidError(f"cannot write: {exc.strerror or exc}", target) from None
    if not stat.S_ISREG(st.st_mode):
        raise RaidError(f"exists and is {file_kind(st.st_mode)}, not a regular file; "
                        "not replaced", target)
    return real, stat.S_IMODE(st.st_mode)


@contextmanager
def atomic_path(target: str | os.PathLike, fsync: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside the file `target` names; rename it over that file when
    the block ends normally, delete it when the block raises (see the module policies)."""
    real, mode = output_target(target)
    real.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{real.name}.", suffix=".tmp", dir=real.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, mode if mode is not None else 0o666 & ~_umask())  # mkstemp: 0600
        if fsync:
            with open(tmp_path, "rb+") as fh:
                os.fsync(fh.fileno())
        os.replace(tmp_path, real)
    finally:
        tmp_path.unlink(missing_ok=True)


def write_bytes(target: str | os.PathLike, data: bytes) -> None:
    """Write `data` atomically; an OS failure becomes a one-line RaidError naming the file."""
    try:
        with atomic_path(target) as tmp:
            tmp.write_bytes(data)
    except OSError as exc:
        raise RaidError(f"cannot write: {exc.strerror or exc}", target) from None


def write_text(target: str | os.PathLike, text: str) -> None:
    write_bytes(target, text.encode("utf-8"))
