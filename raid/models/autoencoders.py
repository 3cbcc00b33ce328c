"""Autoencoder reconstruction: the primitive under `raid reconstruct` and the training pairs.

A real photo goes through a generator's autoencoder (encode, take a latent, decode) and the
result stands in for a generated image. This module loads diffusers autoencoders from local
folders and reconstructs whole batches of uint8 images; it knows nothing of Lightning,
files on disk or the command line.

Differences from the seed (documented, deliberate):

* Noise: the seed draws the latent noise of all images, in order, from one CPU generator
  seeded with 1, so an image's reconstruction depends on which images came before it. Here
  each image's noise comes from its own CPU generator seeded with a per-image seed (callers
  pass `raid.primitives.seeding.stable_seed(seed, key, "noise")`), so results do not depend on batch
  composition, order, worker count or device. `reconstruct_seed_style` keeps the seed's way
  for baselines.
* Size: the seed feeds images whose sides are not multiples of the spatial factor as they
  are and gets a smaller reconstruction (375 rows become 368 with the SD VAE). Here such
  sides are padded (reflect, or replicate where a side is too short to reflect) up to a
  multiple of the factor and the output is cropped back: a reconstruction has its input's
  size.
* Precision: float32 by default, like the seed (which upcasts the VAE). "bf16" / "fp16" run
  the model in that dtype; images whose reduced-precision output is not finite are redone
  in float32.
"""

from __future__ import annotations

import copy
import json
import logging
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from raid.primitives.errors import RaidError
from raid.primitives.hashing import files_sha256

log = logging.getLogger(__name__)

SUPPORTED_CLASSES = ("AutoencoderKL", "AutoencoderTiny", "VQModel")
PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
LATENTS = ("sample", "mode")

_WEIGHTS_STEM = "diffusion_pytorch_model"


# --------------------------------------------------------------------------- loading

def _diffusers_class(name: str) -> type:
    import diffusers

    return getattr(diffusers, name)


def _accelerate_available() -> bool:
    from diffusers.utils import is_accelerate_available

    return bool(is_accelerate_available())


def model_folder(path: Path) -> Path:
    """The folder holding the autoencoder's config.json: `path` itself or its `vae/`."""
    if not path.exists():
        raise RaidError("no such autoencoder folder", path)
    if not path.is_dir():
        raise RaidError("not a folder (expected a diffusers pipeline or autoencoder folder)", path)
    vae = path / "vae"
    if (path / "model_index.json").is_file() or (vae / "config.json").is_file():
        # A pipeline folder: its autoencoder lives in vae/.
        if not vae.is_dir():
            raise RaidError("pipeline folder (model_index.json) has no vae/ subfolder", path)
        if not (vae / "config.json").is_file():
            raise RaidError("pipeline's vae/ subfolder has no config.json", vae)
        return vae
    if not (path / "config.json").is_file():
        raise RaidError("no config.json (and no model_index.json with a vae/ subfolder): "
                        "not a diffusers autoencoder or pipeline folder", path)
    return path


def _weights_choice(folder: Path) -> dict[str, Any]:
    """from_pretrained options that select the folder's weights: safetensors first,
    full-precision files before variants (e.g. `.fp16.`); .bin only when no safetensors."""
    for ext, safe in (("safetensors", True), ("bin", False)):
        for name in (f"{_WEIGHTS_STEM}.{ext}", f"{_WEIGHTS_STEM}.{ext}.index.json"):
            if (folder / name).is_file():
                return {"use_safetensors": safe, "variant": None}
        variants = sorted(p.name[len(_WEIGHTS_STEM) + 1:-len(ext) - 1]
                          for p in folder.glob(f"{_WEIGHTS_STEM}.*.{ext}"))
        variants = [v for v in variants if v and "." not in v]
        if variants:
            return {"use_safetensors": safe, "variant": variants[0]}
    raise RaidError(f"no weights ({_WEIGHTS_STEM}.safetensors or {_WEIGHTS_STEM}.bin)", folder)


