"""raid.primitives.images: every odd file gets its documented outcome; pixel policies hold."""

from __future__ import annotations

import io
import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from helpers import bomb_png

from raid.primitives.errors import RaidError
from raid.primitives.images import DEFAULT_MAX_PIXELS, IMAGE_SUFFIXES, ImageError, load_rgb
from raid.primitives.layout import walk


def _outcome(path: Path) -> str:
    try:
        array = load_rgb(path)
    except ImageError as exc:
        assert str(path) in str(exc) and str(exc).strip() != str(path)
        return "fail"
    assert array.dtype == np.uint8 and array.ndim == 3 and array.shape[2] == 3
    assert array.flags.c_contiguous
    with Image.open(path) as image:  # stored pixel order: (rows, cols) = (height, width)
        assert array.shape[:2] == (image.size[1], image.size[0])
    return "ok"


def test_bad_images_outcomes(bad_images: Path):
    expected = json.loads((bad_images / "EXPECTED.json").read_text())
    kept, other = walk(bad_images, IMAGE_SUFFIXES)
    wrong = []
    for key, entry in expected.items():
        if entry["outcome"] == "ignore":
            if key not in other or key in kept:
                wrong.append(f"{key}: should be skipped by suffix")
            continue
        if key not in kept:
            wrong.append(f"{key}: not discovered")
            continue
        got = _outcome(bad_images / key)
        if got != entry["outcome"]:
            wrong.append(f"{key}: {got}, expected {entry['outcome']} ({entry['why']})")
    assert not wrong, wrong
    assert set(kept) == {k for k, e in expected.items() if e["outcome"] != "ignore"}


def test_bad_images_reasons(bad_images: Path):
    reasons = {}
    for name in ["empty.jpg", "truncated.jpg", "html_as.jpg", "not_an_image.png", "bomb_40000.png"]:
        with pytest.raises(ImageError) as info:
            load_rgb(bad_images / name)
        reasons[name] = str(info.value)
    assert reasons["empty.jpg"].endswith("empty file")
    assert reasons["truncated.jpg"].endswith("truncated image")
    assert "looks like HTML/text" in reasons["html_as.jpg"]
    assert "looks like HTML/text" in reasons["not_an_image.png"]
    assert "exceeds the limit" in reasons["bomb_40000.png"]


def test_bad_images_gray16_is_scaled(bad_images: Path):
    array = load_rgb(bad_images / "gray16.png")
    with Image.open(bad_images / "gray16.png") as image:
        raw = np.asarray(image).astype(np.uint32)
    assert raw.max() > 255  # really 16-bit content
    np.testing.assert_array_equal(array[:, :, 0], (raw >> 8).astype(np.uint8))
    assert (array == 255).mean() < 0.5  # a plain RGB conversion clips most of it to white


def test_sixteen_bit_png_scaled_not_clipped(tmp_path: Path):
    values = np.linspace(0, 65535, 64 * 48).astype(np.uint16).reshape(48, 64)
    path = tmp_path / "g16.png"
    Image.fromarray(values).save(path)
    with Image.open(path) as image:
        assert image.mode.startswith("I")
    array = load_rgb(path)
    assert array.shape == (48, 64, 3)
    for c in range(3):
        np.testing.assert_array_equal(array[:, :, c], (values >> 8).astype(np.uint8))
    assert array.min() == 0 and array.max() == 255 and len(np.unique(array)) > 200


def test_mode_i_taken_as_sixteen_bit(tmp_path: Path):
    values = np.array([[0, 255, 256, 40000], [65535, 70000, -5, 1000]], dtype=np.int32)
    path = tmp_path / "int.tif"
    Image.fromarray(values, mode="I").save(path)
    array = load_rgb(path)
    expected = (np.clip(values, 0, 65535) >> 8).astype(np.uint8)
    np.testing.assert_array_equal(array[:, :, 1], expected)


