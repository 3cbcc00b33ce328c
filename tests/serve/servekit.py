"""Helpers of the service tests: request bodies (good and bad) and one-shot requests."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from helpers import bomb_png  # noqa: F401  (re-exported for the service tests)

from raid.primitives.synthetic import encode, photo, rng_for
from raid.serve.app import ServeOptions
from raid.serve.client import _connection, request

#: The limits of the shared test service (small, so the refusals are cheap to provoke).
MAX_UPLOAD_MB = 1.0
MAX_PIXELS = 2_000_000
MAX_FILES = 6


def options(bundle: Path, **changes) -> ServeOptions:
    base = dict(bundle=str(bundle), port=0, accelerator="cpu", max_upload_mb=MAX_UPLOAD_MB,
                max_pixels=MAX_PIXELS, max_files=MAX_FILES, max_batch_size=4,
                batch_timeout=0.005)
    return ServeOptions(**{**base, **changes})


def png(seed: str, h: int = 96, w: int = 112) -> bytes:
    return encode(photo(rng_for("serve-tests", seed), h, w), ".png")


def jpeg(seed: str, h: int = 120, w: int = 90) -> bytes:
    return encode(photo(rng_for("serve-tests", seed), h, w), ".jpg")


def multipart(files: list[tuple[str, str | None, bytes]], boundary: str = "raid-test-boundary",
              fields: dict[str, str] | None = None) -> tuple[bytes, str]:
    """A multipart/form-data body of file parts (field, filename or None, data)."""
    out = bytearray()
    for name, value in (fields or {}).items():
        out += (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n"
                f"{value}\r\n").encode()
    for field, filename, data in files:
        disposition = f'form-data; name="{field}"'
        if filename is not None:
            disposition += f'; filename="{filename}"'
        out += (f"--{boundary}\r\nContent-Disposition: {disposition}\r\n"
                "Content-Type: application/octet-stream\r\n\r\n").encode()
        out += data + b"\r\n"
    out += f"--{boundary}--\r\n".encode()
    return bytes(out), f"multipart/form-data; boundary={boundary}"


def call(url: str, method: str, path: str, body: bytes | None = None,
         headers: dict | None = None, timeout: float = 60.0) -> tuple[int, dict]:
    conn = _connection(url, timeout)
    try:
        return request(conn, method, path, body, headers)
    finally:
        conn.close()


def post_file(url: str, data: bytes, filename: str = "x.png", path: str = "/v1/detect",
              headers: dict | None = None) -> tuple[int, dict]:
    body, ctype = multipart([("file", filename, data)])
    return call(url, "POST", path, body, {"Content-Type": ctype, **(headers or {})})


def address(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname, parts.port