def load_autoencoder(path: str | Path, *, device: str | torch.device = "cpu",
                     dtype: torch.dtype = torch.float32) -> torch.nn.Module:
    """Load a diffusers autoencoder from a LOCAL folder, frozen and in eval mode.

    `path` is either a pipeline folder (model_index.json and/or a `vae/` subfolder with a
    config.json; its `vae/` is loaded) or an autoencoder folder (config.json + weights).
    The class comes from config.json's `_class_name`: AutoencoderKL (SD 1.x/2.x, SDXL,
    FLUX VAEs), AutoencoderTiny or VQModel. Nothing is ever downloaded. Safetensors are
    preferred; .bin files are read by diffusers with `torch.load(weights_only=True)`.
    Any missing or broken piece raises RaidError naming it.
    """
    folder = model_folder(Path(path))
    config_file = folder / "config.json"
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RaidError(f"unreadable config.json ({exc})", config_file) from None
    if not isinstance(config, dict):
        raise RaidError("config.json is not a JSON object", config_file)
    class_name = config.get("_class_name")
    if class_name not in SUPPORTED_CLASSES:
        raise RaidError(f"unsupported autoencoder class {class_name!r} in config.json "
                        f"(supported: {', '.join(SUPPORTED_CLASSES)})", config_file)
    choice = _weights_choice(folder)
    cls = _diffusers_class(class_name)
    try:
        # local_files_only + a folder path: diffusers never contacts the hub.
        model, info = cls.from_pretrained(
            str(folder), local_files_only=True, torch_dtype=dtype, output_loading_info=True,
            low_cpu_mem_usage=_accelerate_available(), **choice)
    except Exception as exc:  # diffusers raises OSError/ValueError/SafetensorError/...
        reason = " ".join(str(exc).split())[:300] or type(exc).__name__
        raise RaidError(f"cannot load {class_name} weights: {reason}", folder) from None
    # Without accelerate, diffusers only warns about missing tensors and leaves them random.
    missing = info.get("missing_keys") or []
    if missing:
        raise RaidError(f"incomplete weights: {len(missing)} tensors missing "
                        f"(e.g. {sorted(missing)[0]})", folder)
    if info.get("unexpected_keys"):
        log.warning("%s: %d unexpected tensors in the weights ignored",
                    folder, len(info["unexpected_keys"]))
    model = model.to(device)
    model.eval().requires_grad_(False)
    return model


def autoencoder_digest(path: str | Path) -> str:
    """sha256 over the autoencoder folder's config.json and weight files (names and
    contents): what decides its reconstructions, for a store's provenance."""
    folder = model_folder(Path(path))
    files = [p for p in folder.iterdir()
             if p.is_file() and (p.name == "config.json" or p.name.startswith(_WEIGHTS_STEM))]
    return files_sha256(files, folder)


def autoencoder_name(path: str | Path) -> str:
    """A short name for grouping outputs: the folder's name; for a pipeline's own `vae/`
    folder, the pipeline's name (e.g. "stable-diffusion-v1-4")."""
    p = Path(path).resolve()
    if p.name == "vae" and (p.parent / "model_index.json").is_file():
        return p.parent.name
    return p.name


# --------------------------------------------------------------------------- geometry

def spatial_factor(model: torch.nn.Module) -> int:
    """How many pixels one latent position covers per side.

    AutoencoderKL / VQModel: one stride-2 downsampler per encoder block but the last,
    so 2 ** (len(block_out_channels) - 1) (8 for SD). AutoencoderTiny: one stride-2 conv per
    encoder block but the first, so 2 ** (len(encoder_block_out_channels) - 1) (8 for TAESD);
    its `spatial_scale_factor` attribute (2 ** out_channels) is only right by coincidence.
    """
    cfg = model.config
    if type(model).__name__ == "AutoencoderTiny":
        return 2 ** (len(cfg.encoder_block_out_channels) - 1)
    return 2 ** (len(cfg.block_out_channels) - 1)


