"""Hostile paths and sizes through whole commands (issue 13, items 7 and 9): FIFOs named
like images, symlinked input folders, file names that are not UTF-8, and an image that runs
out of memory in `raid reconstruct`. Commands run in subprocesses, with real stdout (strict
UTF-8) and a timeout, since the failures were hangs, crashes while printing and a killed run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from helpers import aim_args
from raid.models.autoencoders import tiny_autoencoder_kl
from raid.primitives.synthetic import write_images
from raid.store.store import FeatureStore

RUN = ["--accelerator", "cpu", "--num-workers", "0", "--devices", "1"]
PHOTOS = {"a.jpg": (64, 64), "sub/b.png": (48, 56)}
RAW = b"caf\xe9.png"  # Latin-1, not UTF-8


@pytest.fixture(scope="module")
def vae(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("vae") / "vae"
    tiny_autoencoder_kl(1, num_blocks=4).save_pretrained(path)
    return path


def raid(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """`python -m raid.cli ARGS` with stdout as strict UTF-8, as on most terminals."""
    env = dict(os.environ, PYTHONIOENCODING="utf-8:strict", OMP_NUM_THREADS="1")
    try:
        return subprocess.run([sys.executable, "-m", "raid.cli", *args], capture_output=True,
                              text=True, errors="replace", env=env, timeout=timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"raid {args[0]} did not finish within {timeout} s (hung)")


def test_fifo_named_jpg_is_skipped_not_waited_for(tmp_path: Path, vae: Path, tiny_aim):
    """Before: `raid reconstruct` and `raid build-train` blocked forever opening the FIFO."""
    src = tmp_path / "in"
    write_images(src, PHOTOS)
    os.mkfifo(src / "sub" / "pipe.jpg")
    r = raid("reconstruct", "--vae", str(vae), "--input", str(src),
             "--output", str(tmp_path / "out"), *RUN, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "2 written, 0 already present, 0 failed" in r.stdout
    assert f"skipped {src / 'sub' / 'pipe.jpg'}: a FIFO, not a regular file" in r.stderr
    r = raid("build-train", "--real", str(src), "--vae", str(vae),
             "--out", str(tmp_path / "train.h5"), *aim_args(tiny_aim), *RUN, timeout=180)
    assert r.returncode == 0, r.stderr
    assert "a FIFO, not a regular file" in r.stderr
    with FeatureStore(tmp_path / "train.h5") as fs:
        assert len(fs) == 4 and "sub/pipe.jpg" not in fs.keys()


def test_symlinked_input_folder_is_followed(tmp_path: Path, vae: Path):
    """Before: the linked folder's images were left out without a word."""
    src, elsewhere = tmp_path / "in", tmp_path / "elsewhere"
    write_images(src, PHOTOS)
    write_images(elsewhere, {"c.jpg": (40, 40)})
    (src / "linked").symlink_to(elsewhere, target_is_directory=True)
    (src / "sub" / "up").symlink_to("..", target_is_directory=True)  # a loop
    r = raid("reconstruct", "--vae", str(vae), "--input", str(src),
             "--output", str(tmp_path / "out"), *RUN, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "3 written" in r.stdout and (tmp_path / "out" / "linked" / "c.png").is_file()
    assert "sub/up: symlinked folder loops back to a folder above it" in r.stderr


def test_non_utf8_file_names_through_reconstruct(tmp_path: Path, vae: Path):
    """Before: UnicodeEncodeError in the seed derivation on every (re)run."""
    src = tmp_path / "in"
    write_images(src, PHOTOS)
    os.link(os.fsencode(src / "a.jpg"), os.fsencode(src) + b"/" + RAW)
    (src / "broken.jpg").write_bytes(b"")
    os.link(os.fsencode(src / "broken.jpg"), os.fsencode(src) + b"/bad\xff.jpg")
    out = tmp_path / "out"
    for attempt in range(2):
        r = raid("reconstruct", "--vae", str(vae), "--input", str(src), "--output", str(out),
                 *RUN, timeout=120)
        assert r.returncode == 1, r.stderr  # finished; the two broken files are named
        assert (f"{3 * (1 - attempt)} written, {3 * attempt} already present, 2 failed"
                in r.stdout)
        assert "failed bad\\xff.jpg: empty file" in r.stdout  # shown readably
    assert os.path.isfile(os.fsencode(out) + b"/caf\xe9.png")
    record = json.loads((out / ".raid-reconstruct-failures.json").read_text("utf-8"))
    assert sorted(record["failed"]) == ["bad\\xff.jpg", "broken.jpg"]


def test_non_utf8_file_names_through_extract(tmp_path: Path, tiny_aim):
    """Before: UnicodeEncodeError in the seed derivation, then in the store."""
    src = tmp_path / "in"
    write_images(src, PHOTOS)
    os.link(os.fsencode(src / "a.jpg"), os.fsencode(src) + b"/" + RAW)
    store = tmp_path / "s.h5"
    r = raid("extract", "--input", str(src), "--out", str(store), *aim_args(tiny_aim), *RUN,
             timeout=180)
    assert r.returncode == 0, r.stderr
    with FeatureStore(store) as fs:
        rows = fs.read()
    by_key = dict(zip(rows.keys, rows.features))
    key = os.fsdecode(RAW)
    assert sorted(by_key) == sorted(["a.jpg", "sub/b.png", key])
    # Same pixels, other key: another seeded patch choice, so both rows are real rows.
    assert np.isfinite(by_key[key]).all()


OOM_CHILD = r'''
import json, resource, sys
from pathlib import Path
import torch
torch.set_num_threads(1)
from raid.pipelines.reconstruction import (FrozenAutoencoder, ReconstructOptions,
                                           reconstruct_folder)

warm, src, out, vae = sys.argv[1:5]
opts = ReconstructOptions(accelerator="cpu", devices=1, num_workers=0, batch_size=2,
                          write_threads=1)
reconstruct_folder(warm, Path(out) / "warm", vae, opts)  # every lazy allocation made
calls = []  # what the autoencoder is given (observed, not changed)
call = FrozenAutoencoder.__call__
def observed(self, images, seeds):
    calls.append([len(seeds), images.shape[-1]])
    return call(self, images, seeds)
FrozenAutoencoder.__call__ = observed
size = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmSize:"))
# 600 MB more address space: plenty for 64-pixel images, far from what one 4000 x 4000
# image needs (a single 16-channel float activation of it is 1 GB).
limit = (size << 10) + (600 << 20)
resource.setrlimit(resource.RLIMIT_AS, (limit, resource.getrlimit(resource.RLIMIT_AS)[1]))
s = reconstruct_folder(src, Path(out) / "run", vae, opts)
print(json.dumps({"written": s.written, "failed": s.failed, "calls": calls}))
'''


@pytest.mark.slow
def test_out_of_memory_fails_one_image_and_the_run_goes_on(tmp_path: Path, vae: Path):
    """Before: the first MemoryError killed the whole run, and every rerun died at it.
    Under an address-space limit (setrlimit) the batch of two huge images runs out of
    memory, is retried one image at a time, each fails alone with its reason, and the
    small images are written."""
    warm, src = tmp_path / "warm", tmp_path / "src"
    write_images(warm, {"w1.png": (64, 64), "w2.png": (64, 64)})
    write_images(src, {"a.png": (64, 64), "b.png": (64, 64)})
    for name in ["huge1.png", "huge2.png"]:
        Image.new("RGB", (4000, 4000), (90, 120, 150)).save(src / name)
    env = dict(os.environ, OMP_NUM_THREADS="1", MALLOC_ARENA_MAX="1")
    r = subprocess.run([sys.executable, "-c", OOM_CHILD, str(warm), str(src),
                        str(tmp_path / "out"), str(vae)],
                       capture_output=True, text=True, env=env, timeout=400)
    assert r.returncode == 0, r.stderr[-3000:]
    got = json.loads(r.stdout.strip().splitlines()[-1])
    assert got["calls"] == [[2, 64], [2, 4000], [1, 4000], [1, 4000]]
    assert got["written"] == 2 and sorted(got["failed"]) == ["huge1.png", "huge2.png"]
    for reason in got["failed"].values():
        assert reason.startswith("out of memory reconstructing 4000 x 4000 pixels")
    assert sorted(p.name for p in (tmp_path / "out" / "run").glob("*.png")) == \
        ["a.png", "b.png"]


class PixelBudget:
    """A max-pixels guard in front of the real autoencoder: a batch of more than `budget`
    pixels raises MemoryError before any work, as an allocator at its limit would."""

    def __init__(self, reconstruct, budget: int):
        self.reconstruct, self.budget, self.calls = reconstruct, budget, []

    def __call__(self, images: torch.Tensor, seeds: list[int]) -> torch.Tensor:
        self.calls.append(len(seeds))
        n, _, h, w = images.shape
        if n * h * w > self.budget:
            raise MemoryError(f"{n * h * w} pixels over the budget of {self.budget}")
        return self.reconstruct(images, seeds)


def test_a_batch_out_of_memory_is_redone_one_image_at_a_time(tmp_path: Path, vae: Path):
    from datamodules.batches import ImageBatches, reconstruct_rows
    from raid.models.autoencoders import load_autoencoder
    from raid.pipelines.reconstruction import FrozenAutoencoder

    write_images(tmp_path, {"a.png": (64, 64), "b.png": (64, 64), "c.png": (64, 64)})
    batch = ImageBatches(tmp_path, ["a.png", "b.png", "c.png"], [[0, 1, 2]])[0]
    real = FrozenAutoencoder(load_autoencoder(vae))
    whole = reconstruct_rows(real, batch, seed=5)
    guarded, failed = PixelBudget(real, 2 * 64 * 64), {}
    alone = reconstruct_rows(guarded, batch, seed=5, failed=failed)
    assert guarded.calls == [3, 1, 1, 1] and failed == {}
    assert [i for i, _ in alone] == [0, 1, 2]
    for (_, x), (_, y) in zip(whole, alone):  # same seeds per image: same noise
        assert (x.int() - y.int()).abs().max() <= 1
    with pytest.raises(MemoryError):  # without a place for failures, the error propagates
        reconstruct_rows(guarded, batch, seed=5)
    tight, failed = PixelBudget(real, 64 * 64 - 1), {}
    assert reconstruct_rows(tight, batch, seed=5, failed=failed) == []
    assert sorted(failed) == [0, 1, 2]
    assert failed[0].startswith("out of memory reconstructing 64 x 64 pixels")


def test_detect_prints_non_utf8_names_and_skips_fifos(tmp_path: Path, tiny_aim):
    """Before: UnicodeEncodeError in the seed derivation, then while printing the table."""
    from raid.cli.main import main
    from raid.store.store import StoreWriter

    photos = tmp_path / "photos"
    write_images(photos, PHOTOS)
    r = raid("extract", "--input", str(photos), "--out", str(tmp_path / "ref.h5"),
             *aim_args(tiny_aim), *RUN, timeout=180)
    assert r.returncode == 0, r.stderr
    with FeatureStore(tmp_path / "ref.h5") as fs:
        dim, provenance = fs.dim, fs.provenance
    rng = np.random.default_rng(0)
    y = np.arange(40) % 2
    with StoreWriter(tmp_path / "train.h5", dim, provenance) as w:
        w.append([f"{i}.jpg" for i in range(40)],
                 (rng.normal(size=(40, dim)) + y[:, None]).astype(np.float32), y, ["g"] * 40)
    bundle = tmp_path / "bundle"
    assert main(["fit", str(tmp_path / "train.h5"), "--bundle", str(bundle),
                 *aim_args(tiny_aim)]) == 0
    os.link(os.fsencode(photos / "a.jpg"), os.fsencode(photos) + b"/" + RAW)
    os.mkfifo(photos / "pipe.jpg")
    r = raid("detect", str(bundle), str(photos), "--out", str(tmp_path / "d.json"),
             "--accelerator", "cpu", timeout=180)
    assert r.returncode == 0, r.stderr
    assert "caf\\xe9.png" in r.stdout and "3 file(s)" in r.stdout
    assert "pipe.jpg: a FIFO, not a regular file" in r.stderr
    doc = json.loads((tmp_path / "d.json").read_text("utf-8"))
    assert sorted(i["path"] for i in doc["images"]) == [
        f"{photos}/{name}" for name in ["a.jpg", "caf\\xe9.png", "sub/b.png"]]
