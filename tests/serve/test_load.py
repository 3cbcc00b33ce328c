"""`raid serve` as a user starts it (a child process on a loopback port) under load:
8 concurrent clients x 50 requests, every answer checked against the Python pipeline, none
lost, healthy afterwards, a killed worker replaced, nothing written to disk, a clean stop
on SIGINT."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
from servekit import call, jpeg, png, post_file

from raid.primitives.synthetic import encode, noise, rng_for
from raid.serve.client import load
from raid.serve.service import health

CLIENTS, REQUESTS = 8, 50


GOOD = png("good")


def spawned_workers(parent: int) -> list[int]:
    """LitServe's inference worker processes under `parent` (started by multiprocessing's
    spawn), from /proc."""
    found = []
    for entry in os.listdir("/proc"):
        try:
            stat = open(f"/proc/{entry}/stat").read().rsplit(")", 1)[1].split()
            cmdline = open(f"/proc/{entry}/cmdline", "rb").read()
        except (OSError, ValueError):
            continue
        if int(stat[1]) == parent and b"spawn_main" in cmdline:
            found.append(int(entry))
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_raid_serve_under_load(bundle, pipeline, tmp_path):
    cwd, tmp = tmp_path / "cwd", tmp_path / "tmp"
    cwd.mkdir()
    tmp.mkdir()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = open(tmp_path / "serve.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "raid.cli", "serve", "--model", str(bundle), "--port", str(port),
         "--accelerator", "cpu", "--max-batch-size", "8", "--max-upload-mb", "3"],
        cwd=cwd, env={**os.environ, "TMPDIR": str(tmp)}, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        while health(url, timeout=2) != 200:
            assert proc.poll() is None, (tmp_path / "serve.log").read_text()
            assert time.monotonic() < deadline, "the service did not start within 180 s"
            time.sleep(0.2)

        images = [(f"p{i}.png", png(f"load{i}", 70 + 9 * i, 150 - 3 * i)) for i in range(12)]
        images += [(f"j{i}.jpg", jpeg(f"load{i}", 120, 60 + 11 * i)) for i in range(12)]
        start = time.monotonic()
        result = load(url, images, clients=CLIENTS, requests=REQUESTS, timeout=60)
        assert time.monotonic() - start < 300
        assert not result.failures, result.failures
        assert len(result.answers) == CLIENTS * REQUESTS  # none lost
        assert all(a.status == 200 for a in result.answers), \
            [a.body for a in result.answers if a.status != 200][:3]
        want = {p.key: p for p in pipeline.predict([d for _, d in images],
                                                   keys=[k for k, _ in images])}
        got = np.array([a.body["p_generated"] for a in result.answers])
        ref = np.array([want[a.key].p_generated for a in result.answers])
        assert np.abs(got - ref).max() <= 1e-6
        for a in result.answers:
            assert a.body["filename"] == a.key
            assert tuple(a.body["patch"].values()) == want[a.key].patch
        assert {a.key for a in result.answers} == {k for k, _ in images}

        assert health(url) == 200
        assert post_file(url, b"not an image", "x.png")[0] == 415
        # a large upload under the limit (frameworks spool such bodies to temporary files)
        big = encode(noise(rng_for("big"), 700, 700), ".png")
        assert 1_000_000 < len(big) < 3 * 2**20
        status, answer = post_file(url, big, "big.png")
        assert status == 200, answer
        assert call(url, "GET", "/v1/model")[0] == 200

        # a worker that dies (killed by the OS, say) is replaced; the service goes on
        (worker,) = spawned_workers(proc.pid)
        os.kill(worker, signal.SIGKILL)
        deadline = time.monotonic() + 120
        while post_file(url, GOOD, "after.png")[0] != 200:
            assert time.monotonic() < deadline, "no worker came back within 120 s"
            assert proc.poll() is None
            time.sleep(0.5)
        assert spawned_workers(proc.pid) != [worker]
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            pytest.fail("raid serve did not stop within 60 s of SIGINT")
        finally:
            log.close()
    assert health(url, timeout=2) == 0  # stopped
    assert list(cwd.iterdir()) == [] and list(tmp.iterdir()) == [], "files were written"
