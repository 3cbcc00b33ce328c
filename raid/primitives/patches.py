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

RAID computes all scores at once from summed-area tables (prefix sums) of the difference
maps, in exact integer arithmetic (int16 maps, int32 row sums, int64 totals): in numpy on
the CPU, and with torch for a tensor on a GPU. The CPU path never uses torch: its many
small ops would otherwise depend on torch's global intra-op thread count and stall on a
busy machine. The seed sums each patch in float32, whose rounding (scores reach ~1.5e8 >
2**24) can in principle reorder two candidates whose exact scores differ by a few units;
RAID's exact scores are the true ones. `patch_scores_reference` is the seed-style
per-patch loop, kept for tests and for `raid bench patch`.

Reproducibility: the seed never seeds this draw; RAID draws from `patch_rng(seed, key)`.
"""

from __future__ import annotations

import random
from typing import Sequence

import numpy as np
import torch
from PIL import Image

from raid.primitives.seeding import file_rng

PATCH_SIZE = 224
CANDIDATES = 192
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def patch_rng(seed: int, key: str) -> random.Random:
    """The rng that chooses the patch of the file with key `key` in a run seeded `seed`."""
    return file_rng(seed, key, "patch")


def draw_candidates_reference(rng: random.Random, height: int, width: int,
                              size: int = PATCH_SIZE, candidates: int = CANDIDATES
                              ) -> tuple[list[int], list[int]]:
    """Candidate (tops, lefts) by the seed's own calls: `rng.randint`, top then left, per
    patch (kept for the seed-style benchmarks and as the tests' oracle)."""
    tops: list[int] = []
    lefts: list[int] = []
    for _ in range(candidates):
        tops.append(rng.randint(0, height - size))
        lefts.append(rng.randint(0, width - size))
    return tops, lefts


def _draw_by_bits(rng: random.Random, height: int, width: int, size: int,
                  candidates: int) -> tuple[list[int], list[int]]:
    """The draw of `draw_candidates_reference` as CPython's `randint(0, n - 1)` computes it
    for `random.Random`: k-bit words from `getrandbits`, rejected until one is below n."""
    bits = rng.getrandbits
    nh, nw = height - size + 1, width - size + 1
    kh, kw = nh.bit_length(), nw.bit_length()
    tops: list[int] = []
    lefts: list[int] = []
    for _ in range(candidates):
        r = bits(kh)
        while r >= nh:
            r = bits(kh)
        tops.append(r)
        r = bits(kw)
        while r >= nw:
            r = bits(kw)
        lefts.append(r)
    return tops, lefts


def _same_as_randint() -> bool:
    """Whether this Python's `randint` draws as `_draw_by_bits` does (widths of one, powers
    of two and one past them, where rejection sampling differs most)."""
    for seed, (height, width) in enumerate(((1, 2), (3, 97), (1 << 12, (1 << 12) + 1),
                                            (2777, 1 << 40))):
        if _draw_by_bits(random.Random(seed), height, width, 1, 200) != \
                draw_candidates_reference(random.Random(seed), height, width, 1, 200):
            return False
    return True


#: Whether `draw_candidates` may draw by bits (checked once, at import).
_SAME_AS_RANDINT = _same_as_randint()


def draw_candidates(rng: random.Random, height: int, width: int, size: int = PATCH_SIZE,
                    candidates: int = CANDIDATES) -> tuple[list[int], list[int]]:
    """Candidate (tops, lefts): the very numbers of `draw_candidates_reference` (the seed's
    `randint` calls, same rng state), drawn straight from `getrandbits` where this Python's
    `randint` is that (about 4x faster: 20 against 84 us for 192 candidates, a share of
    every small image the service scores); otherwise by `randint` itself (which also
    raises randint's error for an image smaller than the patch)."""
    if type(rng) is random.Random and _SAME_AS_RANDINT and height >= size and width >= size:
        return _draw_by_bits(rng, height, width, size, candidates)
    return draw_candidates_reference(rng, height, width, size, candidates)


def patch_scores_torch(image: torch.Tensor, tops: torch.Tensor | Sequence[int],
                       lefts: torch.Tensor | Sequence[int], size: int = PATCH_SIZE) -> torch.Tensor:
    """Exact fluctuation scores (int64, on `image.device`) of the `size x size` patches at
    (tops[i], lefts[i]) of a uint8 (H, W, 3) tensor, computed from prefix sums.

    Inside a patch the horizontal differences cover `size` rows x `size - 1` columns, the
    vertical ones `size - 1` x `size`, both diagonal ones `size - 1` x `size - 1`.

    How: per image row, prefix sums along the row turn each candidate's column range into
    one subtraction; those per-row sums, stacked (candidates, H), are then prefix-summed
    along the rows, turning its row range into one subtraction (a summed-area table whose
    second pass only covers the candidates' columns). On CPU the image is processed in
    strips of rows, so that the difference maps stay in cache and memory stays small.
    `select_rich_patch` uses this for device tensors only (numpy's `patch_scores` on CPU).
    """
    _check_image(image, size)
    device = image.device
    height, width = int(image.shape[0]), int(image.shape[1])
    tops = torch.as_tensor(tops, dtype=torch.int64, device=device)
    lefts = torch.as_tensor(lefts, dtype=torch.int64, device=device)
    count = int(tops.shape[0])
    # Per-row sums of each candidate's column range: `rows_h` for the horizontal map,
    # `rows_vd` for the vertical and both diagonal maps (which span one row less).
    # A row sum is at most 2 * 765 * W: int32 is enough.
    rows_h = torch.zeros((count, height), dtype=torch.int32, device=device)
    rows_vd = torch.zeros((count, height), dtype=torch.int32, device=device)
    step = height if device.type != "cpu" else max(1, _STRIP_PIXELS // width)
    for first in range(0, height, step):
        last = min(first + step, height)
        # One row more than the strip (when there is one) for the vertical and diagonal maps.
        # int16 holds a difference of two uint8 values, and the channel sum of two maps.
        # Channels first, so that each channel's differences run over contiguous rows.
        x = image[first:min(last + 1, height)].permute(2, 0, 1).to(torch.int16)
        strip = x[:, :last - first]
        rows_h[:, first:last] = _row_sums(_channel_sum(strip[:, :, 1:] - strip[:, :, :-1]),
                                          lefts, size - 1)
        if x.shape[1] > 1:
            below = x.shape[1] - 1
            vertical = _channel_sum(x[:, 1:] - x[:, :-1])
            diagonal = _channel_sum(x[:, 1:, 1:] - x[:, :-1, :-1])
            diagonal += _channel_sum(x[:, 1:, :-1] - x[:, :-1, 1:])
            rows_vd[:, first:first + below] = (_row_sums(vertical, lefts, size)
                                               + _row_sums(diagonal, lefts, size - 1))
    index = torch.arange(count, device=device)
    table_h = _prefix(rows_h)
    table_vd = _prefix(rows_vd)
    return (table_h[index, tops + size] - table_h[index, tops]
            + table_vd[index, tops + size - 1] - table_vd[index, tops])


# About 1 MB of int16 per difference map for a strip: fits in a core's cache.
_STRIP_PIXELS = 1 << 17


def _channel_sum(differences: torch.Tensor) -> torch.Tensor:
    """Sum over the 3 channels of |differences| (3, h, w) int16; explicit adds beat `sum(0)`."""
    differences = differences.abs_()
    return differences[0] + differences[1] + differences[2]


def _row_sums(values: torch.Tensor, lefts: torch.Tensor, cols: int) -> torch.Tensor:
    """(candidates, h) int32: row by row, the sum of `values[:, left:left + cols]`."""
    prefix = _prefix(values, torch.int32)
    return (prefix[:, lefts + cols] - prefix[:, lefts]).t()


def _prefix(values: torch.Tensor, dtype: torch.dtype = torch.int64) -> torch.Tensor:
    """Prefix sums along the last dimension with a leading 0: out[..., j] = sum(values[..., :j]).

    Along the last (contiguous) dimension: torch's cumsum along another one is ~10x slower.
    """
    return torch.nn.functional.pad(values, (1, 0)).to(dtype).cumsum_(dim=-1)


def patch_scores(image: np.ndarray, tops: Sequence[int], lefts: Sequence[int],
                 size: int = PATCH_SIZE) -> np.ndarray:
    """`patch_scores_torch`'s exact int64 scores for a numpy (H, W, 3) uint8 array, in numpy.

    The same prefix-sum method, strip by strip, on one core: numpy's elementwise ops and
    cumulative sums are single-threaded, so the cost does not depend on torch's (global)
    thread count, and many small ops never wait on busy intra-op threads.
    """
    image = np.asarray(image)
    _check_shape(tuple(image.shape), size)
    if image.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image, got {image.dtype}")
    height, width = image.shape[0], image.shape[1]
    tops = np.asarray(tops, dtype=np.int64)
    lefts = np.asarray(lefts, dtype=np.int64)
    count = len(tops)
    # (H + 1, candidates) per-row sums with a leading zero row: the row prefix pass below
    # runs in place. A row sum is at most 2 * 765 * W: int32 is enough.
    rows_h = np.zeros((height + 1, count), dtype=np.int64)
    rows_vd = np.zeros((height + 1, count), dtype=np.int64)
    step = max(1, _STRIP_PIXELS // width)
    for first in range(0, height, step):
        last = min(first + step, height)
        # Channels first (a contiguous copy) so each channel's differences are contiguous.
        x = image[first:min(last + 1, height)].transpose(2, 0, 1).astype(np.int16)
        strip = x[:, :last - first]
        rows_h[first + 1:last + 1] = _np_row_sums(
            _np_channel_sum(strip[:, :, 1:] - strip[:, :, :-1]), lefts, size - 1)
        if x.shape[1] > 1:
            below = x.shape[1] - 1
            vertical = _np_channel_sum(x[:, 1:] - x[:, :-1])
            diagonal = _np_channel_sum(x[:, 1:, 1:] - x[:, :-1, :-1])
            diagonal += _np_channel_sum(x[:, 1:, :-1] - x[:, :-1, 1:])
            rows_vd[first + 1:first + 1 + below] = (_np_row_sums(vertical, lefts, size)
                                                    + _np_row_sums(diagonal, lefts, size - 1))
    np.cumsum(rows_h, axis=0, out=rows_h)
    np.cumsum(rows_vd, axis=0, out=rows_vd)
    index = np.arange(count)
    return (rows_h[tops + size, index] - rows_h[tops, index]
            + rows_vd[tops + size - 1, index] - rows_vd[tops, index])


def _np_channel_sum(differences: np.ndarray) -> np.ndarray:
    """Sum over the 3 channels of |differences| (3, h, w) int16."""
    np.abs(differences, out=differences)
    return differences[0] + differences[1] + differences[2]


def _np_row_sums(values: np.ndarray, lefts: np.ndarray, cols: int) -> np.ndarray:
    """(h, candidates) int32: row by row, the sum of `values[:, left:left + cols]`."""
    prefix = np.zeros((values.shape[0], values.shape[1] + 1), dtype=np.int32)
    np.cumsum(values, axis=1, dtype=np.int32, out=prefix[:, 1:])
    return prefix[:, lefts + cols] - prefix[:, lefts]


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

    Draws `2 * candidates` `rng.randint` calls as the seed does. A CUDA (or other non-CPU)
    tensor is scored on its device with torch; everything else in numpy on one core. Ties
    go to the first candidate drawn.
    """
    height, width = int(image.shape[0]), int(image.shape[1])
    _check_shape(tuple(image.shape), size)
    if candidates < 1:
        raise ValueError(f"need at least one candidate patch, got {candidates}")
    tops, lefts = draw_candidates(rng, height, width, size, candidates)
    if isinstance(image, torch.Tensor) and image.device.type != "cpu":
        scores = patch_scores_torch(image, tops, lefts, size).cpu().numpy()
    else:
        if isinstance(image, torch.Tensor):
            if image.dtype != torch.uint8:
                raise ValueError(f"expected a uint8 image, got {image.dtype}")
            image = image.numpy()
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
