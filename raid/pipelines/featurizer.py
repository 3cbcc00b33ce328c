"""AIM loaded once, turning images into RAID features in memory.

A `Featurizer` holds the model, its configuration and its provenance (checkpoint digests
computed once per file, cached by path, size and mtime). It takes image files, encoded
bytes, PIL images or (H, W, 3) uint8 arrays and gives, per image, the same feature that
`raid extract` stores for the same key and seed: the same decoding
(`raid.primitives.images`), the same patch (`patch_rng(seed, key)`), the same normalisation
and precision. `encode` is the one place where patches become features; the Lightning
path (`raid.pipelines.extraction.FeatureExtractor`) calls it too.

A broken image never raises here: it comes back with its reason.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch
from PIL import Image

from raid.models.aim import AimConfig, AimModel, checkpoint_digest, load_aim, load_config
from raid.primitives import images as image_io
from raid.primitives.errors import RaidError
from raid.primitives.images import DEFAULT_MAX_PIXELS, load_rgb
from raid.primitives.patches import CANDIDATES, normalize, patch_rng, rich_patch, select_rich_patch
from raid.primitives.perturb import CLEAN, Perturbation

#: `--precision` value -> Lightning precision (the name recorded in provenance).
PRECISIONS = {"32": "32-true", "bf16-mixed": "bf16-mixed", "bf16": "bf16-mixed"}
DEFAULT_KEY = "image"
ImageInput = Any  # str | os.PathLike | bytes | PIL.Image.Image | np.ndarray


@dataclass(frozen=True)
class FeaturizerSettings:
    """What decides the features (besides the weights): the AIM size and files, the probe,
    the patch seed, the precision, the perturbation applied before the patch choice."""

    arch: str
    backbone: str
    head: str | None = None
    probe: str = "best"
    seed: int = 0
    precision: str = "32"
    perturbation: Perturbation = field(default=CLEAN)


def aim_provenance(config: AimConfig, opts: Any) -> dict:
    """What decides the features: stored with every row, compared on every append and
    against a model's. `opts` has backbone, head, probe, seed, precision, perturbation
    (an `ExtractOptions` or `FeaturizerSettings`)."""
    return {
        "extractor": "aim-v1",
        "aim": {"arch": config.name, "width": config.width, "depth": config.depth,
                "heads": config.heads, "probe": opts.probe,
                "probe_layers": list(config.probe_layers),
                "patch_size": config.patch_size, "image_size": config.image_size},
        "checkpoints": {"backbone": checkpoint_digest(opts.backbone),
                        "head": checkpoint_digest(opts.head) if opts.head else None},
        "patch": {"policy": "texture-rich", "size": config.image_size,
                  "candidates": CANDIDATES, "seed": opts.seed, "exif": "ignored"},
        "precision": PRECISIONS[opts.precision],
        "perturbation": opts.perturbation.name,
    }


def load_model(config: AimConfig, backbone: str | os.PathLike,
               head: str | os.PathLike | None) -> AimModel:
    """Every AIM load of the pipelines goes through here (tests count the calls)."""
    return load_aim(config, backbone, head, truncate=True)


def resolve_device(accelerator: str | torch.device | None) -> torch.device:
    """"cpu", "gpu"/"cuda"/"cuda:N", or "auto" (a GPU when there is one)."""
    name = str(accelerator or "auto")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "gpu":
        name = "cuda"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise RaidError(f"accelerator {accelerator!r} asked for, but no CUDA device is present")
    return torch.device(name)


def precision_context(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    """The autocast Lightning's precision plugin applies to prediction, for `precision`."""
    if PRECISIONS[precision] == "bf16-mixed":
        return torch.autocast(device.type, dtype=torch.bfloat16, cache_enabled=False)
    return contextlib.nullcontext()


def encode(model: torch.nn.Module, patches: torch.Tensor) -> torch.Tensor:
    """uint8 patches (B, S, S, 3) on the model's device -> float32 features (B, width).
    The one place patches become features (Lightning and in-memory paths alike)."""
    return model(normalize(patches)).float()


def choose_patch(image: np.ndarray, key: str, seed: int, size: int
                 ) -> tuple[np.ndarray, tuple[int, int, int] | None]:
    """The texture-rich patch of a decoded (and perturbed) image and its (top, left, size);
    None when the image is smaller than the patch and was resized whole. Same result as
    `rich_patch(image, patch_rng(seed, key), size)`."""
    if image.shape[0] < size or image.shape[1] < size:
        return rich_patch(image, patch_rng(seed, key), size), None
    top, left = select_rich_patch(image, patch_rng(seed, key), size)
    return np.ascontiguousarray(image[top:top + size, left:left + size]), (top, left, size)


