"""AIM v1 (Apple's autoregressive image model) with its attention-probe head: the RAID
feature extractor.

One builder serves every size; a size is a small YAML file (configs/aim/aim-<name>.yaml or
any path). Parameter and buffer names are exactly those of Apple's published two-file
checkpoints (backbone .pth + head .pth), so they load without renaming.

The RAID feature is the attention-probe's pooled vector (B, width): the mean of the probe
blocks' outputs, batch-normalised with running statistics, attended by one learned query.
Only the blocks up to the last probe layer affect it, so `model(x)` stops there; the
ImageNet classifier (`head.linear`) and the trunk's final LayerNorm are never needed.
"""

from __future__ import annotations

import hashlib
import math
import os
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

import torch
import torch.nn.functional as F
import yaml
from torch import nn

import raid
from raid.primitives.errors import RaidError

__all__ = [
    "AimConfig",
    "AimModel",
    "CONFIG_DIR",
    "NAMED_SIZES",
    "load_config",
    "build_aim",
    "load_aim",
    "random_aim",
    "save_official_checkpoint",
    "checkpoint_digest",
    "sincos_pos_embed",
]

CONFIG_DIR = Path(raid.__file__).resolve().parents[1] / "configs" / "aim"
NAMED_SIZES = ("600m", "1b", "3b", "7b")
LN_EPS = 1e-6  # every LayerNorm and the probe's BatchNorm
_REQUIRED_KEYS = ("width", "depth", "heads", "probe_layers", "patch_size", "image_size")
_OPTIONAL_KEYS = ("num_classes",)


# --------------------------------------------------------------------------- config


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


def _resolve_config_path(arch: str | os.PathLike) -> tuple[Path, str]:
    """A size name ("3b", "aim-3B") or a YAML path -> (file, display name)."""
    text = os.fspath(arch)
    path = Path(text)
    if path.suffix.lower() in (".yaml", ".yml") or os.sep in text or path.exists():
        if not path.is_file():
            raise RaidError("no such AIM config file", path)
        return path, path.stem
    name = text.strip().lower().removeprefix("aim-").removeprefix("aim_")
    path = CONFIG_DIR / f"aim-{name}.yaml"
    if not path.is_file():
        raise RaidError(f"unknown AIM size {text!r} (named sizes: {', '.join(NAMED_SIZES)}; "
                        "or give a YAML file)", path)
    return path, f"aim-{name}"


def _positive_int(data: Mapping[str, Any], key: str, path: Path) -> int:
    value = data[key]
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise RaidError(f"{key} must be a positive integer, got {value!r}", path)
    return value


def load_config(arch: str | os.PathLike, probe: str = "best") -> AimConfig:
    """Read an AIM config by size name or YAML path and validate it.

    probe="best" keeps the file's probe_layers; probe="last" uses the last
    len(probe_layers) blocks instead (the official "last layers" heads).
    """
    path, name = _resolve_config_path(arch)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise RaidError(f"not a readable YAML file ({type(exc).__name__})", path) from None
    if not isinstance(data, dict):
        raise RaidError("an AIM config must be a YAML mapping", path)
    missing = [k for k in _REQUIRED_KEYS if k not in data]
    if missing:
        raise RaidError(f"missing key(s): {', '.join(missing)}", path)
    unknown = sorted(set(map(str, data)) - set(_REQUIRED_KEYS) - set(_OPTIONAL_KEYS))
    if unknown:  # a typo must not silently fall back to a default
        raise RaidError(f"unknown key(s): {', '.join(unknown)}", path)

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

    if probe == "last":
        layers = list(range(depth - len(layers), depth))
    elif probe != "best":
        raise RaidError(f"probe must be 'best' or 'last', got {probe!r}", path)
    return AimConfig(name=name, width=width, depth=depth, heads=heads,
                     probe_layers=tuple(layers), patch_size=patch, image_size=image,
                     num_classes=num_classes, source=str(path))


# --------------------------------------------------------------------------- model


def sincos_pos_embed(grid: int, width: int) -> torch.Tensor:
    """Fixed 2-D sine-cosine position embedding, (grid*grid, width), float32, row-major.

    Token (r, c): the first width/2 channels encode the column c, the last width/2 the
    row r; each half is [sin(pos * w_k)] + [cos(pos * w_k)], w_k = 10000^(-k / (width/4)).
    Computed in float32 in the same order of operations as the official model.
    """
    quarter = width // 4
    omega = torch.arange(quarter, dtype=torch.float32) / quarter
    omega = 1.0 / 10000**omega
    pos = torch.arange(grid, dtype=torch.float32)
    rows = pos.repeat_interleave(grid)  # token t = r * grid + c
    cols = pos.repeat(grid)

    def half(p: torch.Tensor) -> torch.Tensor:
        angles = p[:, None] * omega[None, :]
        return torch.cat([angles.sin(), angles.cos()], dim=1)

    return torch.cat([half(cols), half(rows)], dim=1)


