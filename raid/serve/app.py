"""`raid serve`: the detector behind HTTP, on LitServe (FastAPI + uvicorn + worker processes).

LitServe supplies the serving engine: inference worker processes per device
(`workers_per_device`), dynamic batching of concurrent requests (`max_batch_size`,
`batch_timeout`), request timeouts, `/health` and the OpenAPI schema. RAID adds its routes
on LitServe's FastAPI app: the uploads are read, bounded and checked in the HTTP process
(`raid.serve.uploads`), and only images that passed are queued to the workers through
LitServe's request handler, so a bad upload never reaches the model and never costs a
worker.

Routes (the `/v1` prefix versions the API): `GET /` the web page, `POST /v1/detect` one
image, `POST /v1/detect/batch` several, `GET /v1/model` provenance, `GET /health`
(LitServe's: 200 once the workers are ready). Errors are JSON `{"error": "one line"}`.
"""

from __future__ import annotations

import hmac
import logging
import os
from dataclasses import asdict, dataclass
from importlib import resources
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

import litserve as ls
from litserve.server import RegularRequestHandler

from raid.primitives.errors import RaidError
from raid.primitives.images import DEFAULT_MAX_PIXELS
from raid.serve.api import DetectorAPI
from raid.serve.uploads import Upload, UploadError, probe_image, read_uploads

log = logging.getLogger(__name__)

HOSTS = ("127.0.0.1", "0.0.0.0", "::")  # what LitServe binds to