@dataclass
class Prepared:
    """One image ready for the model: its patch and where it came from, or the reason not."""

    key: str
    patch: np.ndarray | None
    position: tuple[int, int, int] | None = None
    error: str = ""


@dataclass
class Features:
    """Per image, in input order: key, feature row (NaN where it failed), patch, error."""

    keys: list[str]
    features: np.ndarray  # (n, width) float32
    patches: list[tuple[int, int, int] | None]
    errors: list[str]  # "" where the image was read

    @property
    def ok(self) -> np.ndarray:
        return np.array([not e for e in self.errors], dtype=bool)


def default_key(item: ImageInput) -> str:
    """A path's key is its file name (as `raid detect FILE`); other inputs get "image"."""
    if isinstance(item, (str, os.PathLike)):
        return Path(item).name
    return DEFAULT_KEY


def _reason(exc: RaidError) -> str:
    return str(exc).removeprefix(f"{exc.path}: ") if exc.path else str(exc)


def decode(item: ImageInput, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """An input as a contiguous (H, W, 3) uint8 array, with `raid.primitives.images`'
    policies; RaidError with the reason otherwise."""
    if isinstance(item, (str, os.PathLike)):
        return load_rgb(item, max_pixels)
    if isinstance(item, (bytes, bytearray, memoryview)):
        return _decode_bytes(bytes(item), max_pixels)
    if isinstance(item, Image.Image):
        width, height = item.size
        if max_pixels is not None and width * height > max_pixels:
            raise RaidError(f"image of {width} x {height} pixels exceeds the limit of "
                            f"{max_pixels} pixels")
        item.load()
        return image_io._to_rgb(item)  # the file decoder's mode policy (16-bit, palette, ...)
    if isinstance(item, np.ndarray):
        if item.ndim != 3 or item.shape[2] != 3 or item.dtype != np.uint8:
            raise RaidError(f"expected an (H, W, 3) uint8 array, got {item.shape} {item.dtype}")
        if max_pixels is not None and item.shape[0] * item.shape[1] > max_pixels:
            raise RaidError(f"image of {item.shape[1]} x {item.shape[0]} pixels exceeds the "
                            f"limit of {max_pixels} pixels")
        return np.require(item, requirements=["C", "W"])  # torch wants writable arrays
    raise RaidError(f"unsupported input of type {type(item).__name__} (give a path, bytes, "
                    "a PIL image or an (H, W, 3) uint8 array)")


def _decode_bytes(data: bytes, max_pixels: int | None) -> np.ndarray:
    """Encoded bytes through `load_rgb` itself (so every policy and reason is the file
    path's): an in-memory file where the OS has one, else a private temporary file."""
    if hasattr(os, "memfd_create") and Path("/proc/self/fd").is_dir():
        fd = os.memfd_create("raid-image", 0)
        try:
            os.write(fd, data)
            return load_rgb(f"/proc/self/fd/{fd}", max_pixels)
        finally:
            os.close(fd)
    with tempfile.TemporaryDirectory(prefix="raid-image-") as tmp:
        path = Path(tmp) / "upload"
        path.write_bytes(data)
        return load_rgb(path, max_pixels)


def prepare_image(item: ImageInput, key: str, *, seed: int, size: int,
                  max_pixels: int | None = DEFAULT_MAX_PIXELS,
                  perturbation: Perturbation = CLEAN) -> Prepared:
    """Decode, perturb and choose the patch of one image (the one image -> patch path of
    every extraction); a bad image comes back with its reason, never raised."""
    try:
        image = decode(item, max_pixels)
        if perturbation.steps:
            image = perturbation.apply(image, seed, key)
        patch, position = choose_patch(image, key, seed, size)
    except RaidError as exc:
        return Prepared(key, None, None, _reason(exc))
    return Prepared(key, patch, position)


@dataclass(frozen=True)
class FilePatches:
    """`prepare_image` for the files of a folder, as the Lightning datasets call it
    (picklable, for worker processes): (root, key) -> (patch or zeros, error)."""

    seed: int
    size: int
    max_pixels: int | None = DEFAULT_MAX_PIXELS
    perturbation: Perturbation = field(default=CLEAN)

    def __call__(self, root: Path, key: str) -> tuple[np.ndarray, str]:
        p = prepare_image(Path(root) / key, key, seed=self.seed, size=self.size,
                          max_pixels=self.max_pixels, perturbation=self.perturbation)
        if p.error:
            return np.zeros((self.size, self.size, 3), np.uint8), p.error
        return p.patch, ""


class Featurizer:
    """AIM, loaded once, and how it reads images: `featurize(images, keys)`."""

    def __init__(self, model: AimModel, config: AimConfig, settings: FeaturizerSettings, *,
                 device: torch.device | str = "cpu", batch_size: int = 32,
                 max_pixels: int | None = DEFAULT_MAX_PIXELS, workers: int = 0):
        if settings.precision not in PRECISIONS:
            raise RaidError(f"precision must be one of {', '.join(sorted(PRECISIONS))}, "
                            f"not {settings.precision!r}")
        if batch_size < 1:
            raise RaidError(f"batch size must be at least 1, got {batch_size}")
        self.config, self.settings = config, settings
        self.device = resolve_device(device)
        self.model = model.to(self.device).eval().requires_grad_(False)
        self.batch_size, self.max_pixels, self.workers = batch_size, max_pixels, workers
        self.provenance = {**aim_provenance(config, settings), "feature_dim": config.width}

    @classmethod
    def load(cls, arch: str | os.PathLike, backbone: str | os.PathLike,
             head: str | os.PathLike | None = None, *, probe: str = "best", seed: int = 0,
             precision: str = "32", perturbation: Perturbation = CLEAN,
             device: torch.device | str = "cpu", batch_size: int = 32,
             max_pixels: int | None = DEFAULT_MAX_PIXELS, workers: int = 0) -> "Featurizer":
        """Read the AIM size, load the weights and hash them (each once per process)."""
        settings = FeaturizerSettings(os.fspath(arch), os.fspath(backbone),
                                      None if head is None else os.fspath(head), probe,
                                      int(seed), precision, perturbation)
        config = load_config(settings.arch, probe)
        model = load_model(config, settings.backbone, settings.head)
        return cls(model, config, settings, device=device, batch_size=batch_size,
                   max_pixels=max_pixels, workers=workers)

    @classmethod
    def from_options(cls, opts: Any, device: torch.device | str | None = None) -> "Featurizer":
        """From `raid.pipelines.extraction.ExtractOptions` (decoding in `num_workers` threads)."""
        return cls.load(opts.arch, opts.backbone, opts.head, probe=opts.probe, seed=opts.seed,
                        precision=opts.precision, perturbation=opts.perturbation,
                        device=device or opts.accelerator, batch_size=opts.batch_size,
                        max_pixels=opts.max_pixels, workers=opts.num_workers)

    @property
    def dim(self) -> int:
        return self.config.width

    def provenance_for(self, perturbation: Perturbation) -> dict:
        """The provenance of this model's features under another perturbation setting."""
        return {**self.provenance, "perturbation": perturbation.name}

    def prepare(self, item: ImageInput, key: str | None = None) -> Prepared:
        """Decode, perturb and choose the patch of one image; never raises for a bad image."""
        s = self.settings
        return prepare_image(item, default_key(item) if key is None else key, seed=s.seed,
                             size=self.config.image_size, max_pixels=self.max_pixels,
                             perturbation=s.perturbation)

    def encode_patches(self, patches: np.ndarray | torch.Tensor) -> np.ndarray:
        """uint8 patches (B, S, S, 3) -> float32 features (B, width), on this device."""
        batch = torch.as_tensor(patches).to(self.device, non_blocking=True)
        with torch.inference_mode(), precision_context(self.settings.precision, self.device):
            return encode(self.model, batch).cpu().numpy()

    def featurize(self, items: Sequence[ImageInput], keys: Sequence[str | None] | None = None
                  ) -> Features:
        """Features of every image, batched; failures come back per image, never raised."""
        items = list(items)
        if keys is None:
            keys = [None] * len(items)
        if len(keys) != len(items):
            raise RaidError(f"{len(items)} images but {len(keys)} keys")
        out = Features([], np.full((len(items), self.dim), np.nan, np.float32), [], [])
        start = 0
        for chunk in self._prepared(items, list(keys)):
            ok = [i for i, p in enumerate(chunk) if not p.error]
            if ok:
                rows = self.encode_patches(np.stack([chunk[i].patch for i in ok]))
                out.features[[start + i for i in ok]] = rows
            out.keys += [p.key for p in chunk]
            out.patches += [p.position for p in chunk]
            out.errors += [p.error for p in chunk]
            start += len(chunk)
        return out

    def _prepared(self, items: list, keys: list) -> Iterator[list[Prepared]]:
        """Prepared images in chunks of one batch; decoding in threads when `workers`."""
        size = self.batch_size
        chunks = [(items[i:i + size], keys[i:i + size]) for i in range(0, len(items), size)]
        if self.workers <= 0 or len(items) <= 1:
            for its, ks in chunks:
                yield [self.prepare(it, k) for it, k in zip(its, ks)]
            return
        with ThreadPoolExecutor(max_workers=self.workers) as pool:
            for its, ks in chunks:
                yield list(pool.map(self.prepare, its, ks))
