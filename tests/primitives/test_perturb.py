"""raid.primitives.perturb: each perturbation does what its name says, reproducibly, and specs parse
to canonical names."""

from __future__ import annotations

import numpy as np
import pytest

from raid.primitives.errors import RaidError
from raid.primitives.perturb import CLEAN, ORDER, Perturbation, parse_sweep


def _image(h: int = 96, w: int = 128, seed: int = 0) -> np.ndarray:
    """A textured image: smooth gradients plus fine random detail (high frequencies)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([xx * 255 / w, yy * 255 / h, (xx + yy) * 127 / (h + w)], axis=-1)
    return np.clip(base * 0.6 + rng.integers(0, 100, size=(h, w, 3)), 0, 255).astype(np.uint8)


def _high_freq_energy(img: np.ndarray) -> float:
    x = img.astype(np.float64)
    return float((np.diff(x, axis=0) ** 2).sum() + (np.diff(x, axis=1) ** 2).sum())


def test_clean_is_identity_and_returns_a_copy():
    img = _image()
    out = CLEAN.apply(img, seed=0, key="a.png")
    assert CLEAN.name == "clean" and CLEAN.is_clean
    np.testing.assert_array_equal(out, img)
    out[0, 0, 0] ^= 1
    assert out[0, 0, 0] != img[0, 0, 0]  # the input is never modified nor aliased


def test_jpeg_changes_pixels_reproducibly():
    img = _image()
    p = Perturbation((("jpeg", 50),))
    a, b = p.apply(img, 0, "k"), p.apply(img, 1, "other")
    assert a.dtype == np.uint8 and a.shape == img.shape
    assert not np.array_equal(a, img)
    np.testing.assert_array_equal(a, b)  # JPEG has no randomness
    # lower quality loses more
    err = lambda q: np.abs(Perturbation((("jpeg", q),)).apply(img, 0, "k").astype(int) - img).mean()
    assert err(10) > err(50) > err(95)


def test_blur():
    img = _image()
    np.testing.assert_array_equal(Perturbation((("blur", 0),)).apply(img, 0, "k"), img)
    assert Perturbation((("blur", 0),)).name == "blur=0"
    e0 = _high_freq_energy(img)
    e1 = _high_freq_energy(Perturbation((("blur", 1),)).apply(img, 0, "k"))
    e2 = _high_freq_energy(Perturbation((("blur", 2),)).apply(img, 0, "k"))
    assert e2 < e1 < 0.5 * e0
    blurred = Perturbation((("blur", 1),)).apply(img, 0, "k")
    assert abs(blurred.astype(float).mean() - img.astype(float).mean()) < 2  # brightness kept


def test_resize_downscales_without_scaling_back():
    img = _image(96, 130)
    out = Perturbation((("resize", 0.5),)).apply(img, 0, "k")
    assert out.shape == (48, 65, 3) and out.dtype == np.uint8
    assert Perturbation((("resize", 0.3),)).apply(img, 0, "k").shape == (28, 39, 3)  # int() floors
    np.testing.assert_array_equal(Perturbation((("resize", 1),)).apply(img, 0, "k"), img)
    # bilinear down-scaling keeps the low frequencies: the gradient survives
    assert np.abs(out[:, :, 0].astype(float).mean() - img[:, :, 0].astype(float).mean()) < 3


def test_noise_reproducible_per_seed_and_key_with_right_std():
    img = np.full((200, 200, 3), 128, dtype=np.uint8)  # far from 0/255: clipping is rare
    p = Perturbation((("noise", 0.05),))
    a1, a2 = p.apply(img, 7, "x/0_real/a.png"), p.apply(img, 7, "x/0_real/a.png")
    np.testing.assert_array_equal(a1, a2)
    assert not np.array_equal(a1, p.apply(img, 7, "x/0_real/b.png"))
    assert not np.array_equal(a1, p.apply(img, 8, "x/0_real/a.png"))
    diff = a1.astype(np.float64) - 128
    assert diff.std() == pytest.approx(0.05 * 255, rel=0.03)
    assert abs(diff.mean()) < 0.2
    np.testing.assert_array_equal(Perturbation((("noise", 0),)).apply(img, 7, "k"), img)


def test_crop_keeps_the_centre():
    img = _image(100, 200)
    out = Perturbation((("crop", 0.8),)).apply(img, 0, "k")
    assert out.shape == (80, 160, 3)
    np.testing.assert_array_equal(out, img[10:90, 20:180])
    np.testing.assert_array_equal(Perturbation((("crop", 1.0),)).apply(img, 0, "k"), img)


def test_combination_applies_in_fixed_order():
    img = _image(128, 128)
    combo = Perturbation((("jpeg", 75), ("resize", 0.5), ("blur", 1)))
    assert combo.name == "resize=0.5+blur=1+jpeg=75"
    assert combo == Perturbation((("blur", 1.0), ("jpeg", "75"), ("resize", 0.5)))
    manual = img
    for kind, value in (("resize", 0.5), ("blur", 1), ("jpeg", 75)):
        manual = Perturbation(((kind, value),)).apply(manual, 0, "k")
    np.testing.assert_array_equal(combo.apply(img, 0, "k"), manual)


def test_parse_sweep_names_and_round_trip():
    specs = ["jpeg=95,75,50", "blur=1,2", "resize=0.5", "noise=0.05", "crop=0.8",
             "jpeg=75+blur=1", "clean"]
    settings = parse_sweep(specs)
    names = [s.name for s in settings]
    assert names == ["jpeg=95", "jpeg=75", "jpeg=50", "blur=1", "blur=2", "resize=0.5",
                     "noise=0.05", "crop=0.8", "blur=1+jpeg=75", "clean"]
    assert settings[-1] == CLEAN
    for s in settings:  # a name parses back to the same setting
        assert parse_sweep([s.name]) == [s]
        assert Perturbation.parse(s.name) == s
    # spelling does not change the name (it keys caches)
    assert parse_sweep(["jpeg=75.0", "blur=1.0", "noise=.05", " JPEG = 75 "]) == parse_sweep(
        ["jpeg=75", "blur=1", "noise=0.05"])
    assert parse_sweep(["jpeg=75.0"])[0].name == "jpeg=75"
    # comma lists inside a combination give every combination
    assert [s.name for s in parse_sweep(["jpeg=95,75+blur=1,2"])] == [
        "blur=1+jpeg=95", "blur=2+jpeg=95", "blur=1+jpeg=75", "blur=2+jpeg=75"]
    assert {k for s in settings for k, _ in s.steps} == set(ORDER)


@pytest.mark.parametrize("spec, match", [
    ("sharpen=1", "unknown kind"),
    ("jpeg=0", "1..100"),
    ("jpeg=101", "1..100"),
    ("jpeg=75.5", "integer"),
    ("blur=-1", ">= 0"),
    ("noise=-0.1", ">= 0"),
    ("resize=0", r"\(0, 1\]"),
    ("resize=1.5", r"\(0, 1\]"),
    ("crop=2", r"\(0, 1\]"),
    ("blur=abc", "not a number"),
    ("blur=nan", "not finite"),
    ("jpeg", "KIND=VALUE"),
    ("jpeg=", "empty value"),
    ("jpeg=75,,50", "empty value"),
    ("jpeg=75+jpeg=50", "twice"),
    ("", "empty"),
])
def test_parse_sweep_rejects_bad_specs(spec, match):
    with pytest.raises(RaidError, match=match) as info:
        parse_sweep([spec])
    assert "\n" not in str(info.value)


def test_apply_rejects_non_uint8_rgb():
    with pytest.raises(ValueError):
        CLEAN.apply(np.zeros((4, 4), dtype=np.uint8), 0, "k")
    with pytest.raises(ValueError):
        CLEAN.apply(np.zeros((4, 4, 3), dtype=np.float32), 0, "k")
