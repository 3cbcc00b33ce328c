"""The texture-rich 224 x 224 patch of an image, and the ImageNet normalisation of patches.

Selection (as the seed does it, section 2 of the method notes):

- An image with a side under `size` is resized whole to `size x size` (Pillow bilinear on
  the uint8 RGB image); no random numbers are drawn for it.
- Otherwise `candidates` positions are drawn from a `random.Random`, for each one
  `top = rng.randint(0, H - size)` then `left = rng.randint(0, W - size)`, the very calls
  the seed makes, so the same rng state gives the seed's positions.
- Each candidate patch `p` is scored by its pixel fluctuation: the sum over the three
  channels of |horizontal|, |vertical|, |main-diagonal| (`p[:-1,:-1]` vs `p[1:,1:]`) and
  |anti-diagonal| (`p[1:,:-1]` vs `p[:-1,1:]`) neighbour differences inside the patch.
- The highest score wins; among equal scores, the **first** candidate drawn (what
  `np.argmax`, `max(range(n), key=...)` or a stable `sorted(..., reverse=True)[0]` give).

RAID computes all scores at once from summed-area tables of the four difference maps, in
exact int64 arithmetic, on CPU or GPU tensors. The seed sums each patch in float32, whose
rounding (scores reach ~1.5e8 > 2**24) can in principle reorder two candidates whose exact
scores differ by a few units; RAID's exact scores are the true ones. `patch_scores_reference`
is the seed-style per-patch loop, kept for tests and for `raid bench patch`.

Reproducibility: the seed never seeds this draw; RAID draws from `patch_rng(seed, key)`.
"""

from __future__ import annotations

import random
from typing import Sequence

import numpy as np
import torch
from PIL import Image

from raid.seeding import file_rng

PATCH_SIZE = 224
CANDIDATES = 192
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def patch_rng(seed: int, key: str) -> random.Random:
    """The rng that chooses the patch of the file with key `key` in a run seeded `seed`."""
    return file_rng(seed, key, "patch")


def draw_candidates(rng: random.Random, height: int, width: int, size: int = PATCH_SIZE,
                    candidates: int = CANDIDATES) -> tuple[list[int], list[int]]:
    """Candidate (tops, lefts), drawn exactly as the seed draws them: top, then left, per patch."""
    tops: list[int] = []
    lefts: list[int] = []
    for _ in range(candidates):
        tops.append(rng.randint(0, height - size))
        lefts.append(rng.randint(0, width - size))
    return tops, lefts


def patch_scores_torch(image: torch.Tensor, tops: torch.Tensor | Sequence[int],
                       lefts: torch.Tensor | Sequence[int], size: int = PATCH_SIZE) -> torch.Tensor:
    """Exact fluctuation scores (int64, on `image.device`) of the `size x size` patches at
    (tops[i], lefts[i]) of a uint8 (H, W, 3) tensor, computed from summed-area tables.

    Inside a patch the horizontal differences cover `size` rows x `size - 1` columns, the
    vertical ones `size - 1` x `size`, both diagonal ones `size - 1` x `size - 1`.
    """
    _check_image(image, size)
    device = image.device
    tops = torch.as_tensor(tops, dtype=torch.int64, device=device)
    lefts = torch.as_tensor(lefts, dtype=torch.int64, device=device)
    # int16 holds a difference of two uint8 values (and the channel sum, at most 3 * 255 * 2).
    # Channels first, so that each channel's differences run over contiguous rows.
    x = image.permute(2, 0, 1).to(torch.int16)
    horizontal = (x[:, :, 1:] - x[:, :, :-1]).abs_().sum(dim=0, dtype=torch.int16)
    vertical = (x[:, 1:] - x[:, :-1]).abs_().sum(dim=0, dtype=torch.int16)
    diagonal = (x[:, 1:, 1:] - x[:, :-1, :-1]).abs_().sum(dim=0, dtype=torch.int16)
    diagonal += (x[:, 1:, :-1] - x[:, :-1, 1:]).abs_().sum(dim=0, dtype=torch.int16)
    del x
    scores = _box_sums(horizontal, tops, lefts, size, size - 1)
    scores += _box_sums(vertical, tops, lefts, size - 1, size)
    scores += _box_sums(diagonal, tops, lefts, size - 1, size - 1)
    return scores


def _box_sums(values: torch.Tensor, tops: torch.Tensor, lefts: torch.Tensor,
              rows: int, cols: int) -> torch.Tensor:
    """Sums of `values[t:t+rows, l:l+cols]` for every (t, l), via a zero-padded summed-area table."""
    # Zero row and column first, so that a box touching the top or left edge needs no case.
    # torch's cumsum along a non-last dimension is ~10x slower than along the last one, so
    # the second pass runs along the rows of the transposed table: table[j, i] is the sum of
    # values[:i, :j].
    table = torch.nn.functional.pad(values, (1, 0, 1, 0)).to(torch.int64).cumsum_(dim=1)
    table = table.t().contiguous().cumsum_(dim=1)
    bottoms, rights = tops + rows, lefts + cols
    return table[rights, bottoms] - table[rights, tops] - table[lefts, bottoms] + table[lefts, tops]


