"""Image perturbations for robustness tests, applied to each whole image *before* its
patch is chosen, as the AIGCDetectBenchmark harness does.

Kinds (value meaning; identity value):
- ``crop``   keep the central fraction f in (0, 1] of each side (1 = identity).
- ``resize`` down-scale by f in (0, 1] with Pillow bilinear (1 = identity). The image is
  NOT scaled back up: the benchmark's "resize" robustness test down-sizes
  (``Resize((int(h/2), int(w/2)))``) and evaluates the smaller image, so here too new sides
  are ``max(1, int(side * f))`` and the patch policy handles images below 224 pixels.
- ``blur``   Gaussian blur with sigma >= 0 pixels (0 = identity): scipy's
  ``gaussian_filter`` per channel, written into a uint8 array like the benchmark does.
- ``noise``  additive Gaussian noise, sigma >= 0 on the [0, 1] scale (sigma * 255 in 8-bit
  units), rounded and clipped to 0..255 (0 = identity). Seeded per file.
- ``jpeg``   Pillow JPEG round trip at quality 1..100 (Pillow's default chroma subsampling,
  as the benchmark's ``pil_jpg``).

A combination (``"jpeg=75+blur=1"``) is always applied in the fixed order
crop -> resize -> blur -> noise -> jpeg, whatever order it was written in: geometry first
and blur before JPEG as in the benchmark, and JPEG last because compression is what
happens when an image is finally saved or shared. Names are canonical (steps in that
order, numbers formatted one way) because they key caches and provenance.
"""

from __future__ import annotations

import io
import itertools
import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
from PIL import Image
from scipy.ndimage import gaussian_filter

from raid.primitives.errors import RaidError
from raid.primitives.seeding import stable_seed

#: Kinds in the order they are applied (and named).
ORDER: tuple[str, ...] = ("crop", "resize", "blur", "noise", "jpeg")
CLEAN_NAME = "clean"


def _canonical_value(kind: str, raw: object, spec: str) -> float | int:
    """Validate one value and return it in canonical type (int for jpeg, float otherwise)."""
    try:
        value = float(raw)  # accepts "75", "75.0", 75, 0.5
    except (TypeError, ValueError):
        raise RaidError(f"perturbation {spec!r}: {kind} value {raw!r} is not a number") from None
    if not math.isfinite(value):
        raise RaidError(f"perturbation {spec!r}: {kind} value {raw!r} is not finite")
    if kind == "jpeg":
        if value != int(value) or not 1 <= value <= 100:
            raise RaidError(f"perturbation {spec!r}: jpeg quality must be an integer in 1..100, got {raw!r}")
        return int(value)
    if kind in ("blur", "noise"):
        if value < 0:
            raise RaidError(f"perturbation {spec!r}: {kind} sigma must be >= 0, got {raw!r}")
    elif kind in ("crop", "resize"):
        if not 0 < value <= 1:
            raise RaidError(f"perturbation {spec!r}: {kind} factor must be in (0, 1], got {raw!r}")
    return value + 0.0  # turns -0.0 into 0.0 so names never read "-0"


def _format_value(value: float | int) -> str:
    """One spelling per number: integers without a decimal point, else the shortest repr."""
    if isinstance(value, int) or float(value).is_integer():
        return str(int(value))
    return repr(float(value))


