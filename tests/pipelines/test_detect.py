"""`raid detect`: files and folders in, P(generated) and a verdict out; broken files listed."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from helpers import aim_args
from raid.cli.main import main
from raid.svm.detector import RaidDetector
from raid.store.store import FeatureStore

CPU = ["--accelerator", "cpu", "--num-workers", "0", "--batch-size", "8"]


def save_detector(path: Path, dim: int) -> RaidDetector:
    rng = np.random.default_rng(3)
    X = rng.normal(size=(40, dim))
    y = np.repeat([0, 1], 20)
    X[y == 1] += 0.3
    det = RaidDetector(backend="sklearn").fit(X, y)
    det.save(path)
    return det


def test_bad_images_broken_listed_good_scored_csv_and_json(bad_images, tiny_aim, tmp_path,
                                                           capsys):
    model = tmp_path / "m.safetensors"
    det = save_detector(model, 32)
    expected = json.loads((bad_images / "EXPECTED.json").read_text())
    args = ["detect", str(model), str(bad_images), *aim_args(tiny_aim), *CPU]

    # exit code 1: finished, but some inputs failed (named in the table)
    assert main(args + ["--out", str(tmp_path / "d.csv")]) == 1
    table = capsys.readouterr().out
    rows = {Path(r["path"]).relative_to(bad_images).as_posix(): r
            for r in csv.DictReader((tmp_path / "d.csv").open(encoding="utf-8"))}
    # the same images through `raid extract`, scored by hand: detect must agree
    store = tmp_path / "ref.h5"
    assert main(["extract", "--input", str(bad_images), "--out", str(store),
                 *aim_args(tiny_aim), *CPU]) == 1
    with FeatureStore(store) as fs:
        ref = fs.read()
    ref_p = dict(zip(ref.keys, det.predict_proba(ref.features)[:, 1]))

    for name, spec in expected.items():
        if spec["outcome"] == "ignore":
            assert name not in rows, name
            continue
        row = rows[name]
        if spec["outcome"] == "fail":
            assert row["error"] and row["p_generated"] == "" and row["verdict"] == "", name
            assert f"error: {row['error']}" in table
        else:
            p = float(row["p_generated"])
            assert row["error"] == ""
            # same key, same patch: equal up to float32 batch-size noise
            assert p == pytest.approx(ref_p[name], abs=1e-6), name
            assert row["verdict"] == ("generated" if p > 0.5 else "real")
    assert len(rows) == sum(s["outcome"] != "ignore" for s in expected.values())

    # JSON, with a file named explicitly next to a folder, and the same file twice
    one = bad_images / "ok_rgb.jpg"
    capsys.readouterr()
    assert main(["detect", str(model), str(one), str(bad_images / "sub"), str(one),
                 "--out", str(tmp_path / "d.json"), *aim_args(tiny_aim), *CPU]) == 0
    doc = json.loads((tmp_path / "d.json").read_text(encoding="utf-8"))
    paths = [Path(i["path"]) for i in doc["images"]]
    assert paths == [one, bad_images / "sub/dir/ok_nested.png", bad_images / "sub/ok_rgb.jpg"]
    for item in doc["images"]:
        assert item["error"] is None and 0 <= item["p_generated"] <= 1
        assert item["verdict"] == ("generated" if item["p_generated"] > 0.5 else "real")
    # a file named alone gets the patch `raid extract` gives it in its folder
    assert doc["images"][0]["p_generated"] == pytest.approx(ref_p["ok_rgb.jpg"], abs=1e-6)
    assert doc["threshold"] == 0.5


def test_mistakes_fail_in_one_line(tiny_aim, tmp_path, capsys):
    model, small = tmp_path / "m.safetensors", tmp_path / "m16.safetensors"
    save_detector(model, 32)
    save_detector(small, 16)
    img = tmp_path / "x.png"
    from PIL import Image
    Image.fromarray(np.zeros((30, 30, 3), np.uint8)).save(img)
    cases = [
        (["detect", str(small), str(img), *aim_args(tiny_aim)], "model expects 16 features"),
        (["detect", str(model), str(tmp_path / "nope.png"), *aim_args(tiny_aim)],
         "no such file or folder"),
        (["detect", str(model), str(img), "--out", str(tmp_path / "r.txt"), *aim_args(tiny_aim)],
         "must end in .csv or .json"),
    ]
    for argv, message in cases:
        assert main(argv + CPU) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "r.txt").exists()
