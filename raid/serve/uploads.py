"""Reading image uploads from an HTTP request: bounded, in memory, checked before decoding.

Why here and not in the framework: Starlette's form parser buffers a whole upload (and may
spool it to a temporary file) before any limit applies. RAID reads the body itself, chunk by
chunk, refusing it as soon as it passes the size limit, and parses multipart bodies with
python-multipart's streaming parser straight into memory: nothing is written to disk.

Accepted bodies: `multipart/form-data` (every part with a file name is an image; the part's
file name is its key) or a raw image (`image/*` or `application/octet-stream`; the key is
the `filename` query parameter or `X-Filename` header, default "image"). The key seeds the
patch choice, as the file name does in `raid detect FILE`.
"""

from __future__ import annotations

import io
import re
import warnings
from dataclasses import dataclass
from typing import AsyncIterator

from PIL import Image, UnidentifiedImageError
from python_multipart.multipart import MultipartParser, parse_options_header

from raid.primitives.errors import RaidError

DEFAULT_KEY = "image"
RAW_TYPES = (b"application/octet-stream",)
MAX_KEY_CHARS = 255


class UploadError(RaidError):
    """A request the service refuses; `status` is the HTTP status (4xx) to answer with."""

    def __init__(self, status: int, message: str, path: object | None = None):
        self.status, self.reason = status, message
        super().__init__(message, path)


@dataclass
class Upload:
    key: str  # the upload's file name: seeds the patch choice
    data: bytes


def key_of(filename: str | None) -> str:
    """The key of an upload: the last component of its file name (browsers and curl send
    just the name; some clients send a path), or "image" when there is none."""
    name = (filename or "").replace("\\", "/").rsplit("/", 1)[-1].strip()
    name = "".join(ch for ch in name if ch.isprintable())[:MAX_KEY_CHARS]
    return name or DEFAULT_KEY


class _Parts:
    """Collects the file parts of a multipart body as python-multipart reports them."""

    def __init__(self, max_files: int):
        self.max_files = max_files
        self.uploads: list[Upload] = []
        self._headers: dict[bytes, bytes] = {}
        self._field = b""
        self._value = b""
        self._data: bytearray | None = None
        self._name: str | None = None

    def callbacks(self) -> dict:
        return {"on_part_begin": self._begin, "on_header_field": self._on_field,
                "on_header_value": self._on_value, "on_header_end": self._header_end,
                "on_headers_finished": self._headers_done, "on_part_data": self._on_data,
                "on_part_end": self._end}

    def _begin(self) -> None:
        self._headers, self._data, self._name = {}, None, None

    def _on_field(self, data: bytes, start: int, end: int) -> None:
        self._field += data[start:end]

    def _on_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def _header_end(self) -> None:
        self._headers[self._field.lower()] = self._value
        self._field, self._value = b"", b""

    def _headers_done(self) -> None:
        _, params = parse_options_header(self._headers.get(b"content-disposition", b""))
        if b"filename" in params:  # a file part; other form fields are ignored
            if len(self.uploads) >= self.max_files:
                raise UploadError(413, f"more than {self.max_files} files in one request")
            self._name = params[b"filename"].decode("utf-8", "replace")
            self._data = bytearray()

    def _on_data(self, data: bytes, start: int, end: int) -> None:
        if self._data is not None:
            self._data += data[start:end]

    def _end(self) -> None:
        if self._data is not None:
            self.uploads.append(Upload(key_of(self._name), bytes(self._data)))
        self._data = None


async def read_uploads(content_type: str | None, content_length: str | None,
                       chunks: AsyncIterator[bytes], raw_name: str | None, max_bytes: int,
                       max_files: int) -> list[Upload]:
    """The images of one request body, read chunk by chunk; `UploadError` on an empty or
    oversized body, a content type that is not an image or multipart, or a malformed
    multipart body. Each upload is then still to be checked by `probe_image`."""
    ctype, params = parse_options_header(content_type or "")
    multipart = ctype == b"multipart/form-data"
    if not (multipart or ctype.startswith(b"image/") or ctype in RAW_TYPES):
        shown = ctype.decode("latin-1") or "none"
        raise UploadError(415, f"unsupported content type {shown}: send multipart/form-data "
                               "or the image itself (image/* or application/octet-stream)")
    limit = f"the upload limit of {max_bytes / 2**20:g} MB"
    if content_length and content_length.isdigit() and int(content_length) > max_bytes:
        raise UploadError(413, f"body of {int(content_length)} bytes exceeds {limit}")
    if multipart:
        boundary = params.get(b"boundary")
        if not boundary:
            raise UploadError(400, "multipart body without a boundary")
        parts = _Parts(max_files)
        parser = MultipartParser(boundary, parts.callbacks())
    raw = bytearray()
    total = 0
    async for chunk in chunks:
        total += len(chunk)
        if total > max_bytes:
            raise UploadError(413, f"body exceeds {limit}")
        if not multipart:
            raw += chunk
            continue
        try:
            parser.write(chunk)
        except UploadError:
            raise
        except Exception as exc:  # python-multipart's parse errors
            raise UploadError(400, f"malformed multipart body: {_first_line(exc)}") from None
    if total == 0:
        raise UploadError(400, "empty body: no image sent")
    if not multipart:
        return [Upload(key_of(raw_name), bytes(raw))]
    try:
        parser.finalize()
    except Exception as exc:
        raise UploadError(400, f"malformed multipart body: {_first_line(exc)}") from None
    if not parts.uploads:
        raise UploadError(400, "no file in the multipart body (send the image as a file part)")
    return parts.uploads


def probe_image(upload: Upload, max_pixels: int | None) -> tuple[int, int]:
    """Width and height from the image header, refusing, before any pixel is decoded, what
    is empty, not an image, or larger than `max_pixels` (a decompression bomb)."""
    if not upload.data:
        raise UploadError(400, "empty file", upload.key)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(upload.data)) as image:  # reads the header only
                width, height = image.size
    except Image.DecompressionBombError as exc:  # beyond even Pillow's own limit
        claimed = re.search(r"\((\d+) pixels\)", str(exc))
        size = f"{claimed.group(1)} pixels" if claimed else "its size"
        raise UploadError(413, f"image of {size} exceeds the limit of {max_pixels} pixels",
                          upload.key) from None
    except UnidentifiedImageError:
        raise UploadError(415, "not an image (unknown format)", upload.key) from None
    except Exception as exc:  # a malformed header can make a plugin raise anything
        raise UploadError(422, f"cannot decode: {_first_line(exc)}", upload.key) from None
    if max_pixels is not None and width * height > max_pixels:
        raise UploadError(413, f"image of {width} x {height} pixels exceeds the limit of "
                               f"{max_pixels} pixels", upload.key)
    return width, height


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
