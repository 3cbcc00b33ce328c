"""Synthetic images for the demo, the benchmarks and the tests: one generator per kind of
content, seeded, with no data to download.

- `photo`: a small "photo" (smooth colour gradient, soft shapes, film grain): texture that
  gives the rich-patch choice a clear answer and a random autoencoder structured input.
- `textured`: multi-scale smooth noise, hard-edged shapes and grain whose strength varies
  across the image, so patch scores spread as in real photos (rich and flat areas).
- `noise`: uniform random pixels (the cheapest image that decodes).
- `fake_image`: a `photo` changed by one simple procedure (upsampled, over-smoothed or
  with a checkerboard artefact): the demo's stand-in "generators".

`write_image` saves one (PNG or JPEG by suffix, atomically); `write_images` fills a folder
from {key: (height, width)}, each image seeded by (seed, key) so it does not depend on the
other keys.
"""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path
from typing import Callable, Mapping

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from raid.primitives.fileio import write_bytes

#: (rng, height, width) -> uint8 (height, width, 3)
MakeImage = Callable[[np.random.Generator, int, int], np.ndarray]
FAKE_PROCEDURES = ("upsample", "blur", "checkerboard")
JPEG_SUFFIXES = frozenset({".jpg", ".jpeg"})


def rng_for(*parts: object) -> np.random.Generator:
    """A generator seeded by a hash of `parts` (the same in every process and run)."""
    digest = hashlib.blake2b("\0".join(map(str, parts)).encode(), digest_size=8).digest()
    return np.random.default_rng(int.from_bytes(digest, "little"))


def photo(rng: np.random.Generator, h: int, w: int, grain: float = 5.0) -> np.ndarray:
    """A small "photo": a smooth colour gradient, a few soft shapes and film grain."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    c0, cx, cy = rng.uniform(20, 235, (3, 3))
    base = (c0 + (cx - c0) * (xx / w)[..., None] + (cy - c0) * (yy / h)[..., None] * 0.7)
    image = Image.fromarray(np.clip(base, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(3, 7))):
        x0, y0 = rng.uniform(-0.2, 0.9, 2) * (w, h)
        x1, y1 = x0 + rng.uniform(0.15, 0.6) * w, y0 + rng.uniform(0.15, 0.6) * h
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        box = [float(x0), float(y0), float(x1), float(y1)]
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)(box, fill=colour)
    image = image.filter(ImageFilter.GaussianBlur(0.8))  # soft edges, as a lens gives
    pixels = np.asarray(image, dtype=np.float64)
    texture = rng.normal(0, grain, (h, w, 1)) + rng.normal(0, grain / 2, (h, w, 3))
    return np.clip(np.rint(pixels + texture), 0, 255).astype(np.uint8)


def textured(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Smooth multi-scale noise, a few sharp-edged shapes and grain of varying strength."""
    x = np.zeros((h, w, 3), np.float32)
    for cells, amplitude in ((4, 90.0), (16, 40.0), (64, 15.0)):
        coarse = rng.normal(0.0, 1.0, (cells, cells, 3)).astype(np.float32)
        for c in range(3):
            layer = Image.fromarray(coarse[:, :, c], mode="F").resize((w, h), Image.BICUBIC)
            x[:, :, c] += amplitude * np.asarray(layer)
    rows, cols = np.mgrid[0:h, 0:w]
    for _ in range(int(rng.integers(3, 8))):  # shapes with hard edges
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        ry, rx = rng.uniform(10, h / 3), rng.uniform(10, w / 3)
        mask = ((rows - cy) / ry) ** 2 + ((cols - cx) / rx) ** 2 <= 1.0
        x[mask] = 0.3 * x[mask] + rng.uniform(0, 255, 3).astype(np.float32)
    grain = Image.fromarray(rng.uniform(0, 12, (4, 4)).astype(np.float32), mode="F")
    strength = np.asarray(grain.resize((w, h), Image.BILINEAR))
    x += strength[:, :, None] * rng.normal(0.0, 1.0, (h, w, 3)).astype(np.float32)
    return np.clip(x + 128.0, 0, 255).astype(np.uint8)


def noise(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Uniform random pixels."""
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


def fake_image(procedure: str, rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A "generated" image: a synthetic photo changed by one of `FAKE_PROCEDURES`."""
    if procedure == "upsample":  # low-resolution synthesis, nearest-neighbour upsampling
        small = photo(rng, max(8, h // 3), max(8, w // 3))
        return np.asarray(Image.fromarray(small).resize((w, h), Image.NEAREST))
    if procedure == "blur":  # over-smooth content, no grain
        smooth = photo(rng, h, w, grain=1.0)
        return np.asarray(Image.fromarray(smooth).filter(ImageFilter.GaussianBlur(1.5)))
    if procedure == "checkerboard":  # transposed-convolution style periodic artefact
        base = photo(rng, h, w).astype(np.int16)
        yy, xx = np.mgrid[0:h, 0:w]
        pattern = np.where((yy // 2 + xx // 2) % 2 == 0, 10, -10)[..., None]
        return np.clip(base + pattern, 0, 255).astype(np.uint8)
    raise ValueError(f"unknown procedure {procedure!r} (known: {', '.join(FAKE_PROCEDURES)})")


def images(count: int, h: int, w: int, seed: int = 0,
           make: MakeImage = photo) -> list[np.ndarray]:
    """`count` images of one size, drawn one after the other from one seeded generator."""
    rng = np.random.default_rng(seed)
    return [make(rng, h, w) for _ in range(count)]


def encode(image: np.ndarray, suffix: str = ".png", quality: int = 95) -> bytes:
    """An (H, W, 3) uint8 array as file bytes: JPEG for .jpg/.jpeg, else PNG."""
    buffer = io.BytesIO()
    if suffix.lower() in JPEG_SUFFIXES:
        Image.fromarray(image).save(buffer, format="JPEG", quality=quality)
    else:
        Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def write_image(path: str | os.PathLike, image: np.ndarray, quality: int = 95) -> np.ndarray:
    """Save `image` atomically (format by suffix); returns the pixels the file holds
    (a JPEG's decoded pixels differ from `image`)."""
    path = Path(path)
    data = encode(image, path.suffix, quality)
    write_bytes(path, data)
    if path.suffix.lower() not in JPEG_SUFFIXES:
        return image
    with Image.open(io.BytesIO(data)) as stored:
        return np.asarray(stored.convert("RGB"))


def write_images(folder: str | os.PathLike, sizes: Mapping[str, tuple[int, int]],
                 make: MakeImage = photo, seed: int = 0,
                 quality: int = 95) -> dict[str, np.ndarray]:
    """Write image `key` of size (h, w) under `folder` for every item of `sizes`, each made
    by `make` from `rng_for(seed, key)`; returns {key: the pixels its file holds}."""
    folder = Path(folder)
    return {key: write_image(folder / key, make(rng_for(seed, key), h, w), quality)
            for key, (h, w) in sizes.items()}