def coarse_stages(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The autoencoder's big blocks, each run once per encode or decode call: its encoder's
    and decoder's `down_blocks`, `mid_block` and `up_blocks` (AutoencoderKL, VQModel) or
    `layers` (AutoencoderTiny). For progress inside a batch; empty for other shapes."""
    stages: list[torch.nn.Module] = []
    for part in (getattr(model, "encoder", None), getattr(model, "decoder", None)):
        for name in ("down_blocks", "mid_block", "up_blocks", "layers"):
            block = getattr(part, name, None)
            if isinstance(block, (torch.nn.ModuleList, torch.nn.Sequential)):
                stages += list(block)
            elif isinstance(block, torch.nn.Module):
                stages.append(block)
    return stages


def pad_to_multiple(x: torch.Tensor, factor: int) -> torch.Tensor:
    """Pad the bottom and right of (B, C, H, W) up to multiples of `factor`: reflect, or
    replicate where a side is not longer than its padding (reflect cannot do that)."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % factor, (-w) % factor
    if ph == 0 and pw == 0:
        return x
    mode = "reflect" if ph < h and pw < w else "replicate"
    return F.pad(x, (0, pw, 0, ph), mode=mode)


# --------------------------------------------------------------------------- reconstruction

def to_unit_range(images: torch.Tensor) -> torch.Tensor:
    """uint8 (B, 3, H, W) -> float32 in [-1, 1], as the seed does: x / 255, then * 2 - 1."""
    return images.to(torch.float32).div(255.0).mul(2.0).sub(1.0)


def to_uint8(decoded: torch.Tensor) -> torch.Tensor:
    """Decoder output in [-1, 1] -> uint8 like the seed: x / 2 + 0.5, clamp, floor(x * 255)."""
    x = decoded.to(torch.float32).div(2.0).add(0.5).clamp(0.0, 1.0)
    return x.mul(255.0).floor().to(torch.uint8)


def nonfinite_rows(x: torch.Tensor) -> torch.Tensor:
    """Indices of the batch items of `x` holding any NaN or inf."""
    bad = ~torch.isfinite(x.reshape(x.shape[0], -1)).all(dim=1)
    return bad.nonzero().flatten()


def latent_noise(seeds: Sequence[int], shape: Sequence[int], device: torch.device | str,
                 dtype: torch.dtype) -> torch.Tensor:
    """Standard normal noise of shape (len(seeds), *shape): item i from its own CPU
    generator seeded with seeds[i], drawn in float32 then moved, so it is the same on every
    device and whatever the batch holds."""
    noise = [torch.randn(tuple(shape), generator=torch.Generator("cpu").manual_seed(int(s)),
                         dtype=torch.float32) for s in seeds]
    return torch.stack(noise).to(device=device, dtype=dtype)


class Reconstructor:
    """Batch reconstruction with a loaded autoencoder (see the module docstring).

    >>> rec = Reconstructor(load_autoencoder("stable-diffusion-v1-4", device="cuda"))
    >>> out = rec.reconstruct(images_uint8, seeds=[stable_seed(0, k, "noise") for k in keys])

    `precision` is "fp32" (default, like the seed), "bf16" or "fp16". With reduced
    precision the model runs in that dtype; a float32 copy is kept (or made) for images whose
    reduced-precision output holds NaN or inf: they are recomputed in float32 and a warning
    names how many. Only those images are redone, so the others keep their batch-independent
    result.
    """

    def __init__(self, model: torch.nn.Module, *, precision: str = "fp32"):
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {sorted(PRECISIONS)}, not {precision!r}")
        kind = type(model).__name__
        if kind not in SUPPORTED_CLASSES:
            raise TypeError(f"unsupported autoencoder class {kind}")
        self.kind = kind
        self.precision = precision
        self.dtype = PRECISIONS[precision]
        self.factor = spatial_factor(model)
        self._models: dict[torch.dtype, torch.nn.Module] = {next(model.parameters()).dtype: model}
        self.device = next(model.parameters()).device

    @property
    def has_distribution(self) -> bool:
        """Only AutoencoderKL has a latent distribution; for AutoencoderTiny and VQModel the
        encoder output is the latent, so "sample" and "mode" are the same and seeds unused."""
        return self.kind == "AutoencoderKL"

    def model_in(self, dtype: torch.dtype) -> torch.nn.Module:
        """The autoencoder in `dtype` (a frozen copy made once on first use)."""
        if dtype not in self._models:
            source = self._models.get(torch.float32)
            if source is None:
                source = next(iter(self._models.values()))
            # nn.Module.to, not ModelMixin.to: the latter logs a warning on every dtype cast.
            self._models[dtype] = torch.nn.Module.to(copy.deepcopy(source), dtype=dtype)
        return self._models[dtype]

    @torch.inference_mode()
    def decode_batch(self, images: torch.Tensor, seeds: Sequence[int] | None, latent: str,
                     dtype: torch.dtype) -> torch.Tensor:
        """Raw decoder output in [-1, 1] (before clamping), cropped to the input size,
        computed with the model in `dtype`: one encode and one decode call for the batch."""
        model = self.model_in(dtype)
        h, w = images.shape[-2:]
        x = pad_to_multiple(to_unit_range(images.to(self.device)), self.factor).to(dtype)
        if self.kind == "AutoencoderKL":
            dist = model.encode(x).latent_dist
            z = dist.mean
            if latent == "sample":
                # The same formula as diffusers' DiagonalGaussianDistribution.sample.
                z = z + dist.std * latent_noise(seeds, z.shape[1:], z.device, z.dtype)
        else:
            # AutoencoderTiny: no latent byte-quantization (its forward() does that to mimic
            # storing latents as an image; a generator's decoder sees float latents).
            # VQModel: decode() quantizes to the codebook, as diffusers' forward() does.
            z = model.encode(x).latents
        out = model.decode(z).sample
        return out[:, :, :h, :w]

    @torch.inference_mode()
    def reconstruct(self, images: torch.Tensor, seeds: Sequence[int] | None = None,
                    latent: str = "sample") -> torch.Tensor:
        """Reconstruct a batch: uint8 (B, 3, H, W) -> uint8 (B, 3, H, W) on the model's device.

        `latent` is "sample" (mean + std * noise, the seed's choice; needs one seed per image
        for AutoencoderKL) or "mode" (the mean). All images of a batch share one size; sides
        that are not multiples of `self.factor` are padded and the output cropped back.
        """
        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected uint8 images of shape (B, 3, H, W), got "
                             f"{images.dtype} {tuple(images.shape)}")
        if latent not in LATENTS:
            raise ValueError(f"latent must be one of {LATENTS}, not {latent!r}")
        if not self.has_distribution:
            latent = "mode"
        if latent == "sample":
            if seeds is None or len(seeds) != images.shape[0]:
                raise ValueError("latent='sample' needs one seed per image")
            seeds = [int(s) for s in seeds]
        out = self.decode_batch(images, seeds, latent, self.dtype)
        if self.dtype != torch.float32:
            bad = nonfinite_rows(out)
            if bad.numel():
                log.warning("%d of %d reconstructions were not finite in %s; recomputed in "
                            "float32", bad.numel(), images.shape[0], self.precision)
                idx = bad.tolist()
                redo = self.decode_batch(images[bad.to(images.device)],
                                         None if seeds is None else [seeds[i] for i in idx],
                                         latent, torch.float32)
                out = out.to(torch.float32)
                out[bad.to(out.device)] = redo
        return to_uint8(out)


