"""Synthetic images (raid.primitives.synthetic): seeded, well-formed, written as they say."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from raid.primitives import synthetic

MAKERS = [synthetic.photo, synthetic.textured, synthetic.noise,
          *[lambda rng, h, w, p=p: synthetic.fake_image(p, rng, h, w)
            for p in synthetic.FAKE_PROCEDURES]]


@pytest.mark.parametrize("make", MAKERS)
def test_images_are_seeded_and_well_formed(make):
    a = make(synthetic.rng_for("x", 1), 37, 53)
    assert a.shape == (37, 53, 3) and a.dtype == np.uint8
    assert np.array_equal(a, make(synthetic.rng_for("x", 1), 37, 53))
    assert not np.array_equal(a, make(synthetic.rng_for("x", 2), 37, 53))
    assert a.std() > 5  # not a flat image


def test_fakes_differ_from_the_photo_of_the_same_seed():
    real = synthetic.photo(synthetic.rng_for(0), 64, 64)
    for procedure in synthetic.FAKE_PROCEDURES:
        fake = synthetic.fake_image(procedure, synthetic.rng_for(0), 64, 64)
        assert np.abs(fake.astype(int) - real).mean() > 1, procedure
    with pytest.raises(ValueError, match="unknown procedure"):
        synthetic.fake_image("nope", synthetic.rng_for(0), 8, 8)


def test_images_draw_from_one_generator_in_order():
    first, second = synthetic.images(2, 20, 30, seed=4)
    rng = np.random.default_rng(4)
    assert np.array_equal(first, synthetic.photo(rng, 20, 30))
    assert np.array_equal(second, synthetic.photo(rng, 20, 30))


def test_write_images_returns_what_the_files_hold(tmp_path: Path):
    sizes = {"a.png": (30, 40), "sub/b.jpg": (24, 32), "c.JPEG": (16, 16)}
    stored = synthetic.write_images(tmp_path, sizes, seed=3, quality=80)
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")
                  if p.is_file()) == sorted(sizes)  # nothing else (no temporary files)
    for key, (h, w) in sizes.items():
        with Image.open(tmp_path / key) as im:
            assert im.format == ("PNG" if key.endswith(".png") else "JPEG")
            assert np.array_equal(np.asarray(im.convert("RGB")), stored[key])
        assert stored[key].shape == (h, w, 3)
    # each image depends on (seed, key) only, not on the other keys
    alone = synthetic.write_images(tmp_path / "alone", {"a.png": (30, 40)}, seed=3)
    assert np.array_equal(alone["a.png"], stored["a.png"])
    other = synthetic.write_images(tmp_path / "other", {"a.png": (30, 40)}, seed=4)
    assert not np.array_equal(other["a.png"], stored["a.png"])