@dataclass(frozen=True)
class Perturbation:
    """One robustness setting: zero or more (kind, value) steps, applied in `ORDER`.

    Steps given in any order or spelling are normalised on construction, so equal
    settings compare (and hash) equal and share one `name`.
    """

    steps: tuple[tuple[str, float | int], ...] = field(default=())

    def __post_init__(self) -> None:
        seen: dict[str, float | int] = {}
        for step in self.steps:
            try:
                kind, raw = step
            except (TypeError, ValueError):
                raise RaidError(f"perturbation step {step!r} is not a (kind, value) pair") from None
            if kind not in ORDER:
                raise RaidError(f"unknown perturbation kind {kind!r} (known: {', '.join(ORDER)})")
            if kind in seen:
                raise RaidError(f"perturbation kind {kind!r} appears twice in one setting")
            seen[kind] = _canonical_value(kind, raw, f"{kind}={raw}")
        object.__setattr__(self, "steps", tuple((k, seen[k]) for k in ORDER if k in seen))

    @property
    def name(self) -> str:
        """Canonical name, e.g. ``"blur=1+jpeg=75"``; ``"clean"`` for no steps."""
        if not self.steps:
            return CLEAN_NAME
        return "+".join(f"{kind}={_format_value(value)}" for kind, value in self.steps)

    @property
    def is_clean(self) -> bool:
        return not self.steps

    @classmethod
    def parse(cls, spec: str) -> "Perturbation":
        """One setting from its name (``"clean"``, ``"jpeg=75"``, ``"jpeg=75+blur=1"``)."""
        settings = parse_sweep([spec])
        if len(settings) != 1:
            raise RaidError(f"perturbation {spec!r} names {len(settings)} settings, expected one")
        return settings[0]

    def apply(self, image: np.ndarray, seed: int, key: str) -> np.ndarray:
        """The perturbed copy of a uint8 RGB image (H, W, 3); the input is not modified.

        Deterministic for a given (seed, key): the noise stream comes from
        ``stable_seed(seed, key, "perturb")``.
        """
        image = np.asarray(image)
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"expected a uint8 (H, W, 3) array, got {image.dtype} {image.shape}")
        out = image
        for kind, value in self.steps:
            if kind == "crop":
                out = _center_crop(out, float(value))
            elif kind == "resize":
                out = _downscale(out, float(value))
            elif kind == "blur":
                out = _blur(out, float(value))
            elif kind == "noise":
                rng = np.random.default_rng(stable_seed(seed, key, "perturb"))
                out = _noise(out, float(value), rng)
            elif kind == "jpeg":
                out = _jpeg(out, int(value))
        # a fresh, writable array: crop returns a view and identity steps return the input
        return out.copy() if np.shares_memory(out, image) else out

    def __str__(self) -> str:
        return self.name


CLEAN = Perturbation()


def parse_sweep(specs: Sequence[str]) -> list[Perturbation]:
    """Settings from command-line specs, in order, duplicates (by name) dropped.

    Each spec is ``kind=v1,v2,...`` (one setting per value) or steps joined by ``+``
    (one combined setting, e.g. ``"jpeg=75+blur=1"``); comma lists inside a combination
    give every combination (``"jpeg=95,75+blur=1,2"`` -> 4 settings). ``"clean"`` is the
    identity. Bad specs raise `RaidError` with a one-line reason.
    """
    if isinstance(specs, str):
        specs = [specs]
    result: list[Perturbation] = []
    names: set[str] = set()
    for spec in specs:
        text = str(spec).strip()
        if not text:
            raise RaidError("empty perturbation spec")
        if text.lower() == CLEAN_NAME:
            options: list[list[tuple[str, object]]] = []
        else:
            options = []
            for part in text.split("+"):
                kind, sep, values = part.strip().partition("=")
                kind = kind.strip().lower()
                if not sep:
                    raise RaidError(f"perturbation {spec!r}: {part.strip()!r} is not KIND=VALUE[,VALUE...]")
                if kind not in ORDER:
                    raise RaidError(f"perturbation {spec!r}: unknown kind {kind!r} (known: {', '.join(ORDER)})")
                items = [v.strip() for v in values.split(",")]
                if not values.strip() or any(not v for v in items):
                    raise RaidError(f"perturbation {spec!r}: empty value for {kind}")
                options.append([(kind, _canonical_value(kind, v, text)) for v in items])
        for combo in itertools.product(*options):
            setting = Perturbation(tuple(combo))
            if setting.name not in names:
                names.add(setting.name)
                result.append(setting)
    return result


def _center_crop(image: np.ndarray, fraction: float) -> np.ndarray:
    h, w = image.shape[:2]
    nh, nw = max(1, int(h * fraction)), max(1, int(w * fraction))
    top, left = (h - nh) // 2, (w - nw) // 2
    return image[top:top + nh, left:left + nw]


def _downscale(image: np.ndarray, factor: float) -> np.ndarray:
    h, w = image.shape[:2]
    nh, nw = max(1, int(h * factor)), max(1, int(w * factor))
    if (nh, nw) == (h, w):
        return image
    return np.array(Image.fromarray(image).resize((nw, nh), Image.BILINEAR))


def _blur(image: np.ndarray, sigma: float) -> np.ndarray:
    if sigma == 0:
        return image
    out = np.empty_like(image)
    for c in range(3):  # per channel, into uint8 output, as the benchmark harness does
        gaussian_filter(image[:, :, c], sigma=sigma, output=out[:, :, c])
    return out


def _noise(image: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    if sigma == 0:
        return image
    noisy = image.astype(np.float64) + rng.normal(0.0, sigma * 255.0, size=image.shape)
    return np.clip(np.rint(noisy), 0, 255).astype(np.uint8)


def _jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=quality)
    buffer.seek(0)
    with Image.open(buffer) as decoded:
        return np.array(decoded.convert("RGB"))