@dataclass
class ServeOptions:
    bundle: str
    host: str = "127.0.0.1"
    port: int = 8000
    accelerator: str = "auto"
    devices: int | str = "auto"
    workers_per_device: int = 1
    max_batch_size: int = 8
    batch_timeout: float = 0.01  # seconds a worker waits to fill a batch
    max_upload_mb: float = 20.0
    max_pixels: int | None = DEFAULT_MAX_PIXELS
    max_files: int = 64  # images per batch request
    api_key: str | None = None
    timeout: float = 30.0  # seconds a request may wait in the queue
    batch_size: int = 0  # the pipeline's batch size; 0: max_batch_size (at least 8)
    threads: int = 0  # torch CPU threads per worker; 0: the cores left to each worker

    def worker_threads(self) -> int:
        """Torch threads per CPU worker: as given, else the cores divided among the
        workers with one core left to the HTTP process (oversubscribed torch threads slow
        small models down many times)."""
        if self.threads:
            return self.threads
        return max(1, ((os.cpu_count() or 1) - 1) // self.workers_per_device)

    def check(self) -> None:
        if self.host not in HOSTS:
            raise RaidError(f"host must be one of {', '.join(HOSTS)} (LitServe binds only "
                            f"these), not {self.host}")
        if not 0 <= int(self.port) <= 65535:
            raise RaidError(f"port must be from 0 to 65535, not {self.port}")
        if self.threads < 0:
            raise RaidError(f"threads must be 0 (automatic) or more, not {self.threads}")
        for name in ("workers_per_device", "max_batch_size", "max_files"):
            if getattr(self, name) < 1:
                raise RaidError(f"{name} must be at least 1, not {getattr(self, name)}")
        if self.batch_timeout < 0 or self.batch_timeout >= self.timeout:
            raise RaidError(f"batch_timeout must be >= 0 and below the request timeout "
                            f"({self.timeout} s), not {self.batch_timeout}")
        if self.max_upload_mb <= 0:
            raise RaidError(f"max_upload_mb must be positive, not {self.max_upload_mb}")
        if self.max_pixels is not None and self.max_pixels < 1:
            raise RaidError(f"max_pixels must be positive, not {self.max_pixels}")

    @property
    def max_bytes(self) -> int:
        return int(self.max_upload_mb * 2**20)

    def public(self) -> dict[str, Any]:
        """The settings a client may see (never the key)."""
        shown = asdict(self)
        shown.pop("api_key")
        shown["api_key_required"] = bool(self.api_key)
        return shown


class Patch(BaseModel):
    top: int
    left: int
    size: int


class Detection(BaseModel):
    filename: str
    p_generated: float | None
    verdict: str | None
    patch: Patch | None
    model: dict[str, Any] = {}
    error: str | None = None  # batch results only: why this file was not scored
    status: int | None = None  # batch results only: the HTTP status it would have had


class BatchAnswer(BaseModel):
    results: list[Detection]
    model: dict[str, Any]


class ErrorAnswer(BaseModel):
    error: str


_IMAGE_BODY = {"schema": {"type": "string", "format": "binary"}}
_UPLOAD_DOC = {"requestBody": {"required": True, "content": {
    "multipart/form-data": {"schema": {"type": "object", "properties": {
        "file": {"type": "string", "format": "binary"}}}},
    "image/*": _IMAGE_BODY, "application/octet-stream": _IMAGE_BODY}}}
_BATCH_DOC = {"requestBody": {"required": True, "content": {
    "multipart/form-data": {"schema": {"type": "object", "properties": {
        "files": {"type": "array", "items": {"type": "string", "format": "binary"}}}}}}}}
_ERRORS = {code: {"model": ErrorAnswer} for code in (400, 401, 413, 415, 422)}


def page_html() -> str:
    """The self-contained web page (inline CSS and JS, no remote resources)."""
    return resources.files("raid.serve").joinpath("page.html").read_text(encoding="utf-8")


def build_server(options: ServeOptions) -> ls.LitServer:
    """A LitServer with RAID's routes. The bundle is checked here (files present and
    unchanged: one-line RaidError otherwise) and loaded by each worker when it starts."""
    from raid.pipelines.bundle import load_bundle

    options.check()
    load_bundle(options.bundle)
    api = DetectorAPI(options.bundle, options.max_pixels,
                      options.batch_size or max(options.max_batch_size, 8),
                      options.max_batch_size, options.batch_timeout,
                      threads=options.worker_threads())
    server = ls.LitServer(api, accelerator=options.accelerator, devices=options.devices,
                          workers_per_device=options.workers_per_device,
                          timeout=options.timeout, restart_workers=True)
    app = server.app
    # LitServe registers a plain-text "/" and a POST route at the API path; RAID's own
    # routes (bounded uploads, JSON errors, the page) take their places.
    app.router.routes[:] = [r for r in app.router.routes
                            if getattr(r, "path", None) not in ("/", api.api_path)]
    handler = RegularRequestHandler(api, server)
    _add_routes(app, options, handler)
    return server


def _add_routes(app: FastAPI, options: ServeOptions, handler: RegularRequestHandler) -> None:
    async def authorize(request: Request) -> None:  # async: no thread hop per request
        given = request.headers.get("x-api-key")
        bearer = request.headers.get("authorization", "")
        if given is None and bearer.lower().startswith("bearer "):
            given = bearer[7:].strip()
        if given is None:
            raise UploadError(401, "missing API key: send it in the X-API-Key header")
        if not hmac.compare_digest(given.encode(), options.api_key.encode()):
            raise UploadError(401, "wrong API key")

    guarded = [Depends(authorize)] if options.api_key else []

    async def score(request: Request, single: bool) -> tuple[list, dict]:
        try:
            uploads = await read_uploads(
                request.headers.get("content-type"), request.headers.get("content-length"),
                request.stream(),
                request.query_params.get("filename") or request.headers.get("x-filename"),
                options.max_bytes, options.max_files)
        except ClientDisconnect:  # nobody left to answer; keep it out of the error log
            raise UploadError(400, "the client disconnected during the upload") from None
        if single and len(uploads) > 1:
            raise UploadError(400, "one image per request here: send several to "
                                   "/v1/detect/batch")
        results: list[dict | None] = []
        good: list[Upload] = []
        for upload in uploads:
            try:
                probe_image(upload, options.max_pixels)
                results.append(None)
                good.append(upload)
            except UploadError as exc:
                if single:
                    raise
                results.append({"filename": upload.key, "p_generated": None, "verdict": None,
                                "patch": None, "error": exc.reason, "status": exc.status})
        answer = {"results": [], "model": {}}
        if good:
            payload = {"keys": [u.key for u in good], "images": [u.data for u in good]}
            answer = await handler.handle_request(payload, dict)
        scored = iter(answer["results"])
        return [r if r is not None else next(scored) for r in results], answer["model"]

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page() -> HTMLResponse:
        return HTMLResponse(page_html())

    @app.get("/v1/model", dependencies=guarded, responses=_ERRORS)
    async def model() -> dict[str, Any]:
        """The provenance of the model the workers loaded (AIM size, checkpoint digests,
        SVM settings, RAID version) and the service settings."""
        answer = await handler.handle_request({"info": True}, dict)
        return {"model": answer["info"], "service": options.public()}

    @app.post("/v1/detect", dependencies=guarded, response_model=Detection,
              responses=_ERRORS, openapi_extra=_UPLOAD_DOC)
    async def detect(request: Request) -> JSONResponse:
        """One image: multipart (one file part) or the raw image bytes as the body. The
        patch seed is the upload's file name (raw body: `filename` query parameter or
        X-Filename header; default "image")."""
        results, summary = await score(request, single=True)
        result = results[0]
        if result.get("error"):
            raise UploadError(422, result["error"], result["filename"])
        return JSONResponse({**result, "model": summary})

    @app.post("/v1/detect/batch", dependencies=guarded, response_model=BatchAnswer,
              responses=_ERRORS, openapi_extra=_BATCH_DOC)
    async def detect_batch(request: Request) -> JSONResponse:
        """Several images in one multipart request (one file part each, at most
        max_files): one result per file in order; a bad file gets an `error` and a
        `status` in its result while the others are scored."""
        results, summary = await score(request, single=False)
        for r in results:
            if r.get("error") and "status" not in r:
                r["status"] = 422
        return JSONResponse({"results": results, "model": summary})

    _add_error_handlers(app)


def _add_error_handlers(app: FastAPI) -> None:
    def answer(status: int, reason: str) -> JSONResponse:
        return JSONResponse({"error": " ".join(str(reason).split())}, status_code=status)

    @app.exception_handler(UploadError)
    async def upload_error(request: Request, exc: UploadError) -> JSONResponse:
        return answer(exc.status, str(exc))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return answer(exc.status_code, exc.detail)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return answer(422, f"{where}: {first.get('msg', 'invalid request')}")
