"""Ctrl-C in the long-running commands (issue 11 item 3), as a terminal sends it: SIGINT to
the command's whole process group mid-run. Each must exit 130 with the line
"interrupted" and no traceback, leave no partial output (what was committed stays, for
the rerun), and a rerun must complete the work."""

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from helpers import aim_args
from raid.primitives.synthetic import write_images
from raid.store.store import FeatureStore
from raid.svm.detector import RaidDetector

pytestmark = pytest.mark.slow
CPU = ["--accelerator", "cpu", "--num-workers", "0", "--batch-size", "2"]


class Command:
    """`raid ARGV` in its own process group, its stderr collected as it comes."""

    def __init__(self, argv: list[str], cwd: Path):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "raid.cli", *argv], cwd=cwd, text=True,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"})
        self.err: list[str] = []
        self.out = ""
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stderr:
            self.err.append(line)

    def wait_for(self, ready: Callable[[], bool], timeout: float = 300) -> None:
        end = time.monotonic() + timeout
        while not ready():
            assert self.proc.poll() is None, f"ended before it was interrupted:\n{self.stderr}"
            assert time.monotonic() < end, f"not ready in {timeout} s:\n{self.stderr}"
            time.sleep(0.1)

    def interrupt(self) -> int:
        os.killpg(self.proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
        return self.finish()

    def finish(self, timeout: float = 600) -> int:
        self.out = self.proc.stdout.read()
        code = self.proc.wait(timeout=timeout)
        self._reader.join(timeout=10)
        return code

    @property
    def stderr(self) -> str:
        return "".join(self.err)


def assert_interrupted(cmd: Command) -> None:
    code = cmd.interrupt()
    assert code == 130, cmd.stderr
    assert cmd.err and "interrupted" in cmd.err[-1], cmd.stderr
    assert "Traceback" not in cmd.stderr, cmd.stderr


def shards(folder: Path) -> Callable[[], bool]:
    """Ready once a shard under `folder` holds a committed batch (work to keep)."""
    import h5py

    def committed() -> bool:
        for path in folder.rglob("*.parts/*.h5"):
            try:
                with h5py.File(path, "r", swmr=True, libver="latest") as h5:
                    if int(h5["committed"][0]) > 0:
                        return True
            except (OSError, KeyError):  # being created
                continue
        return False

    return committed


def save_detector(path: Path, dim: int = 32) -> Path:
    rng = np.random.default_rng(3)
    X, y = rng.normal(size=(40, dim)), np.repeat([0, 1], 20)
    X[y == 1] += 0.3
    RaidDetector(backend="sklearn").fit(X, y).save(path)
    return path


N_DETECT = 1500  # tiny images, one per batch: seconds of scoring even on a fast CPU


def test_detect(tiny_aim, tmp_path):
    write_images(tmp_path / "imgs", {f"p{i:04d}.png": (64, 64) for i in range(N_DETECT)})
    model = save_detector(tmp_path / "m.safetensors")
    argv = ["detect", str(model), "imgs", "--out", "d.csv", *aim_args(tiny_aim), *CPU,
            "--batch-size", "1"]
    cmd = Command(argv, tmp_path)
    cmd.wait_for(lambda: f"scoring {N_DETECT} image(s)" in cmd.stderr)  # batches begin
    assert_interrupted(cmd)
    assert not (tmp_path / "d.csv").exists()
    rerun = Command(argv, tmp_path)
    assert rerun.finish() == 0, rerun.stderr
    assert (tmp_path / "d.csv").read_text().count("\n") == N_DETECT + 1
    # stdout: the table (header, rows, summary) and the file written; progress on stderr
    assert len(rerun.out.splitlines()) == N_DETECT + 3 and "scoring" not in rerun.out
    assert f"scoring {N_DETECT} image(s)" in rerun.stderr


@pytest.fixture(scope="module")
def vae(tmp_path_factory) -> Path:
    from raid.models.autoencoders import tiny_autoencoder_kl

    folder = tmp_path_factory.mktemp("vae") / "tinyvae"
    tiny_autoencoder_kl(seed=0).save_pretrained(folder, safe_serialization=True)
    return folder


N_PHOTOS = 160  # photos for build-train, reconstructed and extracted two per batch


def test_build_train(tiny_aim, vae, tmp_path):
    write_images(tmp_path / "photos", {f"p{i:03d}.png": (64, 64) for i in range(N_PHOTOS)})
    argv = ["build-train", "photos", "--vae", str(vae), "--out", "train.h5",
            *aim_args(tiny_aim), *CPU]
    cmd = Command(argv, tmp_path)
    cmd.wait_for(shards(tmp_path))  # a batch is committed
    assert_interrupted(cmd)
    assert not (tmp_path / "train.h5").exists()  # no partial store; shards stay
    assert any((tmp_path / "train.h5.parts").glob("*.h5"))
    rerun = Command(argv, tmp_path)
    assert rerun.finish() == 0, rerun.stderr
    assert "resumed" in rerun.stderr and f"{2 * N_PHOTOS} rows added" not in rerun.out
    with FeatureStore(tmp_path / "train.h5") as fs:
        assert len(fs) == 2 * N_PHOTOS  # each photo and its reconstruction, once
        assert fs.counts() == {"real": {0: N_PHOTOS}, "tinyvae": {1: N_PHOTOS}}


def test_benchmark(tiny_aim, tmp_path):
    for gen in ("gA", "gB"):
        for label in ("0_real", "1_fake"):
            write_images(tmp_path / "bench" / gen / label,
                         {f"{i:03d}.png": (96, 96) for i in range(40)}, seed=len(gen + label))
    (tmp_path / "b.yaml").write_text("name: t\ngenerators: [gA, gB]\n")
    model = save_detector(tmp_path / "m.safetensors")
    argv = ["benchmark", "--config", "b.yaml", "--model", str(model), "--root", "bench",
            "--out", "report", *aim_args(tiny_aim), *CPU]
    cmd = Command(argv, tmp_path)
    cmd.wait_for(shards(tmp_path / "report"))
    assert_interrupted(cmd)
    assert not list((tmp_path / "report").rglob("*.md"))  # no report of half the images
    rerun = Command(argv, tmp_path)
    assert rerun.finish() == 0, rerun.stderr
    assert (tmp_path / "report" / "clean" / "benchmark.md").exists()
    assert "resumed" in rerun.stderr  # the committed batches were kept
    assert "160 extracted" not in rerun.out


def test_demo_talks_from_the_start_and_resumes(tmp_path):
    cmd = Command(["demo", "--out", "demo"], tmp_path)
    cmd.wait_for(lambda: bool(cmd.err))
    # the first words come before torch and Lightning are imported
    assert cmd.err[0].startswith("raid demo: starting"), cmd.stderr
    cmd.wait_for(shards(tmp_path / "demo" / "features"))
    assert_interrupted(cmd)
    assert not (tmp_path / "demo" / "report" / "report.md").exists()
    rerun = Command(["demo", "--out", "demo"], tmp_path)
    assert rerun.finish() == 0, rerun.stderr
    assert (tmp_path / "demo" / "report" / "report.md").exists()
    # the intentional failures are said to be intentional, and why
    assert "on purpose" in rerun.stderr and "Failure on purpose" in rerun.out
    assert "diffusion" in rerun.out and "broken.jpg" in rerun.out
