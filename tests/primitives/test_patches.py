"""raid.primitives.patches: the seed's patch choice and rng use, exact scores, resize, normalisation."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from PIL import Image

import raid.primitives.patches as patches
from raid.bench.patch import seed_style_choice
from raid.primitives.patches import (IMAGENET_MEAN, IMAGENET_STD, draw_candidates,
                                     draw_candidates_reference, normalize, patch_rng,
                                     patch_scores, patch_scores_reference, patch_scores_torch,
                                     rich_patch, select_rich_patch)
from raid.primitives import synthetic
from raid.primitives.seeding import file_rng


def _textured(height: int, width: int, seed: int) -> np.ndarray:
    return synthetic.images(1, height, width, seed, make=synthetic.textured)[0]


def _seed_choice(image: np.ndarray, rng: random.Random, size: int, candidates: int):
    """The seed's procedure, spelled out: draws, float32 scores patch by patch, first max."""
    tops, lefts = [], []
    for _ in range(candidates):
        tops.append(rng.randint(0, image.shape[0] - size))
        lefts.append(rng.randint(0, image.shape[1] - size))
    scores = patch_scores_reference(image.astype(np.float32), tops, lefts, size)
    best = int(np.argmax(scores))
    return tops[best], lefts[best]


@pytest.mark.parametrize("height,width,seed", [(224, 224, 0), (224, 331, 1), (290, 224, 2),
                                               (300, 417, 3), (512, 512, 4)])
def test_choice_matches_seed_loop(height, width, seed):
    image = _textured(height, width, seed)
    ours = select_rich_patch(image, random.Random(seed), 224, 192)
    assert ours == _seed_choice(image, random.Random(seed), 224, 192)


@pytest.mark.parametrize("size,height,width", [(8, 8, 8), (8, 8, 40), (16, 57, 16),
                                               (16, 45, 70), (31, 64, 33)])
def test_scores_exact_small_sizes(size, height, width):
    rng = np.random.default_rng(size + height + width)
    image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    tops, lefts = draw_candidates(random.Random(7), height, width, size, 64)
    exact = patch_scores_reference(image, tops, lefts, size, dtype=np.int64)
    np.testing.assert_array_equal(patch_scores(image, tops, lefts, size), exact)
    best = int(np.argmax(exact))
    assert select_rich_patch(image, random.Random(7), size, 64) == (tops[best], lefts[best])


def test_scores_exact_with_strips(monkeypatch):
    """Row strips (used for large images on CPU) must join without gaps or overlaps."""
    image = np.random.default_rng(3).integers(0, 256, (97, 61, 3), dtype=np.uint8)
    tops, lefts = draw_candidates(random.Random(1), 97, 61, 24, 100)
    exact = patch_scores_reference(image, tops, lefts, 24, dtype=np.int64)
    for strip_rows in (1, 2, 7, 96, 97, 500):
        monkeypatch.setattr(patches, "_STRIP_PIXELS", strip_rows * 61)
        np.testing.assert_array_equal(patch_scores(image, tops, lefts, 24), exact)
        torch_scores = patch_scores_torch(torch.from_numpy(image), tops, lefts, 24)
        np.testing.assert_array_equal(torch_scores.numpy(), exact)


def test_patch_extents_touch_every_edge():
    """A single bright pixel in a corner only counts for patches that contain it."""
    image = np.zeros((6, 7, 3), np.uint8)
    image[5, 6] = 255  # bottom-right corner
    tops = [t for t in range(3) for _ in range(4)]
    lefts = [left for _ in range(3) for left in range(4)]
    exact = patch_scores_reference(image, tops, lefts, 4, dtype=np.int64)
    assert exact.max() > 0 and (exact == 0).any()
    np.testing.assert_array_equal(patch_scores(image, tops, lefts, 4), exact)


def test_rng_consumed_like_the_seed():
    image = _textured(260, 300, 5)
    rng = random.Random(11)
    select_rich_patch(image, rng, 224, 192)
    twin = random.Random(11)
    for _ in range(192):
        twin.randint(0, 260 - 224)
        twin.randint(0, 300 - 224)
    assert rng.getstate() == twin.getstate()
    # Also at H == W == size, where every draw is randint(0, 0).
    flat = np.zeros((224, 224, 3), np.uint8)
    rng, twin = random.Random(2), random.Random(2)
    assert select_rich_patch(flat, rng) == (0, 0)
    for _ in range(2 * 192):
        twin.randint(0, 0)
    assert rng.getstate() == twin.getstate()


def test_ties_go_to_first_candidate():
    flat = np.full((300, 320, 3), 77, np.uint8)  # every score is 0
    tops, lefts = draw_candidates(random.Random(4), 300, 320)
    assert select_rich_patch(flat, random.Random(4)) == (tops[0], lefts[0])


def test_torch_cpu_path_equals_numpy_path():
    image = _textured(333, 280, 6)
    tops, lefts = draw_candidates(random.Random(3), 333, 280)
    tensor = torch.from_numpy(image)
    scores = patch_scores_torch(tensor, torch.tensor(tops), torch.tensor(lefts))
    assert scores.dtype == torch.int64
    np.testing.assert_array_equal(scores.numpy(), patch_scores(image, tops, lefts))
    assert select_rich_patch(tensor, random.Random(3)) == select_rich_patch(image, random.Random(3))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU")
def test_gpu_path_equals_cpu_path():
    image = _textured(400, 500, 7)
    tops, lefts = draw_candidates(random.Random(5), 400, 500)
    gpu = patch_scores_torch(torch.from_numpy(image).cuda(), tops, lefts)
    assert gpu.device.type == "cuda"
    np.testing.assert_array_equal(gpu.cpu().numpy(), patch_scores(image, tops, lefts))


