"""Feature extraction end to end: the CLI over real folders with a tiny random AIM."""

import json
import os
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
from raid.models.aim import load_aim, load_config
from raid.cli.main import main
from raid.primitives.images import load_rgb
from raid.primitives.patches import normalize, patch_rng, rich_patch
from raid.store.store import FeatureStore, read_shard

ROOT = Path(__file__).resolve().parents[2]
CPU = ["--accelerator", "cpu", "--num-workers", "0"]


def make_images(folder: Path, n: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    keys = []
    for i in range(n):
        key = f"{['a', 'b'][i % 2]}/{['0_real', '1_fake'][i // 2 % 2]}/img{i:03d}.png"
        (folder / key).parent.mkdir(parents=True, exist_ok=True)
        h, w = rng.integers(40, 90, size=2)
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(folder / key)
        keys.append(key)
    return keys


def rows_by_key(store: Path) -> dict[str, np.ndarray]:
    with FeatureStore(store) as fs:
        r = fs.read()
    return dict(zip(r.keys, r.features))


def test_bad_images_get_their_expected_outcome(bad_images, tiny_aim, tmp_path, capsys):
    store = tmp_path / "s.h5"
    # exit code 1: finished, but some images failed (each named with its reason)
    assert main(["extract", "--input", str(bad_images), "--out", str(store), *aim_args(tiny_aim),
                 *CPU, "--batch-size", "4"]) == 1
    out = capsys.readouterr().out
    expected = json.loads((bad_images / "EXPECTED.json").read_text())
    with FeatureStore(store) as fs:
        keys, failures = set(fs.keys()), fs.failures()
        counts = fs.counts()
    for name, spec in expected.items():
        if spec["outcome"] == "ok":
            assert name in keys, name
        elif spec["outcome"] == "fail":
            assert name in failures and name not in keys, name
            assert f"failed {name}: {failures[name]}" in out
        else:
            assert name not in keys and name not in failures
    n_ok = sum(s["outcome"] == "ok" for s in expected.values())
    assert len(keys) == n_ok
    assert "skipped (not images)" in out
    assert sum(sum(c.values()) for c in counts.values()) == n_ok


def test_features_are_the_models_on_the_rich_patch_and_a_rerun_adds_nothing(
        tiny_aim, tmp_path, capsys):
    keys = make_images(tmp_path / "in", 6)
    store = tmp_path / "s.h5"
    args = ["extract", "--input", str(tmp_path / "in"), "--out", str(store),
            *aim_args(tiny_aim), *CPU, "--batch-size", "4", "--seed", "7"]
    assert main(args) == 0
    first = rows_by_key(store)
    assert sorted(first) == sorted(keys)
    # the same feature computed by hand from the primitives
    config = load_config(tiny_aim["arch"])
    model = load_aim(config, tiny_aim["backbone"], tiny_aim["head"])
    key = keys[3]
    patch = rich_patch(load_rgb(tmp_path / "in" / key), patch_rng(7, key), config.image_size)
    with torch.inference_mode():
        direct = model(normalize(torch.from_numpy(patch)[None]))[0].numpy()
    np.testing.assert_allclose(first[key], direct, rtol=1e-5, atol=1e-6)
    with FeatureStore(store) as fs:
        assert fs.provenance["patch"]["seed"] == 7
        assert fs.group_names() == ["a", "b"]
    capsys.readouterr()
    assert main(args) == 0
    assert "0 extracted, 6 already present" in capsys.readouterr().out
    again = rows_by_key(store)
    assert all(np.array_equal(again[k], first[k]) for k in keys)
    # other settings into the same store: refused, naming what differs
    assert main(args[:-1] + ["8"]) == 2
    assert "patch.seed" in capsys.readouterr().err


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "raid.cli.main", *args]


def test_two_processes_give_the_rows_of_one(tiny_aim, tmp_path):
    make_images(tmp_path / "in", 9)
    one, two = tmp_path / "one.h5", tmp_path / "two.h5"
    common = ["--input", str(tmp_path / "in"), *aim_args(tiny_aim), *CPU, "--batch-size", "2"]
    subprocess.run(_cli("extract", "--out", str(one), *common), check=True, cwd=ROOT,
                   capture_output=True)
    res = subprocess.run(_cli("extract", "--out", str(two), *common, "--devices", "2",
                              "--strategy", "ddp"), cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.count("extracted") == 1  # one summary, from rank 0
    a, b = rows_by_key(one), rows_by_key(two)
    assert sorted(a) == sorted(b)
    for k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=1e-5, atol=1e-6)
    assert not (tmp_path / "two.h5.parts").exists()


def test_a_killed_run_resumes_to_the_uninterrupted_result(tiny_aim, tmp_path):
    keys = make_images(tmp_path / "in", 60, seed=1)
    ref, store = tmp_path / "ref.h5", tmp_path / "s.h5"
    common = ["--input", str(tmp_path / "in"), *aim_args(tiny_aim), *CPU, "--batch-size", "1"]
    subprocess.run(_cli("extract", "--out", str(ref), *common), check=True, cwd=ROOT,
                   capture_output=True)
    proc = subprocess.Popen(_cli("extract", "--out", str(store), *common), cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    parts = tmp_path / "s.h5.parts"

    def committed() -> int:
        contents = [read_shard(p) for p in parts.glob("*.h5")] if parts.exists() else []
        return sum(len(c.keys) for c in contents if c is not None)

    deadline = time.time() + 120
    while committed() < 3 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)  # kill part-way, once a few batches are in a shard
    killed = proc.poll() is None
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert killed, "the run finished before it could be killed"
    assert any(parts.glob("*.h5"))  # the interrupted run left shards behind
    assert not store.exists() or len(rows_by_key(store)) < len(keys)
    res = subprocess.run(_cli("extract", "--out", str(store), *common), cwd=ROOT,
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-2000:]
    a, b = rows_by_key(ref), rows_by_key(store)
    assert sorted(b) == sorted(keys)  # every image exactly once
    with FeatureStore(store) as fs:
        assert len(fs) == len(keys)
    for k in keys:
        np.testing.assert_array_equal(a[k], b[k])
    assert not parts.exists()
