"""The in-memory featurizer: the features `raid extract` stores, from paths, bytes, PIL
images and arrays; the patch it reports; bad inputs per image, never raised."""

import io

import numpy as np
import pytest
from PIL import Image

from helpers import aim_args
from raid.cli.main import main
from raid.pipelines.featurizer import Featurizer
from raid.primitives.images import load_rgb
from raid.primitives.patches import patch_rng, select_rich_patch
from raid.primitives.synthetic import photo, rng_for, write_image
from raid.store.store import FeatureStore

CPU = ["--accelerator", "cpu", "--num-workers", "0", "--batch-size", "3"]
SIZES = [(120, 160), (57, 300), (40, 50), (200, 90), (64, 64)]  # (40, 50): resized whole


@pytest.fixture(scope="module")
def extracted(tmp_path_factory, tiny_aim):
    d = tmp_path_factory.mktemp("feat")
    for i, (h, w) in enumerate(SIZES):
        write_image(d / "in" / f"img{i}.png", photo(rng_for(1, i), h, w))
    (d / "in" / "broken.png").write_bytes(b"<html>not an image</html>")
    store = d / "s.h5"
    assert main(["extract", "--input", str(d / "in"), "--out", str(store),
                 *aim_args(tiny_aim), *CPU, "--seed", "5"]) == 1  # 1: broken.png failed
    with FeatureStore(store) as fs:
        rows = fs.read()
    return d / "in", dict(zip(rows.keys, rows.features))


def test_every_input_kind_gives_the_extracted_features(extracted, tiny_aim):
    folder, ref = extracted
    f = Featurizer.load(tiny_aim["arch"], tiny_aim["backbone"], tiny_aim["head"], seed=5,
                        batch_size=2, workers=2)
    keys = sorted(ref)
    paths = [folder / k for k in keys]
    as_bytes = [p.read_bytes() for p in paths]
    as_pil = [Image.open(io.BytesIO(b)) for b in as_bytes]
    as_array = [load_rgb(p) for p in paths]
    for items in (paths, as_bytes, as_pil, as_array):
        out = f.featurize(items, keys=None if items is paths else keys)
        assert out.keys == keys and not any(out.errors)
        for k, row in zip(keys, out.features):
            np.testing.assert_allclose(row, ref[k], rtol=0, atol=1e-6, err_msg=k)
    # the reported patch is the one chosen, in the decoded image's coordinates
    out = f.featurize(paths)
    for path, patch in zip(paths, out.patches):
        image = load_rgb(path)
        if min(image.shape[:2]) < f.config.image_size:
            assert patch is None  # resized whole
        else:
            top, left = select_rich_patch(image, patch_rng(5, path.name), f.config.image_size)
            assert patch == (top, left, f.config.image_size)
    # another seed picks other patches: the key and seed really drive the choice
    other = Featurizer(f.model, f.config, type(f.settings)(**{**f.settings.__dict__,
                                                              "seed": 6}))
    moved = other.featurize(paths).features
    assert not np.allclose(moved, out.features)


def test_bad_inputs_come_back_per_image(extracted, tiny_aim):
    folder, ref = extracted
    f = Featurizer.load(tiny_aim["arch"], tiny_aim["backbone"], tiny_aim["head"], seed=5)
    good = folder / "img0.png"
    items = [folder / "broken.png", b"", good, np.zeros((10, 10), np.uint8), 42,
             folder / "absent.png", Image.new("RGB", (3000, 3000))]
    f.max_pixels = 4_000_000
    out = f.featurize(items, keys=[None, "empty", None, "gray", "num", None, "big"])
    assert out.errors[0] == "not an image (looks like HTML/text)"
    assert out.errors[1] == "empty file"
    assert out.errors[2] == ""
    assert "(H, W, 3) uint8" in out.errors[3]
    assert "unsupported input of type int" in out.errors[4]
    assert out.errors[5] == "no such file"
    assert "exceeds the limit" in out.errors[6]
    assert np.isnan(out.features[[0, 1, 3, 4, 5, 6]]).all()
    np.testing.assert_allclose(out.features[2], ref["img0.png"], atol=1e-6)
    assert [p is None for p in out.patches] == [True, True, False, True, True, True, True]