def test_pixel_limit_refused_from_header(tmp_path: Path, monkeypatch):
    path = tmp_path / "small.png"
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(path)
    assert load_rgb(path, max_pixels=600).shape == (20, 30, 3)

    monkeypatch.setattr(ImageFile.ImageFile, "load", _no_decoding)
    with pytest.raises(ImageError, match=r"30 x 20 pixels exceeds the limit of 599 pixels "
                                         r"\(raise it with --max-pixels\)"):
        load_rgb(path, max_pixels=599)


def _no_decoding(self, *args, **kwargs):
    raise AssertionError("pixels decoded before the size check")


@pytest.mark.parametrize("side", [20000, 40000])
def test_bomb_header_refused_without_decoding(tmp_path: Path, monkeypatch, side: int):
    """A small file claiming 20000 x 20000 pixels or more is refused from its header: no
    pixel is decoded."""
    assert side * side > DEFAULT_MAX_PIXELS
    path = tmp_path / "bomb.png"
    path.write_bytes(bomb_png(side, side))
    monkeypatch.setattr(ImageFile.ImageFile, "load", _no_decoding)
    claimed = f"({side} x {side}|{side * side}) pixels"
    with pytest.raises(ImageError, match=f"image of {claimed} exceeds the limit of "
                                         f"{DEFAULT_MAX_PIXELS} pixels"):
        load_rgb(path)


def test_truncated_jpeg_fails_and_pillow_state_untouched(tmp_path: Path):
    rng = np.random.default_rng(0)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (200, 300, 3), dtype=np.uint8)).save(buffer, "JPEG")
    data = buffer.getvalue()
    full, cut = tmp_path / "full.jpg", tmp_path / "cut.jpg"
    full.write_bytes(data)
    cut.write_bytes(data[: len(data) // 3])
    assert load_rgb(full).shape == (200, 300, 3)
    with pytest.raises(ImageError, match="truncated image"):
        load_rgb(cut)
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def _jpeg_claiming(width: int, height: int, **save) -> bytes:
    """A small real JPEG whose frame header is rewritten to claim `width` x `height`: its
    coded data ends long before the declared size, yet the file still ends with EOI."""
    rng = np.random.default_rng(1)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (48, 48, 3), dtype=np.uint8)).save(buffer, "JPEG",
                                                                           **save)
    data = bytearray(buffer.getvalue())
    sof = max(data.find(b"\xff\xc0"), data.find(b"\xff\xc2"))
    struct.pack_into(">HH", data, sof + 5, height, width)
    return bytes(data)


@pytest.mark.parametrize("save", [{}, {"progressive": True}, {"subsampling": 0}])
def test_jpeg_with_data_short_of_its_declared_size_is_truncated(tmp_path: Path, save):
    """Before: decoded without an error as 100 megapixels of grey."""
    path = tmp_path / "claims.jpg"
    path.write_bytes(_jpeg_claiming(10000, 10000, **save))
    assert path.stat().st_size < 5000
    with pytest.raises(ImageError, match="truncated image .*10000 x 10000 pixels"):
        load_rgb(path)
    path.write_bytes(_jpeg_claiming(48, 48, **save))  # the same file at its true size
    assert load_rgb(path).shape == (48, 48, 3)


def test_flat_jpegs_are_not_taken_for_truncated(tmp_path: Path):
    """The bound is one bit per 8 x 8 block: the most compressible real JPEGs stay above."""
    for mode, save in [("L", {"optimize": True, "progressive": True}), ("RGB", {})]:
        path = tmp_path / f"flat_{mode}.jpg"
        Image.new(mode, (2000, 1500), 0).save(path, "JPEG", **save)
        assert load_rgb(path).shape == (1500, 2000, 3)


