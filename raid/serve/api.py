"""The LitServe side of `raid serve`: one loaded `DetectorPipeline` per inference worker.

LitServe runs `setup` once in each worker process (the bundle is loaded there, never in the
HTTP process) and, with `max_batch_size > 1`, gathers the requests queued for it (see
`WaitingBatchLoop`) into one `predict` call: one pass of the pipeline over every image of
every request in the batch. A request carries one or more images (the batch endpoint), so
`predict` flattens the requests, scores all images at once and regroups the answers.

The pipeline never raises for a bad image; it reports a reason per image (e.g. a truncated
file), which the HTTP side turns into a 4xx answer for that image.
"""

from __future__ import annotations

import json
import time
from queue import Empty
from typing import Any

import litserve as ls
from litserve.loops.base import _SENTINEL_VALUE, _StopLoopError
from litserve.loops.simple_loops import BatchedLoop
from litserve.utils import LitAPIStatus, LoopResponseType


def model_summary(info: dict[str, Any]) -> dict[str, Any]:
    """The short model description sent with every answer (the full provenance is at
    GET /v1/model): the keys of the bundle's info that identify the model, when present."""
    aim = info.get("aim") or {}
    checkpoints = info.get("checkpoints") or {}
    summary = {"raid_version": info.get("raid_version"), "bundle": info.get("bundle"),
               "aim": aim.get("arch"), "backbone_digest": checkpoints.get("backbone"),
               "model_digest": info.get("model_digest")}
    return {k: v for k, v in summary.items() if v is not None}


def _json_safe(info: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(info, default=str))


def _is_scalar(value: Any) -> bool:
    return isinstance(value, (str, int, float, bool)) or value is None


def prediction_dict(pred: Any) -> dict[str, Any]:
    """One `Prediction` as the JSON object of the API."""
    out: dict[str, Any] = {"filename": pred.key, "p_generated": pred.p_generated,
                           "verdict": pred.verdict, "patch": None}
    if pred.patch is not None:
        top, left, size = pred.patch
        out["patch"] = {"top": int(top), "left": int(left), "size": int(size)}
    if pred.error:
        out["error"] = pred.error
    return out


#: Longest single wait on LitServe's request queue (seconds). A worker that dies during a
#: wait loses the request its pending `get` then receives (the queue's manager hands it to
#: the dead connection), so waits are kept as short as LitServe's own batching polls.
POLL = 0.001


class WaitingBatchLoop(BatchedLoop):
    """LitServe's batched loop with another way of gathering a batch: the requests already
    queued are taken at once (up to `max_batch_size`), and more are waited for at most
    `batch_timeout` from the arrival of the first (0: none; the batch is what queued up
    while the previous one ran). LitServe's own gathering starts its clock before any
    request came, so it waits `batch_timeout` for every batch, and with a timeout of 0 it
    spins. Every request still gets LitServe's start message and queue-timeout check."""

    def get_batch_requests(self, lit_api: ls.LitAPI, request_queue: Any,
                           transport: Any) -> tuple[list, list]:
        payloads: list = []
        timed_out: list = []
        deadline = None
        while len(payloads) + len(timed_out) < lit_api.max_batch_size:
            wait = POLL if deadline is None else min(POLL, deadline - time.monotonic())
            try:
                item = request_queue.get(timeout=wait) if wait > 0 else \
                    request_queue.get_nowait()
            except Empty:
                if deadline is None or time.monotonic() >= deadline:
                    break
                continue
            if item == _SENTINEL_VALUE:
                raise _StopLoopError()
            if deadline is None:
                deadline = time.monotonic() + lit_api.batch_timeout
            queue_id, uid, timestamp, x_enc = item
            self.put_response(transport, queue_id, uid, (), LitAPIStatus.START,
                              LoopResponseType.REGULAR)
            limit = lit_api.request_timeout
            if limit not in (-1, False, None) and time.monotonic() - timestamp > limit:
                timed_out.append((queue_id, uid))
            else:
                payloads.append((queue_id, uid, x_enc))
        return payloads, timed_out


class DetectorAPI(ls.LitAPI):
    """Requests are dicts {"keys": [str, ...], "images": [bytes, ...]} built by the HTTP
    routes (`raid.serve.app`) after the uploads passed their checks, answered with
    {"results": [`prediction_dict`, ...] in request order, "model": summary}; or
    {"info": true}, answered with {"info": the pipeline's provenance}."""

    def __init__(self, bundle: str, max_pixels: int | None, batch_size: int,
                 max_batch_size: int = 8, batch_timeout: float = 0.01, threads: int = 0,
                 api_path: str = "/v1/detect"):
        super().__init__(max_batch_size=max_batch_size, batch_timeout=batch_timeout,
                         api_path=api_path,
                         loop=WaitingBatchLoop() if max_batch_size > 1 else "auto")
        self.bundle = bundle
        self.max_pixels = max_pixels
        self.batch_size = batch_size
        self.threads = threads  # torch CPU threads in this worker (0: torch's default)
        self.pipeline = None
        self.info: dict[str, Any] = {}
        self.summary: dict[str, Any] = {}

    def setup(self, device: str) -> None:
        import signal

        import torch

        from raid.pipelines.pipeline import DetectorPipeline

        # Ctrl+C reaches every process of the terminal's group: the worker leaves it to the
        # main process, which stops the workers itself (no traceback from each worker).
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        if self.threads:
            torch.set_num_threads(self.threads)
        # LitServe names the worker's device ("cpu", "cuda:1"): the pipeline runs there.
        self.pipeline = DetectorPipeline.from_bundle(
            self.bundle, accelerator=device, batch_size=self.batch_size,
            max_pixels=self.max_pixels)
        self.info = _json_safe(self.pipeline.info)
        self.summary = model_summary(self.info)

    def decode_request(self, request: dict, **kwargs: Any) -> dict:
        return request

    def predict(self, x: dict | list[dict], **kwargs: Any) -> list:
        requests = x if isinstance(x, list) else [x]
        images = [img for r in requests for img in r.get("images", ())]
        keys = [k for r in requests for k in r.get("keys", ())]
        preds = [prediction_dict(p) for p in self.pipeline.predict(images, keys=keys)] \
            if images else []
        answers, start = [], 0
        for r in requests:
            if r.get("info"):  # GET /v1/model: what this worker has loaded
                answers.append({"info": self.info})
                continue
            n = len(r["images"])
            answers.append({"results": preds[start:start + n], "model": self.summary})
            start += n
        return answers if isinstance(x, list) else answers[0]

    def encode_response(self, output: dict, **kwargs: Any) -> dict:
        return output
