"""AIM weights files: loading Apple's official checkpoints (or one merged state dict),
writing the official two-file layout, and the digest that names a weights file.

Loading is strict by default (every key used, every tensor filled, right shapes), safe
(`torch.load(weights_only=True)` or safetensors, never pickled code) and cheap (tensors are
memory-mapped and adopted without copies). A file that is not a weights file gives one
line naming it and saying what it is instead.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import Any

import torch

from raid.models.aim_config import AimConfig, load_config
from raid.models.aim_net import AimModel, build_aim, persistent_tensors
from raid.primitives.errors import RaidError
from raid.primitives.fileio import atomic_path
from raid.primitives.hashing import file_sha256

_BLOCK_KEYS = ("attn.qkv.weight", "attn.proj.weight", "norm_1.weight", "norm_1.bias",
               "norm_2.weight", "norm_2.bias", "mlp.fc1.weight", "mlp.fc2.weight")
# How torch.save files start: a zip archive (torch >= 1.6) or a pickle (protocol >= 2).
_TORCH_STARTS = (b"PK\x03\x04", b"\x80")


def checkpoint_digest(path: str | os.PathLike) -> str:
    """sha256 (hex) of a weights file: its provenance (cached by path, size and mtime)."""
    return file_sha256(path)


def _abbrev(items: list[str], limit: int = 6) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f", ... (+{len(items) - limit} more)" if len(items) > limit else "")


def _natural(key: str) -> tuple:
    """Sort 'blocks.2' before 'blocks.10' in error messages."""
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in key.split("."))


def _unreadable_reason(path: Path, exc: Exception) -> str:
    """What a file that failed to load is, in words (never the loader's internals)."""
    try:
        with open(path, "rb") as fh:
            start = fh.read(8)
    except OSError as err:
        return f"cannot read: {err.strerror or err}"
    if not start:
        return "empty file, not a weights file"
    if path.suffix.lower() == ".safetensors":
        return "not a readable safetensors file (damaged, truncated or another format)"
    if start.startswith(_TORCH_STARTS):
        if "Unsupported global" in str(exc):  # the weights-only loader met a class
            return ("holds Python objects besides tensors; refused (only plain weights "
                    "files are loaded)")
        return ("not a readable PyTorch checkpoint (damaged, truncated, or a pickle of "
                "something else)")
    return "not a weights file (expected a PyTorch state dict .pth/.pt or a .safetensors file)"


def _read_state_dict(path: Path, map_location: Any) -> dict[str, torch.Tensor]:
    """A flat {name: tensor} from a .pth (weights_only, memory-mapped when possible) or
    .safetensors file; anything else is a RaidError naming the file."""
    if not path.is_file():
        raise RaidError("no such checkpoint file", path)
    try:
        if path.suffix.lower() == ".safetensors":
            from safetensors import safe_open

            device = str(map_location) if map_location is not None else "cpu"
            with safe_open(str(path), framework="pt", device=device) as f:
                obj: Any = {k: f.get_tensor(k) for k in f.keys()}
        else:
            # mmap needs the zip format (torch >= 1.6 default); legacy files load plainly.
            obj = torch.load(path, map_location=map_location, weights_only=True,
                             mmap=zipfile.is_zipfile(path))
    except Exception as exc:  # pickle with code, PNG, truncated zip, bad header, ...
        raise RaidError(_unreadable_reason(path, exc), path) from None
    # Apple's files are flat state dicts; training checkpoints often nest them.
    if isinstance(obj, dict):
        for key in ("state_dict", "model"):
            if isinstance(obj.get(key), dict) and not any(
                    isinstance(v, torch.Tensor) for v in obj.values()):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not obj or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()):
        raise RaidError("not a state dict of named tensors", path)
    return obj


def _unused_keys(config: AimConfig) -> set[str]:
    """State-dict keys that do not influence the features."""
    keys = {"trunk.post_trunk_norm.weight", "trunk.post_trunk_norm.bias", "head.linear.weight"}
    for i in range(config.last_probe_layer + 1, config.depth):
        keys.update(f"trunk.blocks.{i}.{name}" for name in _BLOCK_KEYS)
    return keys