class PatchEmbed(nn.Module):
    """Conv2d patchifier (kernel = stride = patch) then LayerNorm; tokens row-major."""

    def __init__(self, cfg: AimConfig):
        super().__init__()
        self.proj = nn.Conv2d(3, cfg.width, kernel_size=cfg.patch_size, stride=cfg.patch_size)
        self.norm = nn.LayerNorm(cfg.width, eps=LN_EPS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.proj(x).flatten(2).transpose(1, 2))


class Preprocessor(nn.Module):
    def __init__(self, cfg: AimConfig):
        super().__init__()
        self.patchifier = PatchEmbed(cfg)
        # Non-persistent: a fixed function of the geometry, absent from the checkpoints.
        self.register_buffer("pos_embed", torch.empty(1, cfg.num_tokens, cfg.width),
                             persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.patchifier(x) + self.pos_embed


class Attention(nn.Module):
    """Non-causal multi-head self-attention with a fused qkv projection, no biases."""

    def __init__(self, cfg: AimConfig):
        super().__init__()
        self.heads = cfg.heads
        self.qkv = nn.Linear(cfg.width, 3 * cfg.width, bias=False)
        self.proj = nn.Linear(cfg.width, cfg.width, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = (self.qkv(x).reshape(b, n, 3, self.heads, d // self.heads)
                   .permute(2, 0, 3, 1, 4).unbind(0))
        out = F.scaled_dot_product_attention(q, k, v)  # fused kernel on GPU
        return self.proj(out.transpose(1, 2).reshape(b, n, d))


class Mlp(nn.Module):
    def __init__(self, cfg: AimConfig):
        super().__init__()
        self.fc1 = nn.Linear(cfg.width, 4 * cfg.width, bias=False)
        self.fc2 = nn.Linear(4 * cfg.width, cfg.width, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))  # exact (erf) GELU


class Block(nn.Module):
    """Pre-norm transformer block."""

    def __init__(self, cfg: AimConfig):
        super().__init__()
        self.attn = Attention(cfg)
        self.norm_1 = nn.LayerNorm(cfg.width, eps=LN_EPS)
        self.mlp = Mlp(cfg)
        self.norm_2 = nn.LayerNorm(cfg.width, eps=LN_EPS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm_1(x))
        return x + self.mlp(self.norm_2(x))


class Trunk(nn.Module):
    def __init__(self, cfg: AimConfig):
        super().__init__()
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.depth))
        # Applied by the official model to the last block's output, which the probe
        # ignores; kept so checkpoints load key for key, dropped by `truncate()`.
        self.post_trunk_norm: nn.LayerNorm | None = nn.LayerNorm(cfg.width, eps=LN_EPS)


