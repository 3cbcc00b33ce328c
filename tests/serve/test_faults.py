"""Bad input against the running service: each gets a 4xx JSON answer with a one-line
reason, and the next request is served normally."""

from __future__ import annotations

import http.client
import socket
import time

import pytest
from servekit import (MAX_FILES, MAX_UPLOAD_MB, address, bomb_png, call, multipart, options,
                      png, post_file)

from raid.serve.service import running

GOOD = png("good")
LIMIT = int(MAX_UPLOAD_MB * 2**20)


def assert_refused(answer: tuple[int, dict], status: int, *words: str) -> None:
    code, body = answer
    assert code == status, body
    assert set(body) == {"error"}, body
    reason = body["error"]
    assert reason and "\n" not in reason and "Traceback" not in reason
    for word in words:
        assert word in reason, reason


def assert_still_serving(url: str) -> None:
    status, answer = post_file(url, GOOD, "good.png")
    assert status == 200 and answer["p_generated"] is not None, answer
    assert call(url, "GET", "/health")[0] == 200


def raw_post(url: str, headers: dict, body_chunks, timeout: float = 20.0,
             finish: bytes = b"") -> tuple[int, dict]:
    """POST over a plain socket, sending the body piece by piece and tolerating the server
    closing early; then read whatever answer came. `finish` is sent last (if still open)."""
    import json

    sock = socket.create_connection(address(url), timeout=timeout)
    try:
        head = "".join(f"{k}: {v}\r\n" for k, v in {"Host": "test", **headers}.items())
        sock.sendall(f"POST /v1/detect HTTP/1.1\r\n{head}\r\n".encode())
        try:
            for piece in body_chunks:
                sock.sendall(piece)
            if finish:
                sock.sendall(finish)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server refused early and closed: the answer is still there to read
        response = http.client.HTTPResponse(sock)
        response.begin()
        return response.status, json.loads(response.read())
    finally:
        sock.close()


def test_not_an_image(service):
    for data in (b"<html><body>404</body></html>", b"\x00\x01\x02garbage" * 50):
        assert_refused(post_file(service, data, "page.png"), 415, "page.png", "not an image")
        assert_still_serving(service)


