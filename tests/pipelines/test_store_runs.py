"""Whole runs against one store, in subprocesses: a concurrent writer, SIGKILLs at random
moments of runs that append to a large store, changed files, other input folders, a NaN
checkpoint, and multi-process runs with fewer images left than processes.

Each reproduces a failure of format 1: a concurrent run lost rows with both runs exiting
0; every run rewrote the store through a full-size copy that a SIGKILL left behind; a
changed file or another folder's file of the same relative path was skipped as "already
present"; a NaN checkpoint gave "12 extracted"; two processes with one image left failed
in Lightning's sampler.
"""

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from helpers import aim_args
from raid.pipelines.featurizer import Featurizer
from raid.primitives.perturb import CLEAN
from raid.store.lock import lock_paths
from raid.store.store import FeatureStore, StoreWriter

ROOT = Path(__file__).resolve().parents[2]
CPU = ["--accelerator", "cpu", "--num-workers", "0"]


def images(folder: Path, n: int, seed: int = 0, start: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    keys = []
    for i in range(start, start + n):
        key = f"g/{['0_real', '1_fake'][i % 2]}/img{i:03d}.png"
        (folder / key).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (48, 56, 3), dtype=np.uint8)).save(folder / key)
        keys.append(key)
    return keys


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "raid.cli.main", *args]


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(cli(*args), cwd=ROOT, capture_output=True, text=True, timeout=300)


def keys_of(store: Path) -> list[str]:
    with FeatureStore(store) as fs:
        return fs.keys()


