"""`raid serve`: the detector as an HTTP service with a web page (`raid.serve.service.serve`)."""

from __future__ import annotations

import argparse
import os

from raid.primitives.errors import RaidError
from raid.primitives.images import DEFAULT_MAX_PIXELS  # light: numpy and Pillow only

NAME = "serve"
HELP = ("serve a detector bundle over HTTP (LitServe): POST /v1/detect, a web page at /, "
        "dynamic batching of concurrent requests")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, metavar="BUNDLE",
                   help="detector bundle folder (model file + bundle.json naming the AIM files)")
    p.add_argument("--host", default="127.0.0.1", choices=["127.0.0.1", "0.0.0.0", "::"],
                   help="address to listen on (0.0.0.0 / :: expose the service to the network)")
    p.add_argument("--port", type=int, default=8000)
    g = p.add_argument_group("workers and batching")
    g.add_argument("--accelerator", choices=["auto", "cpu", "gpu", "cuda", "mps"],
                   default="auto")
    g.add_argument("--devices", default="auto", help="devices to use (a number or auto)")
    g.add_argument("--workers-per-device", type=int, default=1,
                   help="inference worker processes per device (each loads the model)")
    g.add_argument("--max-batch-size", type=int, default=8,
                   help="requests scored together in one pass (1 disables batching)")
    g.add_argument("--batch-timeout", type=float, default=0.01,
                   help="seconds a worker waits for more requests to fill a batch")
    g.add_argument("--threads", type=int, default=0,
                   help="torch CPU threads per worker (0: the cores, less one for the HTTP "
                        "process, divided among the workers)")
    g.add_argument("--timeout", type=float, default=30.0,
                   help="seconds a request may wait in the queue before a 504")
    g = p.add_argument_group("limits and access")
    g.add_argument("--max-upload-mb", type=float, default=20.0,
                   help="largest request body accepted; larger ones are refused while "
                        "being read (413)")
    g.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS,
                   help="refuse images with more pixels than this, from their header (413)")
    g.add_argument("--max-files", type=int, default=64,
                   help="most images in one /v1/detect/batch request")
    g.add_argument("--api-key", default=None,
                   help="require this key (X-API-Key header or Authorization: Bearer) on "
                        "/v1/*; default: the RAID_API_KEY environment variable, if set")


def run(args: argparse.Namespace) -> int:
    from raid.serve.app import ServeOptions
    from raid.serve.service import serve

    if not os.path.isdir(args.model):
        raise RaidError("no such bundle folder", args.model)
    if args.devices != "auto" and not args.devices.isdigit():
        raise RaidError(f"--devices must be a number or auto, not {args.devices!r}")
    devices = args.devices if args.devices == "auto" else int(args.devices)
    accelerator = "cuda" if args.accelerator == "gpu" else args.accelerator
    options = ServeOptions(
        bundle=args.model, host=args.host, port=args.port, accelerator=accelerator,
        devices=devices, workers_per_device=args.workers_per_device,
        max_batch_size=args.max_batch_size, batch_timeout=args.batch_timeout,
        timeout=args.timeout, threads=args.threads, max_upload_mb=args.max_upload_mb, max_pixels=args.max_pixels,
        max_files=args.max_files, api_key=args.api_key or os.environ.get("RAID_API_KEY") or None)
    serve(options, log_level="info" if getattr(args, "verbose", False) else "warning")
    return 0