def test_truncated_image(service):
    data = png("whole", 200, 200)
    assert_refused(post_file(service, data[: len(data) // 2], "cut.png"), 422, "cut.png")
    assert_still_serving(service)


def test_decompression_bomb_is_refused_from_its_header(service):
    # 2.5 gigapixels (beyond Pillow's own limit) and 4 megapixels (beyond the service's
    # limit only), each claimed in a few hundred bytes
    for (w, h), size in (((50_000, 50_000), "2500000000 pixels"), ((2000, 2000), "2000 x 2000")):
        bomb = bomb_png(w, h)
        assert len(bomb) < 2000
        start = time.perf_counter()
        answer = post_file(service, bomb, "bomb.png")
        assert time.perf_counter() - start < 10
        assert_refused(answer, 413, "bomb.png", size, "exceeds the limit of 2000000 pixels")
        assert_still_serving(service)


def test_upload_over_the_limit_with_a_length(service):
    size = LIMIT + 4096
    answer = raw_post(service, {"Content-Type": "image/png", "Content-Length": str(size)},
                      (b"\0" * 65536 for _ in range(size // 65536 + 1)))
    assert_refused(answer, 413, "exceeds", "1 MB")
    assert_still_serving(service)


def test_upload_over_the_limit_is_refused_while_being_read(service):
    """No length given (chunked): the server must answer once the limit is passed, while
    the client still holds the end of the body back (buffering it all would hang here)."""
    chunk = 64 * 1024
    pieces = (b"%x\r\n" % chunk + b"\0" * chunk + b"\r\n" for _ in range(LIMIT // chunk + 2))
    answer = raw_post(service, {"Content-Type": "application/octet-stream",
                                "Transfer-Encoding": "chunked"}, pieces, timeout=20)
    assert_refused(answer, 413, "exceeds")
    assert_still_serving(service)


def test_empty_body(service):
    raw = {"Content-Type": "image/png"}
    assert_refused(call(service, "POST", "/v1/detect", b"", raw), 400, "empty")
    body, ctype = multipart([("file", "void.png", b"")])
    assert_refused(call(service, "POST", "/v1/detect", body, {"Content-Type": ctype}), 400,
                   "void.png", "empty")
    assert_still_serving(service)


def test_wrong_content_type(service):
    for ctype in ("text/plain", "application/json", "application/x-www-form-urlencoded", None):
        headers = {"Content-Type": ctype} if ctype else {}
        assert_refused(call(service, "POST", "/v1/detect", GOOD, headers), 415,
                       "content type")
        assert_still_serving(service)


def test_malformed_multipart(service):
    cases = [
        (b"--x\r\nno headers end", "multipart/form-data"),  # no boundary parameter
        (multipart([], fields={"note": "hello"})[0],
         "multipart/form-data; boundary=raid-test-boundary"),  # no file part
        (b"garbage without any boundary", "multipart/form-data; boundary=zzz"),
    ]
    for body, ctype in cases:
        code, answer = call(service, "POST", "/v1/detect", body, {"Content-Type": ctype})
        assert_refused((code, answer), 400)
        assert_still_serving(service)


def test_file_counts(service):
    two, ctype = multipart([("file", "a.png", GOOD), ("file", "b.png", GOOD)])
    assert_refused(call(service, "POST", "/v1/detect", two, {"Content-Type": ctype}), 400,
                   "/v1/detect/batch")
    many, ctype = multipart([("files", f"{i}.png", GOOD) for i in range(MAX_FILES + 1)])
    assert_refused(call(service, "POST", "/v1/detect/batch", many, {"Content-Type": ctype}),
                   413, f"more than {MAX_FILES} files")
    assert_still_serving(service)


def test_unknown_routes_answer_json(service):
    assert_refused(call(service, "GET", "/v2/nothing"), 404)
    assert_refused(call(service, "GET", "/v1/detect"), 405)
    assert_still_serving(service)


@pytest.fixture(scope="module")
def keyed(bundle) -> str:
    with running(options(bundle, api_key="s3cret-key", max_batch_size=1)) as url:
        yield url


def test_api_key(keyed):
    assert_refused(post_file(keyed, GOOD), 401, "missing API key")
    assert_refused(post_file(keyed, GOOD, headers={"X-API-Key": "wrong"}), 401, "wrong API key")
    assert_refused(call(keyed, "GET", "/v1/model"), 401)
    assert_refused(post_file(keyed, GOOD, headers={"Authorization": "Bearer nope"}), 401)
    for headers in ({"X-API-Key": "s3cret-key"}, {"Authorization": "Bearer s3cret-key"}):
        status, answer = post_file(keyed, GOOD, headers=headers)
        assert status == 200 and answer["p_generated"] is not None, answer
    status, answer = call(keyed, "GET", "/v1/model", headers={"X-API-Key": "s3cret-key"})
    assert status == 200 and answer["service"]["api_key_required"] is True
    assert "s3cret-key" not in str(answer)
    assert call(keyed, "GET", "/health")[0] == 200  # health stays open for load balancers
    assert call(keyed, "GET", "/")[0] == 200  # the page itself asks for the key


def test_client_gone_mid_upload(service):
    for ctype in ("image/png", "multipart/form-data; boundary=raid-test-boundary"):
        sock = socket.create_connection(address(service), timeout=10)
        sock.sendall(f"POST /v1/detect HTTP/1.1\r\nHost: test\r\nContent-Type: {ctype}\r\n"
                     "Content-Length: 500000\r\n\r\n".encode() + GOOD[:1000])
        sock.close()
    assert_still_serving(service)