def test_a_second_extract_into_the_same_store_is_refused_while_the_first_runs(
        tiny_aim, tmp_path):
    keys = images(tmp_path / "in", 2500)  # long enough for a second run to start and meet it
    store = tmp_path / "s.h5"
    args = ["extract", "--input", str(tmp_path / "in"), "--out", str(store),
            *aim_args(tiny_aim), *CPU, "--batch-size", "1"]
    first = subprocess.Popen(cli(*args), cwd=ROOT, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not lock_paths(store)[1].exists() and first.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert first.poll() is None, "the first run ended before a second could meet it"
    second = run(*args)
    assert first.poll() is None, "the first run ended before the second met it"
    out, err = first.communicate(timeout=300)
    assert first.returncode == 0, err[-2000:]
    assert second.returncode == 2
    line = second.stderr.strip().splitlines()[-1]
    assert "is being written by another run" in line and f"pid {first.pid}" in line
    assert sorted(keys_of(store)) == sorted(keys)  # every image of the first, once


def _featurizer_provenance(tiny_aim) -> tuple[int, dict]:
    f = Featurizer.load(tiny_aim["arch"], tiny_aim["backbone"], tiny_aim["head"])
    prov = f.provenance_for(CLEAN)
    return prov.pop("feature_dim"), prov


# A slow writer: 40 appends of 500 rows, 0.08 s apart (about 3.5 s in all, so that a kill
# within the test's 0.2-2.5 s window lands between or inside appends, however fast the
# machine writes).
APPEND = """
import sys, time, numpy as np
from raid.store.store import StoreWriter
path, dim, tag = sys.argv[1], int(sys.argv[2]), sys.argv[3]
import json; prov = json.loads(sys.argv[4])
rng = np.random.default_rng(0)
with StoreWriter(path, dim, prov) as w:
    for b in range(40):
        keys = [f"{tag}/{b}/{i}" for i in range(500)]
        w.append(keys, rng.normal(size=(500, dim)), [b % 2] * 500, [tag] * 500)
        time.sleep(0.08)
"""


@pytest.mark.slow
def test_sigkill_at_random_moments_never_costs_an_earlier_row(tiny_aim, tmp_path):
    dim, prov = _featurizer_provenance(tiny_aim)
    store = tmp_path / "big.h5"
    n = 50000
    rng = np.random.default_rng(1)
    old_keys = [f"old/{'0_real' if i % 2 else '1_fake'}/{i:05d}.png" for i in range(n)]
    old = rng.normal(size=(n, dim)).astype(np.float32)
    with StoreWriter(store, dim, prov) as w:
        w.append(old_keys, old, [1 - i % 2 for i in range(n)], ["old"] * n)
    new = images(tmp_path / "in", 12, seed=3)
    extract = cli("extract", "--input", str(tmp_path / "in"), "--out", str(store),
                  *aim_args(tiny_aim), *CPU, "--batch-size", "1")
    import json
    append = [sys.executable, "-c", APPEND, str(store), str(dim)]
    pick = random.Random(7)

    def check_earlier_rows() -> None:
        with FeatureStore(store) as fs:
            rows = fs.read(indices=np.arange(n))
            assert list(rows.keys) == old_keys
            np.testing.assert_array_equal(rows.features, old)
            assert len(set(fs.keys())) == len(fs)

    kills = 0
    for attempt in range(10):  # store-level appends and whole extractions, killed
        cmd = extract if attempt % 2 else append + [f"a{attempt}", json.dumps(prov)]
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        time.sleep(pick.uniform(0.2, 6.0 if attempt % 2 else 2.5))
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            kills += 1
        proc.wait()
        check_earlier_rows()
    assert kills >= 5
    res = subprocess.run(extract, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    done = subprocess.run(append + ["final", json.dumps(prov)], cwd=ROOT, timeout=300)
    assert done.returncode == 0
    check_earlier_rows()
    keys = keys_of(store)
    assert set(new) <= set(keys)
    assert sum(k.startswith("final/") for k in keys) == 40 * 500
    assert not list(tmp_path.glob(".*.tmp")) and not list(tmp_path.glob("*.lock*"))


def test_a_changed_file_and_another_folder_are_not_taken_for_rows_present(
        tiny_aim, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    images(a, 3, seed=0)
    keys = images(b, 3, seed=9)  # same relative paths, other pictures
    store = tmp_path / "s.h5"
    common = ["--out", str(store), *aim_args(tiny_aim), *CPU, "--batch-size", "2"]
    assert run("extract", "--input", str(a), *common).returncode == 0
    before = keys_of(store)
    res = run("extract", "--input", str(b), *common)
    assert res.returncode == 2
    err = res.stderr.strip().splitlines()[-1]
    assert f"holds the images of {a}" in err and "--key-prefix" in err
    res = run("extract", "--input", str(b), "--key-prefix", "b", *common)
    assert res.returncode == 0, res.stderr[-2000:]
    assert sorted(keys_of(store)) == sorted(before + [f"b/{k}" for k in keys])
    # a file changed in place: reported, its row kept (not silently "already present")
    time.sleep(0.01)
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(a / keys[1])
    res = run("extract", "--input", str(a), *common)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "1 changed (refused)" in res.stdout and f"changed {keys[1]}" in res.stdout


def test_a_nan_checkpoint_fails_at_once_naming_it(tmp_path):
    from raid.models.aim import load_config, random_aim, save_official_checkpoint
    from helpers import TINY_AIM_YAML

    (tmp_path / "tiny.yaml").write_text(TINY_AIM_YAML)
    model = random_aim(load_config(tmp_path / "tiny.yaml"), seed=0)
    with torch.no_grad():
        next(p for n, p in model.named_parameters() if "head" not in n).fill_(float("nan"))
    save_official_checkpoint(model, tmp_path / "backbone.pth", tmp_path / "head.pth")
    images(tmp_path / "in", 2)
    res = run("extract", "--input", str(tmp_path / "in"), "--out", str(tmp_path / "s.h5"),
              "--arch", str(tmp_path / "tiny.yaml"), "--backbone", str(tmp_path / "backbone.pth"),
              "--head", str(tmp_path / "head.pth"), *CPU)
    assert res.returncode == 2
    line = res.stderr.strip().splitlines()[-1]
    assert "backbone.pth" in line and "non-finite" in line
    assert not (tmp_path / "s.h5").exists()


@pytest.mark.slow
@pytest.mark.parametrize("left", [1, 0])
def test_two_processes_with_fewer_images_left_than_processes(tiny_aim, tmp_path, left):
    keys = images(tmp_path / "in", 3)
    store = tmp_path / "s.h5"
    common = ["--out", str(store), *aim_args(tiny_aim), *CPU, "--batch-size", "2"]
    sub = tmp_path / "sub"
    for k in keys[:3 - left]:  # the store already holds all but `left` images
        (sub / k).parent.mkdir(parents=True, exist_ok=True)
        (sub / k).write_bytes((tmp_path / "in" / k).read_bytes())
    assert run("extract", "--input", str(sub), *common).returncode == 0
    for k in keys[3 - left:]:
        (sub / k).write_bytes((tmp_path / "in" / k).read_bytes())
    res = run("extract", "--input", str(sub), *common, "--devices", "2", "--strategy", "ddp")
    assert res.returncode == 0, res.stderr[-3000:]
    assert f"{left} extracted, {3 - left} already present" in res.stdout
    assert sorted(keys_of(store)) == sorted(keys)
