"""File digests: one helper for checkpoints, stores and autoencoder folders.

A checkpoint of several GB takes seconds to hash, so digests are cached per process by
(path, size, modification time): loading the same file twice hashes it once, and a file
changed in place is hashed again.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from raid.primitives.errors import RaidError

_CACHE: dict[tuple[str, int, int], str] = {}
_COUNT = [0]  # files actually read and hashed in this process (tests count them)
CHUNK = 1 << 22


def file_sha256(path: str | os.PathLike) -> str:
    """sha256 (hex) of a file's bytes, cached by (resolved path, size, mtime)."""
    path = Path(path)
    try:
        st = path.stat()
        ident = (str(path.resolve()), st.st_size, st.st_mtime_ns)
        if ident in _CACHE:
            return _CACHE[ident]
        digest = hashlib.sha256()
        with open(path, "rb") as fh:
            while chunk := fh.read(CHUNK):
                digest.update(chunk)
    except OSError as exc:
        raise RaidError(f"cannot read: {exc.strerror or exc}", path) from None
    _COUNT[0] += 1
    _CACHE[ident] = digest.hexdigest()
    return _CACHE[ident]


def hash_calls() -> int:
    """How many files this process has read and hashed (cache hits excluded)."""
    return _COUNT[0]


def files_sha256(paths: list[Path], root: Path) -> str:
    """One sha256 over several files: each file's name relative to `root` and its digest,
    in sorted order (an autoencoder folder's config and weights)."""
    digest = hashlib.sha256()
    for p in sorted(paths, key=lambda p: p.relative_to(root).as_posix()):
        digest.update(p.relative_to(root).as_posix().encode("utf-8", "surrogateescape"))
        digest.update(b"\0" + file_sha256(p).encode() + b"\n")
    return digest.hexdigest()
