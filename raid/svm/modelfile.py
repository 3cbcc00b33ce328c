"""The RAID model file: safetensors (no pickle), written atomically.

Tensors hold the arrays (support vectors, dual coefficients, support rows, indices); the
safetensors metadata holds `format` ("raid-svm"), `raid` (a JSON object: format version,
RAID version, parameters, gamma, intercept, Platt A and B, threshold, and the provenance of
the features the model was fitted on) and `sha256` (over that JSON and every tensor), so
any altered byte is refused on load.

Format versions: 1 had no provenance and no threshold (read as None and 0.5); 2 has both.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from raid.primitives.errors import RaidError
from raid.primitives.fileio import write_bytes

FORMAT_NAME = "raid-svm"
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)


def write_model(path: str | os.PathLike, tensors: dict[str, np.ndarray],
                meta: dict[str, Any]) -> None:
    """Write tensors and the `raid` metadata (format fields added here) atomically."""
    from safetensors.numpy import save as st_save

    from raid import __version__

    meta = {**meta, "format": FORMAT_NAME, "format_version": FORMAT_VERSION,
            "raid_version": __version__}
    meta_json = json.dumps(meta, sort_keys=True, allow_nan=False)
    data = st_save(tensors, metadata={"format": FORMAT_NAME, "raid": meta_json,
                                      "sha256": digest(tensors, meta_json)})
    write_bytes(Path(path), data)


def read_model(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Tensors and `raid` metadata of a RAID model file, checked; else RaidError naming it."""
    from safetensors.numpy import load as st_load

    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise RaidError(f"cannot read model file ({exc.strerror or exc})", path) from None
    header = safetensors_metadata(data, path)
    if header.get("format") != FORMAT_NAME or "raid" not in header or "sha256" not in header:
        raise RaidError("not a RAID model file (no RAID metadata)", path)
    try:
        tensors = st_load(data)
        meta = json.loads(header["raid"])
    except Exception as exc:
        raise RaidError(f"damaged RAID model file ({type(exc).__name__}: {exc})", path) from None
    if digest(tensors, header["raid"]) != header["sha256"]:
        raise RaidError("damaged RAID model file (checksum mismatch: the file was altered)", path)
    version = meta.get("format_version") if isinstance(meta, dict) else None
    if version not in READABLE_VERSIONS:
        raise RaidError(f"RAID model format version {version} is not supported (this RAID "
                        f"reads versions {', '.join(map(str, READABLE_VERSIONS))})", path)
    return tensors, meta


def digest(tensors: dict[str, np.ndarray], meta_json: str) -> str:
    """sha256 over the metadata JSON and every tensor's name, dtype, shape and bytes."""
    h = hashlib.sha256(meta_json.encode("utf-8"))
    for name in sorted(tensors):
        t = np.ascontiguousarray(tensors[name])
        h.update(f"\0{name}\0{t.dtype.str}\0{t.shape}\0".encode())
        h.update(t.tobytes())
    return h.hexdigest()


def safetensors_metadata(data: bytes, path: Path) -> dict[str, str]:
    """The `__metadata__` of a safetensors file, checking its header and total length."""
    if len(data) < 8:
        raise RaidError(f"not a RAID model file (only {len(data)} bytes)", path)
    size = int.from_bytes(data[:8], "little")
    if size > len(data) - 8 or size > 100 * 2**20:
        raise RaidError("not a RAID model file (not safetensors, or truncated)", path)
    try:
        header = json.loads(data[8:8 + size].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise RaidError("not a RAID model file (not safetensors)", path) from None
    if not isinstance(header, dict):
        raise RaidError("not a RAID model file (not safetensors)", path)
    try:
        end = max((int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"),
                  default=0)
    except (TypeError, KeyError, IndexError, ValueError):
        raise RaidError("not a RAID model file (bad safetensors header)", path) from None
    if 8 + size + end != len(data):
        raise RaidError(f"damaged RAID model file (truncated or padded: {len(data)} bytes, "
                        f"header says {8 + size + end})", path)
    meta = header.get("__metadata__") or {}
    return meta if isinstance(meta, dict) else {}