def test_png_with_data_short_of_its_declared_size_is_truncated(tmp_path: Path):
    buffer = io.BytesIO()
    Image.new("RGB", (48, 48), (10, 20, 30)).save(buffer, "PNG")
    data = bytearray(buffer.getvalue())
    struct.pack_into(">II", data, 16, 10000, 10000)
    struct.pack_into(">I", data, 29, zlib.crc32(bytes(data[12:29])))
    (tmp_path / "claims.png").write_bytes(bytes(data))
    with pytest.raises(ImageError, match="truncated image"):
        load_rgb(tmp_path / "claims.png")


def test_non_images(tmp_path: Path):
    cases = {"empty.jpg": b"", "page.jpg": b"<!DOCTYPE html><html>404</html>",
             "notes.png": "plain text, with ünicode\n".encode() * 20,
             "noise.webp": bytes(range(256)) * 4}
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
    with pytest.raises(ImageError, match="empty file$"):
        load_rgb(tmp_path / "empty.jpg")
    for name in ["page.jpg", "notes.png"]:
        with pytest.raises(ImageError, match=r"not an image \(looks like HTML/text\)"):
            load_rgb(tmp_path / name)
    with pytest.raises(ImageError, match="not an image"):
        load_rgb(tmp_path / "noise.webp")
    with pytest.raises(ImageError, match="no such file"):
        load_rgb(tmp_path / "missing.png")
    with pytest.raises(ImageError, match="not a file"):
        load_rgb(tmp_path)
    assert issubclass(ImageError, RaidError)


def test_alpha_dropped_like_the_seed(tmp_path: Path):
    rgba = np.zeros((8, 9, 4), np.uint8)
    rgba[..., 0], rgba[..., 1], rgba[..., 2] = 200, 100, 50
    rgba[..., 3] = np.arange(9, dtype=np.uint8)[None, :] * 30  # mostly transparent
    path = tmp_path / "rgba.png"
    Image.fromarray(rgba, mode="RGBA").save(path)
    np.testing.assert_array_equal(load_rgb(path), rgba[..., :3])


def test_conversions_match_pillow_convert(tmp_path: Path):
    rng = np.random.default_rng(1)
    rgb = Image.fromarray(rng.integers(0, 256, (30, 40, 3), dtype=np.uint8))
    images = {
        "p_transparent.png": rgb.convert("P"),
        "la.png": rgb.convert("LA"),
        "one_bit.png": rgb.convert("1"),
        "gray.bmp": rgb.convert("L"),
        "cmyk.jpg": rgb.convert("CMYK"),
        "cmyk.tif": rgb.convert("CMYK"),
    }
    images["p_transparent.png"].info["transparency"] = 3
    for name, image in images.items():
        path = tmp_path / name
        if name == "p_transparent.png":
            image.save(path, transparency=3)
        else:
            image.save(path)
        with Image.open(path) as stored:
            expected = np.asarray(stored.convert("RGB"))
        got = load_rgb(path)
        assert got.shape == (30, 40, 3), name
        np.testing.assert_array_equal(got, expected, err_msg=name)


def test_multi_frame_gif_gives_first_frame(tmp_path: Path):
    frames = [Image.fromarray(np.full((10, 12, 3), v, np.uint8)) for v in (10, 120, 240)]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:])
    array = load_rgb(path)
    with Image.open(path) as image:
        assert image.n_frames == 3
        first = np.asarray(image.convert("RGB"))
    np.testing.assert_array_equal(array, first)
    assert abs(int(array.mean()) - 10) <= 2


def test_exif_orientation_ignored(tmp_path: Path):
    stored = np.zeros((20, 50, 3), np.uint8)
    stored[:, :25] = 255
    image = Image.fromarray(stored)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    path = tmp_path / "rotated.jpg"
    image.save(path, exif=exif.tobytes(), quality=95)
    with Image.open(path) as check:
        assert check.getexif().get(0x0112) == 6
    array = load_rgb(path)
    assert array.shape == (20, 50, 3)  # stored order, not the displayed 50 x 20
    assert array[:, :20].mean() > 200 and array[:, 30:].mean() < 50
