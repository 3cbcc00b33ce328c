"""AIM v1 (Apple's autoregressive image model) with its attention-probe head, as PyTorch
modules: the RAID feature extractor.

One builder serves every size (an `AimConfig` says which). Parameter and buffer names are
exactly those of Apple's published two-file checkpoints (backbone .pth + head .pth), so
they load without renaming.

The RAID feature is the attention-probe's pooled vector (B, width): the mean of the probe
blocks' outputs, batch-normalised with running statistics, attended by one learned query.
Only the blocks up to the last probe layer affect it, so `model(x)` stops there; the
ImageNet classifier (`head.linear`) and the trunk's final LayerNorm are never needed.
"""

from __future__ import annotations

import math
from typing import Iterable

import torch
import torch.nn.functional as F
from torch import nn

from raid.models.aim_config import AimConfig, load_config

LN_EPS = 1e-6  # every LayerNorm and the probe's BatchNorm


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
        for name, t in persistent_tensors(model):
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


def persistent_tensors(model: nn.Module) -> Iterable[tuple[str, torch.Tensor]]:
    """(name, tensor) of every checkpoint entry: parameters and persistent buffers."""
    return model.state_dict(keep_vars=True).items()