class AttentionProbe(nn.Module):
    """Attention pooling with one learned query (the official AttentionPoolingClassifier).

    As in apple/ml-aim: BatchNorm1d(affine=False) over channels of every token; k and v
    are bias-free Linears of the normalised tokens; the query is `cls_token` itself (no
    projection, not normalised); scaled dot-product attention with the trunk's heads,
    1/sqrt(head_dim) scale; heads concatenated in order -> (B, D). No output projection or
    norm before `linear`, the ImageNet classifier, which RAID does not use.
    """

    def __init__(self, cfg: AimConfig):
        super().__init__()
        self.heads = cfg.heads
        self.cls_token = nn.Parameter(torch.zeros(1, 1, cfg.width))
        self.k = nn.Linear(cfg.width, cfg.width, bias=False)
        self.v = nn.Linear(cfg.width, cfg.width, bias=False)
        self.linear: nn.Linear | None = nn.Linear(cfg.width, cfg.num_classes, bias=False)
        self.bn = nn.BatchNorm1d(cfg.width, affine=False, eps=LN_EPS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        h = self.heads
        # Always running statistics, even if someone calls .train(): the feature must not
        # depend on the batch.
        x = F.batch_norm(x.transpose(1, 2), self.bn.running_mean, self.bn.running_var,
                         training=False, eps=self.bn.eps).transpose(1, 2)
        k = self.k(x).reshape(b, n, h, d // h).transpose(1, 2)
        v = self.v(x).reshape(b, n, h, d // h).transpose(1, 2)
        # Under autocast k/v are low precision while the parameter is float32.
        q = self.cls_token.to(k.dtype).expand(b, -1, -1).reshape(b, 1, h, d // h).transpose(1, 2)
        out = F.scaled_dot_product_attention(q, k, v)  # (B, H, 1, D/H)
        return out.transpose(1, 2).reshape(b, d)


class AimModel(nn.Module):
    """AIM v1 trunk + attention probe; `model(x)` -> RAID features (B, width).

    x: ImageNet-normalised images (B, 3, image_size, image_size).
    """

    def __init__(self, config: AimConfig):
        super().__init__()
        self.config = config
        self.truncated = False
        self.preprocessor = Preprocessor(config)
        self.trunk = Trunk(config)
        self.head = AttentionProbe(config)

    @property
    def feature_dim(self) -> int:
        return self.config.width

    def reset_pos_embed(self, dtype: torch.dtype | None = None) -> None:
        """(Re)compute the position embedding on the weights' device, in `dtype` (default:
        the weights' dtype); needed after building on the meta device."""
        ref = self.preprocessor.patchifier.proj.weight
        emb = sincos_pos_embed(self.config.grid, self.config.width)[None]
        self.preprocessor.pos_embed = emb.to(device=ref.device, dtype=dtype or ref.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def features(self, x: torch.Tensor, all_blocks: bool = False) -> torch.Tensor:
        """Pooled probe features. all_blocks=True runs every block and the final norm,
        as the seed does (same result, more work); only for comparison/benchmarks."""
        tokens = self._probe_input(x, all_blocks)
        return self.head(tokens)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """ImageNet logits of the probe head (a sanity check for real checkpoints)."""
        if self.head.linear is None:
            raise ValueError("the classifier was dropped by truncate()")
        return self.head.linear(self.features(x))

    def _probe_input(self, x: torch.Tensor, all_blocks: bool) -> torch.Tensor:
        cfg = self.config
        if x.ndim != 4 or x.shape[1] != 3 or x.shape[-2:] != (cfg.image_size, cfg.image_size):
            raise ValueError(f"expected images (B, 3, {cfg.image_size}, {cfg.image_size}), "
                             f"got {tuple(x.shape)}")
        if all_blocks and self.truncated:
            raise ValueError("all_blocks=True needs an untruncated model")
        stop = len(self.trunk.blocks) - 1 if all_blocks else cfg.last_probe_layer
        wanted = set(cfg.probe_layers)
        outputs: dict[int, torch.Tensor] = {}
        tokens = self.preprocessor(x)
        for i, block in enumerate(self.trunk.blocks):
            tokens = block(tokens)
            if i in wanted:
                outputs[i] = tokens  # block outputs before any final norm
            if i == stop:
                break
        if all_blocks and self.trunk.post_trunk_norm is not None:
            self.trunk.post_trunk_norm(tokens)  # computed and discarded, like the seed
        # Stack-then-mean in the configured order, as the official AverageLayers does.
        return torch.stack([outputs[i] for i in cfg.probe_layers], dim=-1).mean(dim=-1)

    def truncate(self) -> "AimModel":
        """Drop what the features never use: blocks after the last probe layer, the
        trunk's final LayerNorm and the ImageNet classifier. Call after loading, so
        that loading still checks every key. Returns self."""
        keep = self.config.last_probe_layer + 1
        self.trunk.blocks = nn.ModuleList(list(self.trunk.blocks)[:keep])
        self.trunk.post_trunk_norm = None
        self.head.linear = None
        self.truncated = True
        return self


def build_aim(config: AimConfig | str, device: torch.device | str | None = None,
              dtype: torch.dtype | None = None) -> AimModel:
    """An AIM model with PyTorch's default initialisation (or empty, on device="meta"),
    in eval mode without gradients. Any size: the config says which."""
    if not isinstance(config, AimConfig):
        config = load_config(config)
    with torch.device(device if device is not None else "cpu"):
        model = AimModel(config)
    if str(device) != "meta":
        model.reset_pos_embed()
    if dtype is not None:
        model.to(dtype=dtype)
    return model.eval().requires_grad_(False)


def random_aim(config: AimConfig | str, seed: int = 0) -> AimModel:
    """A float32 CPU model with seeded random weights for tests and demos, including
    non-trivial BatchNorm statistics and query (so a wrong formula cannot hide)."""
    model = build_aim(config)
    gen = torch.Generator().manual_seed(seed)

    def normal(t: torch.Tensor, std: float, mean: float = 0.0) -> torch.Tensor:
        return torch.randn(t.shape, generator=gen) * std + mean

    with torch.no_grad():
        for name, t in _persistent_tensors(model):
            if name.endswith("num_batches_tracked"):
                t.fill_(int(torch.randint(1, 10**6, (), generator=gen)))
            elif name.endswith("running_var"):
                t.copy_(torch.rand(t.shape, generator=gen) * 1.5 + 0.5)
            elif name.endswith("running_mean"):
                t.copy_(normal(t, 0.5))
            elif name.endswith("cls_token"):
                t.copy_(normal(t, 1.0))
            elif t.ndim == 1 and name.endswith("weight"):  # LayerNorm scale
                t.copy_(normal(t, 0.1, 1.0))
            elif t.ndim == 1:  # biases
                t.copy_(normal(t, 0.1))
            else:  # keep activations O(1): std 1/sqrt(fan_in)
                t.copy_(normal(t, 1.0 / math.sqrt(t[0].numel())))
    return model


def _persistent_tensors(model: nn.Module) -> Iterable[tuple[str, torch.Tensor]]:
    return model.state_dict(keep_vars=True).items()


# --------------------------------------------------------------------------- files


def _abbrev(items: list[str], limit: int = 6) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f", ... (+{len(items) - limit} more)" if len(items) > limit else "")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    if text and text[0].startswith("Weights only load failed"):
        # torch's text goes on to suggest weights_only=False: exactly what we refuse.
        return f"{type(exc).__name__}: refused by the weights-only loader"
    return f"{type(exc).__name__}: {text[0][:200]}" if text else type(exc).__name__


def _read_state_dict(path: str | os.PathLike, map_location: Any) -> dict[str, torch.Tensor]:
    """A flat {name: tensor} from a .pth (weights_only, memory-mapped when possible) or
    .safetensors file; anything else is a RaidError naming the file."""
    path = Path(path)
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
        raise RaidError(f"not a readable weights file ({_first_line(exc)})", path) from None
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

    model = build_aim(config, device="meta")
    expected = {k: (tuple(t.shape), t.is_floating_point())
                for k, t in _persistent_tensors(model)}
    unused_ok = _unused_keys(config)

    missing = sorted(set(expected) - set(state), key=_natural)
    unexpected = sorted(set(state) - set(expected), key=_natural)
    if not strict:
        unexpected_ignored = unexpected
        unexpected = []
        for k in unexpected_ignored:
            del state[k]
        missing_needed = [k for k in missing if k not in unused_ok]
    else:
        missing_needed = missing
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
        kept = dict(_persistent_tensors(model))
        state = {k: v for k, v in state.items() if k in kept}
    # assign=True adopts the (memory-mapped) tensors instead of copying into new ones.
    model.load_state_dict(state, strict=True, assign=True)
    # Still on the meta device until now; float32 whatever the checkpoint's dtype.
    model.reset_pos_embed(dtype=torch.float32)
    model.to(device=device, dtype=dtype or torch.float32)
    return model.eval().requires_grad_(False)


def _unused_keys(config: AimConfig) -> set[str]:
    """State-dict keys that do not influence the features."""
    keys = {"trunk.post_trunk_norm.weight", "trunk.post_trunk_norm.bias", "head.linear.weight"}
    for i in range(config.last_probe_layer + 1, config.depth):
        keys.update(f"trunk.blocks.{i}.{name}" for name in _BLOCK_KEYS)
    return keys


_BLOCK_KEYS = ("attn.qkv.weight", "attn.proj.weight", "norm_1.weight", "norm_1.bias",
               "norm_2.weight", "norm_2.bias", "mlp.fc1.weight", "mlp.fc2.weight")


def _natural(key: str) -> tuple:
    """Sort 'blocks.2' before 'blocks.10' in error messages."""
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in key.split("."))


def _atomic_torch_save(obj: Any, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_official_checkpoint(model: AimModel, backbone_path: str | os.PathLike,
                             head_path: str | os.PathLike) -> None:
    """Write the official two-file layout: `head.*` keys to head_path, the rest to
    backbone_path (each written to a temp file and renamed into place)."""
    if model.truncated:
        raise ValueError("a truncated model cannot be saved in the official layout")
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    head = {k: v for k, v in state.items() if k.startswith("head.")}
    body = {k: v for k, v in state.items() if not k.startswith("head.")}
    _atomic_torch_save(body, Path(backbone_path))
    _atomic_torch_save(head, Path(head_path))


def checkpoint_digest(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """sha256 (hex) of a file, read in chunks: the provenance of a weights file."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            while block := f.read(chunk):
                digest.update(block)
    except OSError as exc:
        raise RaidError(f"cannot read ({exc.strerror or type(exc).__name__})", path) from None
    return digest.hexdigest()