# --------------------------------------------------------------------------- seed baseline

@torch.inference_mode()
def reconstruct_seed_style(vae: torch.nn.Module, image_uint8_hwc: np.ndarray,
                           generator: torch.Generator) -> np.ndarray:
    """The seed's reconstruction of one image, for baselines: batch 1, float32, no padding
    (so a side that is not a multiple of the factor comes out smaller), latent sampled by
    diffusers with the shared `generator` (the seed's is a CPU generator seeded with 1 and
    used, in order, by all images). Returns uint8 (h, w, 3)."""
    device = next(vae.parameters()).device
    x = torch.from_numpy(np.ascontiguousarray(image_uint8_hwc)).permute(2, 0, 1)[None]
    x = to_unit_range(x).to(device=device, dtype=next(vae.parameters()).dtype)
    enc = vae.encode(x)
    z = enc.latent_dist.sample(generator=generator) if hasattr(enc, "latent_dist") else enc.latents
    out = to_uint8(vae.decode(z).sample)
    return out[0].permute(1, 2, 0).cpu().numpy()


# --------------------------------------------------------------------------- tiny builders

def _seeded(seed: int, build):
    # Seed the weights without disturbing the caller's global RNG.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build().eval().requires_grad_(False)


def tiny_autoencoder_kl(seed: int = 0, *, num_blocks: int = 2):
    """A tiny random AutoencoderKL (8-16 channels): spatial factor 2 ** (num_blocks - 1),
    so 2 by default and 8 (like SD) with num_blocks=4."""
    from diffusers import AutoencoderKL

    channels = tuple([8, 16, 16, 16, 16][:num_blocks])
    return _seeded(seed, lambda: AutoencoderKL(
        block_out_channels=channels, down_block_types=("DownEncoderBlock2D",) * num_blocks,
        up_block_types=("UpDecoderBlock2D",) * num_blocks, layers_per_block=1,
        latent_channels=4, norm_num_groups=8, sample_size=32))