def test_rich_patch_crop_and_small_image_resize():
    image = _textured(250, 260, 8)
    top, left = select_rich_patch(image, random.Random(9))
    patch = rich_patch(image, random.Random(9))
    assert patch.shape == (224, 224, 3) and patch.dtype == np.uint8
    np.testing.assert_array_equal(patch, image[top:top + 224, left:left + 224])

    for shape in [(100, 500), (500, 100), (1, 1), (223, 224)]:
        small = np.random.default_rng(0).integers(0, 256, shape + (3,), dtype=np.uint8)
        rng = random.Random(1)
        state = rng.getstate()
        got = rich_patch(small, rng)
        expected = np.asarray(Image.fromarray(small).resize((224, 224), Image.BILINEAR))
        np.testing.assert_array_equal(got, expected)
        assert rng.getstate() == state  # nothing drawn for a resized image


def test_normalize_values_and_layouts():
    rng = np.random.default_rng(0)
    nhwc = rng.integers(0, 256, (2, 5, 6, 3), dtype=np.uint8)
    expected = (nhwc.astype(np.float64) / 255 - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)
    expected = expected.transpose(0, 3, 1, 2)
    out = normalize(torch.from_numpy(nhwc))
    assert out.dtype == torch.float32 and out.shape == (2, 3, 5, 6) and out.is_contiguous()
    np.testing.assert_allclose(out.numpy(), expected, atol=1e-5)
    nchw = torch.from_numpy(nhwc).permute(0, 3, 1, 2).contiguous()
    torch.testing.assert_close(normalize(nchw), out, rtol=0, atol=0)
    # Ambiguous shape (B, 3, 3, 3): channels last unless told otherwise.
    cube = torch.from_numpy(rng.integers(0, 256, (1, 3, 3, 3), dtype=np.uint8))
    torch.testing.assert_close(normalize(cube, channels_last=False),
                               normalize(cube.permute(0, 2, 3, 1)), rtol=0, atol=0)
    with pytest.raises(ValueError):
        normalize(torch.zeros((1, 3, 4, 4)))  # float input: a layout or scaling mistake


def test_patch_rng_reproducible():
    image = _textured(300, 300, 9)
    first = select_rich_patch(image, patch_rng(0, "a/0_real/x.png"))
    again = select_rich_patch(image, patch_rng(0, "a/0_real/x.png"))
    assert first == again
    assert patch_rng(0, "k").getstate() == file_rng(0, "k", "patch").getstate()
    others = {select_rich_patch(image, patch_rng(s, "a/0_real/x.png")) for s in range(6)}
    assert len(others) > 1  # the seed matters


def test_cpu_choice_uses_no_torch_and_matches_the_bench_seed_loop(monkeypatch):
    """The CPU path (numpy arrays and CPU tensors) never calls torch's scoring, so its
    speed cannot depend on torch's thread count; it picks the seed loop's patch on the
    images `raid bench patch` uses, whatever torch's thread setting."""
    def refuse(*args, **kwargs):
        raise AssertionError("the CPU path must not score with torch")

    monkeypatch.setattr(patches, "patch_scores_torch", refuse)
    images = synthetic.images(6, 512, 512, 0, make=synthetic.textured)
    threads = torch.get_num_threads()
    try:
        for n_threads in (1, 2):
            torch.set_num_threads(n_threads)
            for i, image in enumerate(images):
                expected = seed_style_choice(image, random.Random(i), 192)
                assert select_rich_patch(image, random.Random(i)) == expected
                assert select_rich_patch(torch.from_numpy(image), random.Random(i)) == expected
    finally:
        torch.set_num_threads(threads)


def test_large_image_strips_match_the_seed_loop():
    """A wide image (many strips of a few rows) picks the seed loop's patch, with exact
    scores equal to the torch path's."""
    image = synthetic.images(1, 700, 2400, 3, make=synthetic.textured)[0]
    tops, lefts = draw_candidates(random.Random(5), 700, 2400)
    scores = patch_scores(image, tops, lefts)
    torch_scores = patch_scores_torch(torch.from_numpy(image), tops, lefts).numpy()
    np.testing.assert_array_equal(scores, torch_scores)
    assert select_rich_patch(image, random.Random(5)) == \
        seed_style_choice(image, random.Random(5), 192)


def test_non_uint8_input_is_refused():
    with pytest.raises(ValueError, match="uint8"):
        select_rich_patch(np.zeros((230, 230, 3), np.float32), random.Random(0))
    with pytest.raises(ValueError, match="uint8"):
        select_rich_patch(torch.zeros((230, 230, 3)), random.Random(0))


@pytest.mark.parametrize("height,width,size", [(96, 96, 56), (56, 57, 56), (224, 224, 224),
                                               (512, 384, 224), (3000, 4000, 224),
                                               (224 + 4095, 224 + 4096, 224)])
def test_fast_draw_is_the_seeds_randint_draw(height, width, size):
    """The getrandbits draw gives the numbers of the seed's randint calls (widths of one,
    powers of two and one past them, where rejection sampling differs most), and leaves
    the rng in the same state; an rng of another class goes through randint itself."""
    for seed in range(40):
        a, b = random.Random(seed), random.Random(seed)
        assert draw_candidates(a, height, width, size) == \
            draw_candidates_reference(b, height, width, size)
        assert a.getstate() == b.getstate()

    class Counting(random.Random):
        calls = 0

        def randint(self, a, b):
            Counting.calls += 1
            return super().randint(a, b)
    draw_candidates(Counting(1), height, width, size, 5)
    assert Counting.calls == 10
