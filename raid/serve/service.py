"""Starting and stopping the service: `serve` (blocking, what `raid serve` runs) and
`running` (a context manager: the service in this process on a loopback port, for tests and
embedding; uvicorn in a thread, LitServe's inference workers in child processes).
"""

from __future__ import annotations

import http.client
import logging
import os
import signal
import socket
import threading
import time
from contextlib import contextmanager
from typing import Iterator

from raid.primitives.errors import RaidError
from raid.serve.app import ServeOptions, build_server

log = logging.getLogger(__name__)


def health(url: str, timeout: float = 5.0) -> int:
    """HTTP status of GET /health (0 when nothing answers)."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    conn = http.client.HTTPConnection(host.strip("[]"), int(port), timeout=timeout)
    try:
        conn.request("GET", "/health")
        return conn.getresponse().status
    except (OSError, http.client.HTTPException):  # not listening yet, or gone
        return 0
    finally:
        conn.close()


def _url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


@contextmanager
def running(options: ServeOptions, startup_timeout: float = 180.0) -> Iterator[str]:
    """The service on `options.host:options.port` (port 0: a free one) until the block
    ends; yields its base URL once /health answers 200. Raises RaidError when the workers
    cannot load the bundle or do not come up within `startup_timeout` seconds."""
    import uvicorn
    from litserve.utils import wrap_litserve_start

    server = build_server(options)
    family = socket.AF_INET6 if ":" in options.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((options.host, int(options.port)))
    url = _url(options.host, sock.getsockname()[1])
    try:
        with wrap_litserve_start(server):
            config = uvicorn.Config(server.app, log_level="warning", access_log=False,
                                    lifespan="on")
            http_server = uvicorn.Server(config)
            thread = threading.Thread(target=http_server.run, kwargs={"sockets": [sock]},
                                      name="raid-serve-http", daemon=True)
            thread.start()
            try:
                _wait_ready(url, server.inference_workers, startup_timeout, options.bundle)
                yield url
            finally:
                http_server.should_exit = True
                thread.join(timeout=30)
    finally:
        sock.close()


def _wait_ready(url: str, workers: list, timeout: float, bundle: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if health(url, timeout=2.0) == 200:
            return
        if workers and not any(w.is_alive() for w in workers):
            raise RaidError("the inference workers could not load the bundle (see the log "
                            "above)", bundle)
        time.sleep(0.1)
    raise RaidError(f"the service did not become ready within {timeout:g} s", bundle)


def serve(options: ServeOptions, log_level: str = "warning") -> None:
    """Run the service until Ctrl+C or SIGTERM (both shut it down gracefully)."""
    if not 1024 <= int(options.port) <= 65535:
        raise RaidError(f"port must be from 1024 to 65535 (LitServe's range), not {options.port}")
    server = build_server(options)
    main_pid = os.getpid()

    def stop(signum, frame):  # SIGTERM: the same graceful shutdown as Ctrl+C
        if os.getpid() != main_pid:  # an HTTP process forked by LitServe, already drained
            raise SystemExit(0)
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    url = _url(options.host, int(options.port))
    log.warning("raid serve: %s/ (web page), POST %s/v1/detect, %s/openapi.json (API); "
                "loading the model in %s worker(s)...", url, url, url,
                options.workers_per_device)
    try:
        server.run(host=options.host, port=int(options.port), generate_client_file=False,
                   log_level=log_level, access_log=log_level in ("info", "debug"))
    except RuntimeError as exc:  # LitServe: "One or more workers failed to start"
        raise RaidError(f"the service could not start: {exc}", options.bundle) from None
