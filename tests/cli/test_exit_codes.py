"""Exit codes and one-line errors (issue 11 items 3 and 4): 0 all done, 1 finished with
failed inputs (named), 2 usage or input error (an empty input creates nothing); a reader
that leaves the pipe early gets no traceback; `raid detect --threshold`."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from helpers import aim_args
from raid.cli.main import main
from raid.primitives.synthetic import write_images
from raid.svm.detector import RaidDetector

CPU = ["--accelerator", "cpu", "--num-workers", "0", "--batch-size", "4"]


def save_detector(path, dim=32, threshold=None):
    rng = np.random.default_rng(3)
    X = rng.normal(size=(40, dim))
    y = np.repeat([0, 1], 20)
    X[y == 1] += 0.3
    det = RaidDetector(backend="sklearn").fit(X, y)
    if threshold is not None:
        det.threshold_ = threshold
    det.save(path)
    return path


@pytest.fixture
def folder(tmp_path):
    write_images(tmp_path / "imgs", {f"p{i}.png": (64, 64) for i in range(4)})
    return tmp_path / "imgs"


def test_detect_exit_codes(folder, tiny_aim, tmp_path, capsys):
    model = save_detector(tmp_path / "m.safetensors")
    base = ["detect", str(model), *aim_args(tiny_aim), *CPU]
    assert main(base + [str(folder)]) == 0

    (folder / "broken.jpg").write_bytes(b"<html>404</html>")
    capsys.readouterr()
    assert main(base + [str(folder)]) == 1  # finished; the failure is named
    assert "broken.jpg" in capsys.readouterr().out

    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("not an image")
    out = tmp_path / "r.csv"
    capsys.readouterr()
    assert main(base + [str(tmp_path / "empty"), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "no images found" in err and len(err.splitlines()) == 1
    assert not out.exists()


def test_detect_threshold_option_and_the_models_own(folder, tiny_aim, tmp_path, capsys):
    low = save_detector(tmp_path / "low.safetensors", threshold=0.0)
    base = [str(folder), *aim_args(tiny_aim), *CPU]
    verdicts = {}
    for name, model, extra in [("model's 0.0", low, []),
                               ("given 1.0", low, ["--threshold", "1"]),
                               ("given 0.0", save_detector(tmp_path / "m.safetensors"),
                                ["--threshold", "0"])]:
        out = tmp_path / f"{len(verdicts)}.json"
        assert main(["detect", str(model), *base, *extra, "--out", str(out)]) == 0
        doc = json.loads(out.read_text())
        verdicts[name] = ({i["verdict"] for i in doc["images"]}, doc["threshold"])
    assert verdicts["model's 0.0"] == ({"generated"}, 0.0)
    assert verdicts["given 1.0"] == ({"real"}, 1.0)
    assert verdicts["given 0.0"] == ({"generated"}, 0.0)


def test_build_train_empty_or_file_input_is_an_error_and_creates_nothing(tiny_aim, tmp_path,
                                                                          capsys):
    from raid.models.autoencoders import tiny_autoencoder_kl

    vae = tmp_path / "vae"
    tiny_autoencoder_kl(seed=0).save_pretrained(vae, safe_serialization=True)
    (tmp_path / "none").mkdir()
    write_images(tmp_path, {"one.png": (64, 64)})
    store = tmp_path / "train.h5"
    for real, message in [(tmp_path / "none", "no images found"),
                          (tmp_path / "one.png", "is a file: build-train takes a folder")]:
        capsys.readouterr()
        assert main(["build-train", str(real), "--vae", str(vae), "--out", str(store),
                     *aim_args(tiny_aim), *CPU]) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["none", "one.png", "vae"]


def test_a_reader_leaving_the_pipe_gets_no_traceback(folder, tiny_aim, tmp_path):
    model = save_detector(tmp_path / "m.safetensors")
    proc = subprocess.Popen(
        [sys.executable, "-m", "raid.cli", "detect", str(model), str(folder),
         *aim_args(tiny_aim), *CPU],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"})
    proc.stdout.close()  # as `| head` does once it has its lines
    err = proc.stderr.read()
    proc.wait(timeout=300)
    assert "Traceback" not in err and "BrokenPipeError" not in err, err


def test_detect_without_a_model_says_what_to_do(folder, capsys):
    assert main(["detect", str(folder / "p0.png"), str(folder / "p1.png")]) == 2
    err = capsys.readouterr().err.strip()
    assert "the first path is the model (or give --model BUNDLE)" in err
    assert len(err.splitlines()) == 1


def test_a_bug_is_one_line_and_its_traceback_needs_debug(monkeypatch, tmp_path, capsys):
    from raid.cli.commands import info

    def broken(args):
        raise ValueError("something RAID did not expect")

    monkeypatch.setattr(info, "run", broken)
    assert main(["info", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert "internal error: ValueError: something RAID did not expect" in err
    assert main(["info", str(tmp_path), "--log-level", "debug"]) == 1
    assert "Traceback" in capsys.readouterr().err


def test_a_file_system_error_is_one_line_exit_2(monkeypatch, tmp_path, capsys):
    from raid.cli.commands import info

    def full(args):
        raise OSError(28, "No space left on device", str(tmp_path / "x.h5"))

    monkeypatch.setattr(info, "run", full)
    assert main(["-q", "info", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"raid info: error: {tmp_path / 'x.h5'}: No space left on device"
