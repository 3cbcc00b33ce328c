"""The demo's own material: synthetic "photos" and a benchmark-shaped tree of a few
"generators" whose fakes come from simple, different procedures (one with nested subsets,
one listed but missing), a detect folder with one unreadable file, a tiny random-weight AIM
(official two-file layout) and a tiny random AutoencoderKL (diffusers `save_pretrained`).

Everything is written by the demo itself (nothing is read from a checkout), once: a rerun
into the same folder keeps what is there, and every image is seeded by its name anyway.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable

import numpy as np

from raid.pipelines.demo_config import DemoPlan
from raid.primitives.fileio import write_bytes, write_text
from raid.primitives.synthetic import fake_image, photo, rng_for, write_image

TINY_AIM_YAML = """\
# A tiny AIM-shaped model for the demo (random weights): 16 tokens of width 32.
width: 32
depth: 3
heads: 2
probe_layers: [0, 1]
patch_size: 14
image_size: 56
"""

#: The synthetic benchmark: generator folder -> (fake procedure, subsets or None).
SYNTHETIC_GENERATORS: dict[str, tuple[str, tuple[str, ...] | None]] = {
    "upsampler": ("upsample", None),
    "smoother": ("blur", None),
    "gan": ("checkerboard", ("faces", "scenes")),
}
MISSING_GENERATOR = "diffusion"  # listed in the demo's benchmark config, no folder
N_TRAIN, N_PER_CLASS, N_PER_SUBSET_CLASS = 40, 6, 4
BROKEN_FILE = "broken.jpg"  # in the detect folder: an HTML page, to show a refused file
#: The demo's two failures on purpose, and why (said when they happen and in the summary).
INTENTIONAL = {
    "missing": f"generator {MISSING_GENERATOR!r} is listed in the benchmark config but has no "
               "folder: the report shows how a missing generator is named and "
               "left out of the mean",
    "broken": f"{BROKEN_FILE} is an HTML page named .jpg: `raid detect` lists it "
              "as unreadable with the reason and scores the other images",
}
log = logging.getLogger(__name__)


def _write_once(target: Path, make: Callable[[], np.ndarray]) -> None:
    if not target.exists():
        write_image(target, make())


def _size(rng: np.random.Generator) -> tuple[int, int]:
    # A few sizes only: reconstruction batches images of one size together.
    h, w = rng.choice((64, 80, 96), size=2)
    return int(h), int(w)


def _photo(rng: np.random.Generator) -> np.ndarray:
    return photo(rng, *_size(rng))


def _fake(procedure: str, rng: np.random.Generator) -> np.ndarray:
    return fake_image(procedure, rng, *_size(rng))


def make_synthetic_data(data: Path) -> dict[str, Path]:
    """Training photos, the benchmark tree, its config and a detect folder under `data`."""
    real = data / "real"
    for i in range(N_TRAIN):
        _write_once(real / f"photo_{i:03d}.png", lambda: _photo(rng_for("train", i)))
    root = data / "benchmark"
    for gen, (procedure, subsets) in SYNTHETIC_GENERATORS.items():
        for sub in subsets or (None,):
            folder = root / gen / sub if sub else root / gen
            n = N_PER_SUBSET_CLASS if sub else N_PER_CLASS
            for i in range(n):
                _write_once(folder / "0_real" / f"{i:03d}.png",
                            lambda: _photo(rng_for(gen, sub, "real", i)))
                _write_once(folder / "1_fake" / f"{i:03d}.png",
                            lambda: _fake(procedure, rng_for(gen, sub, "fake", i)))
    detect = data / "detect"
    for i in range(3):
        _write_once(detect / f"real_{i}.png", lambda: _photo(rng_for("detect", "real", i)))
        _write_once(detect / f"fake_{i}.png",
                    lambda: _fake("upsample", rng_for("detect", "fake", i)))
    broken = detect / BROKEN_FILE
    if not broken.exists():  # an unreadable file, to show how detect reports one
        write_bytes(broken, b"<html><body>404 Not Found</body></html>\n")
    config = data / "benchmark.yaml"
    lines = ["# The demo's synthetic benchmark (smoke test; numbers mean nothing).",
             "name: RAID demo (synthetic)", "generators:"]
    lines += [f"  - {{folder: {g}, name: {g}}}" for g in SYNTHETIC_GENERATORS]
    lines.append(f"  - {{folder: {MISSING_GENERATOR}, name: {MISSING_GENERATOR}}}  # no folder")
    write_text(config, "\n".join(lines) + "\n")
    return {"real": real, "root": root, "config": config, "detect": detect}


def make_smoke_models(models: Path) -> dict[str, Any]:
    """A tiny random AIM (config + official two-file checkpoint) and a tiny random
    AutoencoderKL folder; kept when a previous run made them."""
    from raid.models.aim import load_config, random_aim, save_official_checkpoint
    from raid.models.autoencoders import tiny_autoencoder_kl

    arch, backbone, head = models / "aim-tiny.yaml", models / "aim-tiny_backbone.pth", \
        models / "aim-tiny_head.pth"
    if not arch.exists():
        write_text(arch, TINY_AIM_YAML)
    if not (backbone.exists() and head.exists()):
        save_official_checkpoint(random_aim(load_config(arch), seed=0), backbone, head)
    vae = models / "vae-tiny"
    if not (vae / "config.json").exists():
        # save_pretrained writes several files: build them in a temporary folder, then
        # rename it into place, so an interrupted run never leaves half a model
        tmp = Path(tempfile.mkdtemp(prefix=".vae-tiny.", dir=models))
        try:
            tiny_autoencoder_kl(seed=0).save_pretrained(tmp, safe_serialization=True)
            shutil.rmtree(vae, ignore_errors=True)
            os.replace(tmp, vae)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return {"arch": str(arch), "backbone": str(backbone), "head": str(head), "probe": "best",
            "vae": vae}


def synthetic_plan(out: str | os.PathLike) -> DemoPlan:
    """Make (or find) the demo's own images and smoke models under `out`."""
    out = Path(out)
    log.info("making (or reusing) synthetic photos, a benchmark tree and tiny random-weight "
             "AIM and autoencoder models under %s", out)
    data = make_synthetic_data(out / "data")
    models = make_smoke_models(out / "models")
    vae = models.pop("vae")
    return DemoPlan(out, models, [vae], data["real"], data["config"], data["root"],
                    ["jpeg=75"], [data["detect"]],
                    run={"batch_size": 32, "num_workers": 0, "accelerator": "cpu",
                         "devices": 1, "seed": 0},
                    fit={"backend": "sklearn"}, save_reconstructions=True, synthetic=True)