def patch_scores(image: np.ndarray, tops: Sequence[int], lefts: Sequence[int],
                 size: int = PATCH_SIZE) -> np.ndarray:
    """`patch_scores_torch` for a numpy (H, W, 3) uint8 array; int64 scores."""
    return patch_scores_torch(torch.from_numpy(np.ascontiguousarray(image)), tops, lefts,
                              size).numpy()


def patch_scores_reference(image: np.ndarray, tops: Sequence[int], lefts: Sequence[int],
                           size: int = PATCH_SIZE, dtype: type = np.float32) -> np.ndarray:
    """Seed-style scores: one patch at a time, each difference map summed with numpy.

    With the default float32 this reproduces the seed's arithmetic (rounding included);
    `dtype=np.int64` gives exact scores by the same slow route.
    """
    x = np.asarray(image).astype(dtype)
    scores = []
    for top, left in zip(tops, lefts):
        p = x[top:top + size, left:left + size]
        score = np.sum(np.abs(p[:, :-1] - p[:, 1:]))
        score += np.sum(np.abs(p[:-1, :] - p[1:, :]))
        score += np.sum(np.abs(p[:-1, :-1] - p[1:, 1:]))
        score += np.sum(np.abs(p[1:, :-1] - p[:-1, 1:]))
        scores.append(score)
    return np.asarray(scores, dtype=dtype)


def select_rich_patch(image: np.ndarray | torch.Tensor, rng: random.Random,
                      size: int = PATCH_SIZE, candidates: int = CANDIDATES) -> tuple[int, int]:
    """(top, left) of the texture-rich patch of an (H, W, 3) uint8 image with H, W >= size.

    Draws `2 * candidates` `rng.randint` calls as the seed does; a torch tensor is scored
    on its own device. Ties go to the first candidate drawn.
    """
    height, width = int(image.shape[0]), int(image.shape[1])
    _check_shape(tuple(image.shape), size)
    tops, lefts = draw_candidates(rng, height, width, size, candidates)
    if isinstance(image, torch.Tensor):
        scores = patch_scores_torch(image, tops, lefts, size).cpu().numpy()
    else:
        scores = patch_scores(image, tops, lefts, size)
    best = int(np.argmax(scores))  # first maximum
    return tops[best], lefts[best]


def rich_patch(image: np.ndarray, rng: random.Random, size: int = PATCH_SIZE,
               candidates: int = CANDIDATES) -> np.ndarray:
    """The (size, size, 3) uint8 texture-rich patch of an (H, W, 3) uint8 image.

    An image with a side under `size` is resized whole, bilinear, as the seed does (and
    draws nothing from `rng`).
    """
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 image, got {image.shape} {image.dtype}")
    if image.shape[0] < size or image.shape[1] < size:
        resized = Image.fromarray(image).resize((size, size), Image.BILINEAR)
        return np.array(resized, dtype=np.uint8)
    top, left = select_rich_patch(image, rng, size, candidates)
    return np.ascontiguousarray(image[top:top + size, left:left + size])


def normalize(batch: torch.Tensor, channels_last: bool | None = None) -> torch.Tensor:
    """uint8 patches -> float32 (B, 3, size, size): `x / 255`, then `(x - mean) / std` per
    channel with the ImageNet mean and std (as torchvision's ToTensor + Normalize do).

    Input: (B, size, size, 3) (channels last, what stacking `rich_patch` results gives) or
    (B, 3, size, size) (channels first), on any device; the output stays on that device and
    is contiguous. The layout is taken from where the 3 is; when both the second and the
    last dimension are 3, channels last is assumed unless `channels_last` says otherwise.
    """
    if batch.dtype != torch.uint8 or batch.ndim != 4:
        raise ValueError(f"expected a uint8 (B, H, W, 3) or (B, 3, H, W) batch, "
                         f"got {tuple(batch.shape)} {batch.dtype}")
    if channels_last is None:
        channels_last = batch.shape[3] == 3
    if channels_last:
        batch = batch.permute(0, 3, 1, 2)
    if batch.shape[1] != 3:
        raise ValueError(f"expected 3 channels, got shape {tuple(batch.shape)}")
    x = batch.to(torch.float32).div(255)
    mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float32, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=torch.float32, device=x.device).view(1, 3, 1, 1)
    return x.sub(mean).div(std).contiguous()


def _check_shape(shape: tuple, size: int) -> None:
    if len(shape) != 3 or shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) image, got shape {shape}")
    if shape[0] < size or shape[1] < size:
        raise ValueError(f"image of {shape[1]} x {shape[0]} is smaller than the {size} patch")


def _check_image(image: torch.Tensor, size: int) -> None:
    _check_shape(tuple(image.shape), size)
    if image.dtype != torch.uint8:
        raise ValueError(f"expected a uint8 image, got {image.dtype}")
