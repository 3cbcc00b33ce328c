"""A minimal client of the service (standard library only) and a bounded load generator.

`detect` sends one image as the raw body (`filename` query parameter = its key).
`load` runs N client threads, each sending M requests over one keep-alive connection,
and records every answer and latency: what the load test and `raid bench serve` measure.
The load generator shares the CPU with the service it measures, so it is kept cheap: the
requests are encoded once, before the clock starts, and sent and read on a plain socket
(HTTP/1.1 with Content-Length, which every answer of the service has).
"""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Sequence
from urllib.parse import quote, urlsplit


@dataclass
class Answer:
    status: int
    body: dict
    seconds: float
    key: str = ""


def _connection(url: str, timeout: float) -> http.client.HTTPConnection:
    parts = urlsplit(url)
    return http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)


def request(conn: http.client.HTTPConnection, method: str, path: str, body: bytes | None = None,
            headers: dict | None = None) -> tuple[int, dict]:
    """One request on an open connection; the JSON answer (or {"text": ...})."""
    conn.request(method, path, body=body, headers=headers or {})
    response = conn.getresponse()
    data = response.read()
    try:
        return response.status, json.loads(data)
    except ValueError:
        return response.status, {"text": data.decode("utf-8", "replace")}


def detect(url: str, data: bytes, filename: str = "image", api_key: str | None = None,
           timeout: float = 60.0) -> Answer:
    """POST one image to /v1/detect as the raw body."""
    conn = _connection(url, timeout)
    headers = {"Content-Type": "application/octet-stream"}
    if api_key:
        headers["X-API-Key"] = api_key
    try:
        start = time.perf_counter()
        status, body = request(conn, "POST", f"/v1/detect?filename={quote(filename)}", data,
                               headers)
        return Answer(status, body, time.perf_counter() - start, filename)
    finally:
        conn.close()


@dataclass
class LoadResult:
    answers: list[Answer] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)  # transport errors (no HTTP answer)
    seconds: float = 0.0

    @property
    def ok(self) -> list[Answer]:
        return [a for a in self.answers if a.status == 200]

    def rate(self) -> float:
        return len(self.ok) / self.seconds if self.seconds else 0.0

    def percentile(self, q: float) -> float:
        values = sorted(a.seconds for a in self.ok)
        if not values:
            return float("nan")
        return values[min(len(values) - 1, int(round(q / 100 * (len(values) - 1))))]


class _Wire:
    """One keep-alive HTTP/1.1 connection for pre-encoded requests: `exchange(raw)` sends
    the request bytes and returns (status, body) of the answer (Content-Length bodies)."""

    def __init__(self, url: str, timeout: float):
        parts = urlsplit(url)
        self.sock = socket.create_connection((parts.hostname, parts.port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = b""

    def exchange(self, raw: bytes) -> tuple[int, bytes]:
        self.sock.sendall(raw)
        while b"\r\n\r\n" not in self.buffer:
            self._fill()
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        lines = head.split(b"\r\n")
        status = int(lines[0].split(b" ", 2)[1])
        length = None
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        if length is None:
            raise http.client.HTTPException("answer without Content-Length")
        while len(self.buffer) < length:
            self._fill()
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        return status, body

    def _fill(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise http.client.RemoteDisconnected("the service closed the connection")
        self.buffer += chunk

    def close(self) -> None:
        self.sock.close()


def _raw_post(url: str, path: str, data: bytes, headers: dict[str, str]) -> bytes:
    host = urlsplit(url).netloc
    lines = [f"POST {path} HTTP/1.1", f"Host: {host}", f"Content-Length: {len(data)}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + data


def load(url: str, images: Sequence[tuple[str, bytes]], clients: int, requests: int,
         timeout: float = 60.0, api_key: str | None = None) -> LoadResult:
    """`clients` threads x `requests` requests each to /v1/detect; client c sends images
    c, c + clients, ... (cycling), so every image is sent and answers can be checked per
    key. Each thread stops at its first transport failure (a lost request is recorded)."""
    result = LoadResult()
    lock = threading.Lock()
    start_gate = threading.Barrier(clients + 1)
    headers = {"Content-Type": "application/octet-stream"}
    if api_key:
        headers["X-API-Key"] = api_key
    encoded = [(key, _raw_post(url, f"/v1/detect?filename={quote(key)}", data, headers))
               for key, data in images]

    def client(c: int) -> None:
        mine: list[Answer] = []
        wire = None
        try:
            try:
                wire = _Wire(url, timeout)
            finally:
                start_gate.wait()  # every client starts together, connected or not
            for i in range(requests):
                key, raw = encoded[(c + i * clients) % len(encoded)]
                t0 = time.perf_counter()
                status, data = wire.exchange(raw)
                seconds = time.perf_counter() - t0
                try:
                    body = json.loads(data)
                except ValueError:
                    body = {"text": data.decode("utf-8", "replace")}
                mine.append(Answer(status, body, seconds, key))
        except (OSError, http.client.HTTPException, ValueError, IndexError) as exc:
            with lock:
                result.failures.append(f"client {c}: {type(exc).__name__}: {exc}")
        finally:
            if wire is not None:
                wire.close()
            with lock:
                result.answers.extend(mine)

    threads = [threading.Thread(target=client, args=(c,), daemon=True) for c in range(clients)]
    for t in threads:
        t.start()
    start_gate.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    result.seconds = time.perf_counter() - t0
    return result
