"""How an inference worker gathers a batch (`WaitingBatchLoop`), on LitServe's own queue
transport: what is queued is taken at once, the wait for more is bounded, a request over
the queue timeout is set apart, and LitServe's stop value ends the loop."""

from __future__ import annotations

import queue
import time

import pytest
from litserve.loops.base import _SENTINEL_VALUE, _StopLoopError
from litserve.transport.process_transport import MPQueueTransport
from litserve.utils import LitAPIStatus

from raid.serve.api import POLL, DetectorAPI, WaitingBatchLoop


def setup(max_batch_size: int, batch_timeout: float, request_timeout: float = 30.0):
    api = DetectorAPI("unused-bundle", None, 8, max_batch_size, batch_timeout)
    api.request_timeout = request_timeout
    loop = WaitingBatchLoop()
    loop._restart_workers = True  # as `raid serve` runs it: a start message per request
    requests, responses = queue.Queue(), queue.Queue()
    return api, loop, requests, responses, MPQueueTransport(None, [responses])


def enqueue(requests: queue.Queue, uid: str, age: float = 0.0) -> None:
    requests.put((0, uid, time.monotonic() - age, {"keys": [uid], "images": [b""]}))


def test_the_batch_is_what_is_queued_up_to_the_maximum():
    api, loop, requests, responses, transport = setup(max_batch_size=3, batch_timeout=0.0)
    for uid in "abcde":
        enqueue(requests, uid)
    batch, late = loop.get_batch_requests(api, requests, transport)
    assert [uid for _, uid, _ in batch] == ["a", "b", "c"] and late == []
    batch, late = loop.get_batch_requests(api, requests, transport)
    assert [uid for _, uid, _ in batch] == ["d", "e"]  # no wait for a third
    started = [responses.get_nowait() for _ in range(5)]
    assert [uid for uid, _ in started] == list("abcde")
    assert all(body[1] == LitAPIStatus.START for _, body in started)


def test_the_wait_for_more_is_bounded_and_counts_from_the_first_request():
    api, loop, requests, responses, transport = setup(max_batch_size=4, batch_timeout=0.2)
    enqueue(requests, "a")
    start = time.monotonic()
    batch, _ = loop.get_batch_requests(api, requests, transport)
    waited = time.monotonic() - start
    assert [uid for _, uid, _ in batch] == ["a"]
    assert 0.15 < waited < 5.0


def test_an_empty_queue_gives_an_empty_batch_after_a_short_wait():
    api, loop, requests, _, transport = setup(max_batch_size=4, batch_timeout=0.5)
    start = time.monotonic()
    assert loop.get_batch_requests(api, requests, transport) == ([], [])
    # waited on the queue (no spinning), and not for batch_timeout: no request came
    assert POLL * 0.9 <= time.monotonic() - start < 0.4


def test_requests_over_the_queue_timeout_are_set_apart():
    api, loop, requests, _, transport = setup(max_batch_size=4, batch_timeout=0.0,
                                              request_timeout=5.0)
    enqueue(requests, "old", age=10.0)
    enqueue(requests, "new")
    batch, late = loop.get_batch_requests(api, requests, transport)
    assert [uid for _, uid, _ in batch] == ["new"] and late == [(0, "old")]


def test_the_stop_value_ends_the_loop():
    api, loop, requests, _, transport = setup(max_batch_size=4, batch_timeout=0.0)
    requests.put(_SENTINEL_VALUE)
    with pytest.raises(_StopLoopError):
        loop.get_batch_requests(api, requests, transport)
