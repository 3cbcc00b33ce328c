"""Row keys: their bytes, their printable form, where an export may write them, and the
keys of reconstructions.

A key is a file's path relative to its root, with forward slashes, as a `str`. A file name
that is not UTF-8 keeps its bytes losslessly the way Python's `os` functions give it
(`surrogateescape`: each undecodable byte becomes a lone surrogate U+DC80..U+DCFF), so
`root / key` still opens the file. `key_bytes` gives the original bytes back (for seeds and
storage; for every valid key they are its UTF-8 encoding, so nothing changes for them) and
`display_key` a readable, printable form for messages.

The reconstruction of image `sub/a.jpg` is `sub/a.png` (same path, suffix .png); by
autoencoder `V` its row key is `V/sub/a.png`: the path, relative to a folder OUT, of the PNG
that `raid reconstruct --output OUT/V` writes. Real rows keep their image key and the
group `REAL_GROUP`.
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath
from typing import Sequence

from raid.primitives.errors import RaidError

REAL_GROUP = "real"

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_DRIVE = re.compile(r"^[A-Za-z]:")


def key_bytes(key: str) -> bytes:
    """The key's bytes: UTF-8, with the original bytes of a non-UTF-8 file name restored."""
    try:
        return key.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a lone surrogate no file name gives (e.g. from JSON)
        return key.encode("utf-8", "surrogatepass")


def key_from_bytes(data: bytes) -> str:
    """The key whose `key_bytes` are `data` (lossless for any bytes)."""
    return data.decode("utf-8", "surrogateescape")


def display_key(key: str) -> str:
    """A printable form: undecodable bytes as `\\xNN`, control characters as `\\xNN`;
    a valid key without control characters is returned unchanged."""
    text = key_bytes(key).decode("utf-8", "backslashreplace")
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def unsafe_reason(key: str) -> str | None:
    """Why `key` cannot name a file inside an output folder (None when it can): absolute,
    drive letter, `..`, backslash, NUL or control characters, or nothing left."""
    if "\0" in key:
        return "contains a NUL character"
    if _CONTROL.search(key):
        return "contains a control character"
    if key.startswith("/"):
        return "is an absolute path"
    if _DRIVE.match(key):
        return "starts with a drive letter"
    if "\\" in key:
        return "contains a backslash"
    parts = key.split("/")
    if ".." in parts:
        return "contains a '..' component"
    if not [p for p in parts if p not in ("", ".")]:
        return "names no file"
    return None


def relative_parts(key: str) -> tuple[str, ...]:
    """The key's path components with empty and `.` ones removed (`a//./b` -> (a, b));
    raises `RaidError` naming the key when it is unsafe (see `unsafe_reason`)."""
    reason = unsafe_reason(key)
    if reason is not None:
        raise RaidError(f"key '{display_key(key)}' {reason}; nothing was written")
    return tuple(p for p in key.split("/") if p not in ("", "."))


def reconstruction_key(key: str) -> str:
    """Where `raid reconstruct` writes the reconstruction of `key`: same path, suffix .png."""
    return str(PurePosixPath(key).with_suffix(".png"))


def paired_key(autoencoder: str, key: str) -> str:
    """The row key of image `key` reconstructed by autoencoder `autoencoder`."""
    return f"{autoencoder}/{reconstruction_key(key)}"


def find_collisions(keys: Sequence[str]) -> dict[str, list[str]]:
    """Output key -> the inputs mapping to it, for outputs claimed by several inputs
    (`a.jpg` and `a.png` in one folder both become `a.png`)."""
    claims: dict[str, list[str]] = {}
    for key in keys:
        claims.setdefault(reconstruction_key(key), []).append(key)
    return {out: ins for out, ins in sorted(claims.items()) if len(ins) > 1}
