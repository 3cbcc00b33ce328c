"""Low-level HDF5 helpers of the feature store: reopening a file whose writer was killed,
and ragged byte columns.

A store is written in SWMR mode, which keeps the file consistent on disk at every moment
but marks it "open for write" in its superblock; a writer killed by SIGKILL leaves the
mark set, and HDF5 then refuses to open the file for writing ("use h5clear"). Holding
the store's lock proves no writer is alive, so `clear_write_flags` does what `h5clear -s
-i` does: clear the flags and raise the recorded end of file to the real one (so new
space never overlaps bytes the killed writer had written), then fix the checksum.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np

SIGNATURE = b"\x89HDF\r\n\x1a\n"


def _rot(x: int, k: int) -> int:
    return ((x << k) | (x >> (32 - k))) & 0xFFFFFFFF


def lookup3(data: bytes, initval: int = 0) -> int:
    """Bob Jenkins' lookup3 `hashlittle`, the checksum HDF5 puts on its metadata."""
    m = 0xFFFFFFFF
    a = b = c = (0xDEADBEEF + len(data) + initval) & m
    n, i = len(data), 0
    while n > 12:
        a = (a + int.from_bytes(data[i:i + 4], "little")) & m
        b = (b + int.from_bytes(data[i + 4:i + 8], "little")) & m
        c = (c + int.from_bytes(data[i + 8:i + 12], "little")) & m
        a = (a - c) & m; a ^= _rot(c, 4); c = (c + b) & m
        b = (b - a) & m; b ^= _rot(a, 6); a = (a + c) & m
        c = (c - b) & m; c ^= _rot(b, 8); b = (b + a) & m
        a = (a - c) & m; a ^= _rot(c, 16); c = (c + b) & m
        b = (b - a) & m; b ^= _rot(a, 19); a = (a + c) & m
        c = (c - b) & m; c ^= _rot(b, 4); b = (b + a) & m
        n -= 12
        i += 12
    if n == 0:
        return c
    tail = data[i:i + n] + bytes(12 - n)
    a = (a + int.from_bytes(tail[0:4], "little")) & m
    b = (b + int.from_bytes(tail[4:8], "little")) & m
    c = (c + int.from_bytes(tail[8:12], "little")) & m
    c ^= b; c = (c - _rot(b, 14)) & m
    a ^= c; a = (a - _rot(c, 11)) & m
    b ^= a; b = (b - _rot(a, 25)) & m
    c ^= b; c = (c - _rot(b, 16)) & m
    a ^= c; a = (a - _rot(c, 4)) & m
    b ^= a; b = (b - _rot(a, 14)) & m
    c ^= b; c = (c - _rot(b, 24)) & m
    return c


def write_flags_set(path: Path) -> bool:
    """Whether the superblock (version 2 or 3) says a writer has the file open."""
    with open(path, "rb") as fh:
        head = fh.read(12)
    return head[:8] == SIGNATURE and head[8] in (2, 3) and head[11] != 0


def clear_write_flags(path: Path) -> bool:
    """Clear a killed writer's "open for write" flags (call only while holding the lock).
    Returns whether anything was changed. Superblock v2/v3 only (what `libver="latest"`
    writes); other files are left alone."""
    with open(path, "r+b") as fh:
        head = fh.read(12)
        if head[:8] != SIGNATURE or head[8] not in (2, 3) or head[11] == 0:
            return False
        size_of_offsets = head[9]
        if size_of_offsets != 8:
            return False
        body = head + fh.read(4 * 8)
        base, ext, eof, root = struct.unpack("<4Q", body[12:44])
        eof = max(eof, os.fstat(fh.fileno()).st_size)
        body = head[:11] + b"\x00" + struct.pack("<4Q", base, ext, eof, root)
        fh.seek(0)
        fh.write(body + struct.pack("<I", lookup3(body)))
        fh.flush()
        os.fsync(fh.fileno())
    return True


def split_ragged(blob: np.ndarray, ends: np.ndarray) -> list[str]:
    """Decode entries stored as concatenated UTF-8 bytes (surrogateescape: any file name
    round-trips) and their end offsets."""
    data = blob.tobytes()
    starts = np.concatenate([[0], ends[:-1]]) if len(ends) else ends
    if not len(blob) or int(blob.max()) < 128:  # ASCII: byte offsets are str offsets
        text = data.decode("ascii")
        return [text[s:e] for s, e in zip(starts.tolist(), ends.tolist())]
    return [data[s:e].decode("utf-8", "surrogateescape")
            for s, e in zip(starts.tolist(), ends.tolist())]


def join_ragged(items: list[str], offset: int) -> tuple[np.ndarray, np.ndarray]:
    """(bytes, end offsets starting after `offset`) of `items`, the inverse of split_ragged."""
    encoded = [s.encode("utf-8", "surrogateescape") for s in items]
    ends = offset + np.cumsum([len(e) for e in encoded], dtype=np.int64)
    return np.frombuffer(b"".join(encoded), np.uint8), ends.astype(np.int64)
