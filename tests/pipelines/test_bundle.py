"""Detector bundles: `raid fit --bundle` writes one, `raid detect --model BUNDLE` runs it
with no other flag, and every kind of damage is one line naming the file."""

import json
import shutil

import numpy as np
import pytest

from helpers import aim_args
from raid.cli.main import main
from raid.pipelines.bundle import INDEX, load_bundle, write_bundle
from raid.primitives.errors import RaidError
from raid.primitives.synthetic import photo, rng_for, write_image

CPU = ["--accelerator", "cpu", "--num-workers", "0", "--batch-size", "4"]


@pytest.fixture(scope="module")
def fitted(tmp_path_factory, tiny_aim):
    """A training store from the tiny AIM (smooth vs noisy images), a bundle fitted on it."""
    d = tmp_path_factory.mktemp("bundle")
    for i in range(12):
        for label, grain in (("0_real", 25.0), ("1_fake", 0.0)):
            write_image(d / "train" / label / f"{i}.png",
                        photo(rng_for(label, i), 80, 96, grain=grain))
        write_image(d / "photos" / f"p{i}.png", photo(rng_for("p", i), 70, 90))
    store = d / "train.h5"
    assert main(["extract", "--input", str(d / "train"), "--out", str(store),
                 *aim_args(tiny_aim), *CPU]) == 0
    assert main(["fit", str(store), "--backend", "sklearn", "--bundle", str(d / "b"),
                 *aim_args(tiny_aim)]) == 0
    return d


def test_fit_bundle_then_detect_with_no_other_flag(fitted, tiny_aim, tmp_path, capsys):
    doc = json.loads((fitted / "b" / INDEX).read_text())
    assert doc["aim"]["file"] == "tiny.yaml" and (fitted / "b" / "tiny.yaml").is_file()
    assert doc["checkpoints"]["backbone"]["path"] == tiny_aim["backbone"]  # outside: absolute
    capsys.readouterr()
    photos = sorted((fitted / "photos").iterdir())
    assert main(["detect", "--model", str(fitted / "b"), *map(str, photos),
                 "--out", str(tmp_path / "a.json")]) == 0
    assert "previous format" not in capsys.readouterr().err  # the provenance was checked
    # the positional form with the same AIM gives the same probabilities
    assert main(["detect", str(fitted / "b" / "detector.safetensors"), *map(str, photos),
                 *aim_args(tiny_aim), *CPU, "--out", str(tmp_path / "b.json")]) == 0
    a, b = (json.loads((tmp_path / n).read_text())["images"] for n in ("a.json", "b.json"))
    assert [i["path"] for i in a] == [str(p) for p in photos]
    np.testing.assert_allclose([i["p_generated"] for i in a], [i["p_generated"] for i in b],
                               atol=1e-6)
    # a bundle names its AIM: flags that would contradict it are refused
    assert main(["detect", "--model", str(fitted / "b"), str(photos[0]),
                 "--arch", tiny_aim["arch"]]) == 2
    assert "a bundle names its AIM" in capsys.readouterr().err


def test_round_trip_with_copied_checkpoints_moves_with_its_folder(fitted, tiny_aim, tmp_path):
    out = write_bundle(tmp_path / "c", fitted / "b" / "detector.safetensors",
                       arch=tiny_aim["arch"], backbone=tiny_aim["backbone"],
                       head=tiny_aim["head"], copy_checkpoints=True)
    doc = json.loads((out / INDEX).read_text())
    assert doc["checkpoints"]["backbone"]["path"] == "backbone.pth"  # inside: relative
    shutil.move(out, tmp_path / "moved")
    b = load_bundle(tmp_path / "moved")
    assert b.backbone == (tmp_path / "moved" / "backbone.pth").resolve()
    assert b.probe == "best" and b.precision == "32" and b.seed == 0
    assert b.digests["head"] == doc["checkpoints"]["head"]["sha256"]


def _damaged(src, dst, damage):
    shutil.copytree(src, dst)
    damage(dst)
    return dst


@pytest.mark.parametrize("damage, message", [
    (lambda d: (d / INDEX).unlink(), "not a detector bundle (no bundle.json)"),
    (lambda d: (d / INDEX).write_text("{not json"), "not valid JSON (line 1"),
    (lambda d: (d / INDEX).write_text('{"format": "other"}'), "not a RAID detector bundle"),
    (lambda d: (d / "detector.safetensors").unlink(), "model file named in"),
    (lambda d: (d / "tiny.yaml").write_text("width: 64\n"), "AIM config changed since"),
    (lambda d: (d / "backbone.pth").write_bytes(b"x"), "backbone checkpoint changed since"),
    (lambda d: (d / "head.pth").unlink(), "head checkpoint named in"),
    (lambda d: (d / INDEX).write_text(json.dumps(
        {**json.loads((d / INDEX).read_text()), "seed": "zero"})), "entry 'seed' has the wrong"),
    (lambda d: (d / INDEX).write_text(json.dumps(
        {**json.loads((d / INDEX).read_text()), "format_version": 99})), "upgrade RAID"),
])
def test_damaged_bundles_fail_in_one_line(fitted, tiny_aim, tmp_path, capsys, damage, message):
    good = write_bundle(tmp_path / "good", fitted / "b" / "detector.safetensors",
                        arch=tiny_aim["arch"], backbone=tiny_aim["backbone"],
                        head=tiny_aim["head"], copy_checkpoints=True)
    bad = _damaged(good, tmp_path / "bad", damage)
    with pytest.raises(RaidError, match="^" + str(bad)):
        load_bundle(bad)
    assert main(["detect", "--model", str(bad), str(fitted / "photos" / "p0.png")]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1, err
    with pytest.raises(RaidError, match="no such bundle folder"):
        load_bundle(tmp_path / "absent")


def test_a_bundle_with_other_checkpoints_is_refused_before_fitting(fitted, tmp_path, capsys):
    from helpers import write_tiny_aim

    other = write_tiny_aim(tmp_path / "other", seed=1)
    capsys.readouterr()
    assert main(["fit", str(fitted / "train.h5"), "--backend", "sklearn",
                 "--bundle", str(tmp_path / "ob"), *aim_args(other)]) == 2
    err = capsys.readouterr().err
    assert "checkpoints.backbone: model has" in err and "checkpoints.head" in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "ob").exists()  # nothing written
    assert main(["fit", str(fitted / "train.h5"), "--out", str(tmp_path / "m.safetensors"),
                 "--arch", other["arch"]]) == 2
    assert "go with --bundle" in capsys.readouterr().err