def _read_files(files: list[Path], map_location: Any
                ) -> tuple[dict[str, torch.Tensor], dict[str, Path], str]:
    """The union of the files' state dicts, each key's file, and the files for messages."""
    where = " + ".join(map(str, files))
    state: dict[str, torch.Tensor] = {}
    origin: dict[str, Path] = {}
    for path in files:
        part = _read_state_dict(path, map_location)
        both = sorted(set(part) & set(state))
        if both:
            raise RaidError(f"keys present in both files: {_abbrev(both)}", where)
        state.update(part)
        origin.update(dict.fromkeys(part, path))
    return state, origin, where


def load_aim(config: AimConfig | str, backbone: str | os.PathLike | None,
             head: str | os.PathLike | None = None, *, map_location: Any = "cpu",
             strict: bool = True, truncate: bool = False,
             device: torch.device | str | None = None,
             dtype: torch.dtype | None = None) -> AimModel:
    """Load an AIM model from the official backbone + head .pth files, or from one merged
    state dict (.pth or .safetensors) when `head` is None.

    Every checkpoint key must be used and every parameter filled, with the right shape;
    strict=False tolerates unexpected keys and missing keys the features never use
    (later blocks, final norm, classifier: the model is then truncated). Tensors are
    memory-mapped and assigned without copies; `truncate=True` drops the unused parts
    before the move to `device`, so they never reach it. Float32 unless `dtype` says
    otherwise. Returns the model in eval mode without gradients.
    """
    if not isinstance(config, AimConfig):
        config = load_config(config)
    if backbone is None:
        raise RaidError("no AIM checkpoint given", head)
    files = [Path(backbone)] + ([Path(head)] if head is not None else [])
    state, origin, where = _read_files(files, map_location)

    model = build_aim(config, device="meta")
    expected = {k: (tuple(t.shape), t.is_floating_point())
                for k, t in persistent_tensors(model)}
    missing = sorted(set(expected) - set(state), key=_natural)
    unexpected = sorted(set(state) - set(expected), key=_natural)
    missing_needed = missing
    if not strict:
        for k in unexpected:
            del state[k]
        unexpected = []
        missing_needed = [k for k in missing if k not in _unused_keys(config)]
    problems = []
    if missing_needed:
        problems.append(f"missing keys: {_abbrev(missing_needed)}")
    if unexpected:
        problems.append(f"unexpected keys: {_abbrev(unexpected)}")
    wrong = [f"{k} {tuple(state[k].shape)} in {origin[k].name}, expected {shape}"
             for k, (shape, floating) in expected.items()
             if k in state and (tuple(state[k].shape) != shape
                                or state[k].is_floating_point() != floating)]
    if wrong:
        problems.append(f"mismatched shapes/dtypes: {_abbrev(wrong, 4)}")
    if problems:
        raise RaidError(f"checkpoint does not fit {config.name}: " + "; ".join(problems), where)

    if missing or truncate:  # missing: only unused parts (strict=False), so drop them
        model.truncate()
        kept = dict(persistent_tensors(model))
        state = {k: v for k, v in state.items() if k in kept}
    # assign=True adopts the (memory-mapped) tensors instead of copying into new ones.
    model.load_state_dict(state, strict=True, assign=True)
    # Still on the meta device until now; float32 whatever the checkpoint's dtype.
    model.reset_pos_embed(dtype=torch.float32)
    model.to(device=device, dtype=dtype or torch.float32)
    return model.eval().requires_grad_(False)


def save_official_checkpoint(model: AimModel, backbone_path: str | os.PathLike,
                             head_path: str | os.PathLike) -> None:
    """Write the official two-file layout: `head.*` keys to head_path, the rest to
    backbone_path (each written to a temp file and renamed into place)."""
    if model.truncated:
        raise ValueError("a truncated model cannot be saved in the official layout")
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    for target, part in ((backbone_path, {k: v for k, v in state.items()
                                          if not k.startswith("head.")}),
                         (head_path, {k: v for k, v in state.items()
                                      if k.startswith("head.")})):
        with atomic_path(target) as tmp:
            torch.save(part, tmp)