def tiny_autoencoder_tiny(seed: int = 0, *, num_blocks: int = 2):
    """A tiny random AutoencoderTiny: spatial factor 2 ** (num_blocks - 1)."""
    from diffusers import AutoencoderTiny

    model = _seeded(seed, lambda: AutoencoderTiny(
        encoder_block_out_channels=(8,) * num_blocks, decoder_block_out_channels=(8,) * num_blocks,
        num_encoder_blocks=(1,) * num_blocks, num_decoder_blocks=(1,) * num_blocks,
        latent_channels=4))
    # A random decoder outputs about 0 in its own [0, 1] range (black, mostly clipped):
    # centre it so tests see unsaturated images.
    with torch.no_grad():
        model.decoder.layers[-1].bias.fill_(0.5)
    return model


def tiny_vq_model(seed: int = 0, *, num_blocks: int = 2):
    """A tiny random VQModel (16-entry codebook): spatial factor 2 ** (num_blocks - 1)."""
    from diffusers import VQModel

    channels = tuple([8, 16, 16, 16, 16][:num_blocks])
    return _seeded(seed, lambda: VQModel(
        block_out_channels=channels, down_block_types=("DownEncoderBlock2D",) * num_blocks,
        up_block_types=("UpDecoderBlock2D",) * num_blocks, layers_per_block=1,
        latent_channels=4, num_vq_embeddings=16, vq_embed_dim=4, norm_num_groups=8,
        sample_size=32))


def sd_vae_config() -> dict[str, Any]:
    """The Stable Diffusion 1.x VAE architecture (AutoencoderKL, ~83.7 M parameters,
    factor 8), for speed benchmarks with random weights: AutoencoderKL(**sd_vae_config())."""
    return {
        "in_channels": 3,
        "out_channels": 3,
        "down_block_types": ["DownEncoderBlock2D"] * 4,
        "up_block_types": ["UpDecoderBlock2D"] * 4,
        "block_out_channels": [128, 256, 512, 512],
        "layers_per_block": 2,
        "act_fn": "silu",
        "latent_channels": 4,
        "norm_num_groups": 32,
        "sample_size": 512,
        "scaling_factor": 0.18215,
    }
