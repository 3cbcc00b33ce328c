"""Reading one image file as an 8-bit RGB array, or failing with a short reason.

Policies (they decide which pixels RAID sees, so they are fixed and documented):

- **Formats**: anything Pillow decodes; discovery keeps files whose lower-cased suffix is in
  `IMAGE_SUFFIXES` (walking itself is `raid.primitives.layout.walk`).
- **EXIF orientation is ignored**: pixels are used in stored order, as the seed and the
  AIGCDetectBenchmark harness do, so features match theirs. A photo whose EXIF tag says
  "rotate 90" is therefore seen sideways, exactly as the seed saw it.
- **Alpha is dropped**, not composited: the colour stored under a transparent pixel is
  used, as the seed's `Image.open(p).convert("RGB")` does. Palette images (with or
  without transparency), grayscale, 1-bit, LA, CMYK and YCbCr go through Pillow's
  `convert("RGB")` as in the seed.
- **16-bit images are scaled, not clipped**: `I;16*` values become `value >> 8`. Mode `I`
  (32-bit integer, e.g. 16-bit PNGs on some Pillow versions or integer TIFFs) is taken as
  16-bit content: clipped to 0..65535, then `>> 8`. (The seed's plain `convert("RGB")`
  clips 16-bit values at 255, turning most of such an image white.)
- **Multi-frame files** (GIF, TIFF, WebP, ...) give their first frame.
- **Size limit**: images of more than `max_pixels` pixels (default `DEFAULT_MAX_PIXELS`,
  128 megapixels) are refused from their header, before any pixel is decoded, so a small
  file claiming 40000 x 40000 pixels costs nothing.
- **Truncated files fail**: the whole image is decoded on load, and Pillow's
  `ImageFile.LOAD_TRUNCATED_IMAGES` is never changed (if another library has set it,
  truncation can no longer be detected). A JPEG that ends early but still closes with an
  end marker decodes as grey without an error from libjpeg, so a JPEG whose coded data
  has fewer bits than it has 8 x 8 blocks (each block codes at least one bit) is refused as
  truncated before decoding (e.g. a header claiming 10000 x 10000 pixels in 3 KB).
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from raid.primitives.errors import RaidError

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif"})

# 128 megapixels: above any camera photo (a 100 MP medium-format frame fits), below
# Pillow's own decompression-bomb warning (about 179 MP), so our limit always decides first
# at the default. An RGB image at this limit takes 384 MB once decoded.
DEFAULT_MAX_PIXELS = 128_000_000

_SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I;16S", "I;16BS", "I;16LS")


class ImageError(RaidError):
    """A file that cannot be used as an image; the message gives the path and the reason."""


RAISE_IT = " (raise it with --max-pixels)"  # the option every command and the service share


def load_rgb(path: str | Path, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """The image at `path` as a contiguous (H, W, 3) uint8 array (see the module policies).

    Raises `ImageError` naming the file and a short reason ("empty file", "truncated
    image", "not an image (looks like HTML/text)", "image of W x H pixels exceeds the
    limit of N pixels", "cannot decode: ..."). `max_pixels=None` disables our limit (Pillow's
    decompression-bomb limit, `2 * Image.MAX_IMAGE_PIXELS`, still applies).
    """
    path = Path(path)
    try:
        size = path.stat().st_size
        if not path.is_file():
            raise ImageError("not a file", path)
    except FileNotFoundError:
        raise ImageError("no such file", path) from None
    except OSError as exc:
        raise ImageError(f"cannot read: {exc.strerror or exc}", path) from None
    if size == 0:
        raise ImageError("empty file", path)

    try:
        with warnings.catch_warnings():
            # Our own limit decides; Pillow's warning would only repeat it.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(path)  # lazy: reads the header only
    except Image.DecompressionBombError as exc:
        match = re.search(r"\((\d+) pixels\)", str(exc))
        claimed = f"{int(match.group(1))} pixels" if match else "its size"
        limit = max_pixels if max_pixels is not None else "Pillow's"
        raise ImageError(f"image of {claimed} exceeds the limit of {limit} pixels{RAISE_IT}",
                         path) from None
    except UnidentifiedImageError:
        raise ImageError(_not_an_image_reason(path), path) from None
    except OSError as exc:
        raise ImageError(f"cannot read: {exc.strerror or exc}", path) from None
    except Exception as exc:  # a malformed header can make a plugin raise anything
        raise ImageError(f"cannot decode: {_describe(exc)}", path) from None

    with image:
        width, height = image.size
        if width <= 0 or height <= 0:
            raise ImageError(f"image of {width} x {height} pixels is empty", path)
        if max_pixels is not None and width * height > max_pixels:
            raise ImageError(f"image of {width} x {height} pixels exceeds the limit of "
                             f"{max_pixels} pixels{RAISE_IT}", path)
        if image.format == "JPEG" and _jpeg_too_short(path, size):
            raise ImageError(f"truncated image (its data cannot hold the {width} x {height} "
                             "pixels its header declares)", path)
        try:
            image.load()  # full decode of the first frame: truncation shows up here
            return _to_rgb(image)
        except ImageError as exc:
            raise ImageError(str(exc), path) from None
        except OSError as exc:
            message = str(exc)
            if "truncated" in message or "broken data stream" in message:
                raise ImageError("truncated image", path) from None
            raise ImageError(f"cannot decode: {_describe(exc)}", path) from None
        except MemoryError:
            raise
        except Exception as exc:  # corrupt data: Pillow's decoders raise many types
            raise ImageError(f"cannot decode: {_describe(exc)}", path) from None


_HUFFMAN_DCT_SOF = (0xC0, 0xC1, 0xC2)  # baseline, extended, progressive


def _jpeg_too_short(path: Path, file_size: int) -> bool:
    """True when the bytes after the first scan header are fewer bits than the frame has
    8 x 8 blocks (Huffman-coded DCT JPEGs only: every block codes its DC term in >= 1 bit).
    Reads only the segments before the first scan."""
    try:
        with open(path, "rb") as fh:
            if fh.read(2) != b"\xff\xd8":
                return False
            frame = None
            while True:
                head = fh.read(4)
                if len(head) < 4 or head[0] != 0xFF:
                    return False  # malformed: left to the decoder
                marker, length = head[1], int.from_bytes(head[2:4], "big")
                body = fh.read(max(0, length - 2))
                if marker in _HUFFMAN_DCT_SOF:
                    frame = body
                elif 0xC3 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
                    return False  # lossless or arithmetic coding: no such bound
                elif marker == 0xDA:
                    break
            if frame is None or len(frame) < 6:
                return False
            coded_bytes = file_size - fh.tell()
    except OSError:
        return False
    height, width = int.from_bytes(frame[1:3], "big"), int.from_bytes(frame[3:5], "big")
    n = frame[5]
    comps = [(frame[6 + 3 * i + 1] >> 4, frame[6 + 3 * i + 1] & 15) for i in range(n)
             if len(frame) >= 6 + 3 * i + 3]
    if height == 0 or not comps or min(min(c) for c in comps) == 0:
        return False  # height given later (DNL) or bad sampling: left to the decoder
    hmax, vmax = max(h for h, _ in comps), max(v for _, v in comps)
    blocks = sum(_ceil(_ceil(width * h, hmax), 8) * _ceil(_ceil(height * v, vmax), 8)
                 for h, v in comps)
    return coded_bytes * 8 < blocks


def _ceil(a: int, b: int) -> int:
    return -(-a // b)


def _to_rgb(image: Image.Image) -> np.ndarray:
    """Decoded Pillow image -> contiguous (H, W, 3) uint8 array."""
    mode = image.mode
    if mode in _SIXTEEN_BIT_MODES or mode == "I":
        values = np.asarray(image)
        if mode == "I":
            values = np.clip(values, 0, 65535)
        gray = (values.astype(np.uint32) >> 8).astype(np.uint8)
        return np.ascontiguousarray(np.repeat(gray[:, :, None], 3, axis=2))
    if mode == "F":
        raise ImageError("cannot decode: floating-point images are not supported")
    if mode != "RGB":
        with warnings.catch_warnings():
            # "Palette images with Transparency expressed in bytes...": alpha is dropped
            # on purpose (module policy), as in the seed.
            warnings.simplefilter("ignore", UserWarning)
            image = image.convert("RGB")
    array = np.array(image, dtype=np.uint8)  # a copy: writable and contiguous
    if array.ndim != 3 or array.shape[2] != 3:
        raise ImageError(f"cannot decode: unexpected pixel layout {array.shape} for mode {mode}")
    return array


def _not_an_image_reason(path: Path) -> str:
    """Why Pillow did not recognise the file, from its first bytes."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(512)
    except OSError:
        return "not an image (unknown format)"
    stripped = head.lstrip()
    if stripped[:1] == b"<" or _looks_like_text(head):
        return "not an image (looks like HTML/text)"
    return "not an image (unknown format)"


def _looks_like_text(head: bytes) -> bool:
    if not head or b"\0" in head:
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 4:  # not just a character cut at the 512-byte boundary
            return False
    return True


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
