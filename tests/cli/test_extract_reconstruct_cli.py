"""`raid extract` and `raid reconstruct` speak the shared vocabulary (positional input or
--input, --out, precision names, old spellings hidden) and refuse an empty input folder or
a file in one line, creating nothing (issue 11 items 2-4)."""

import argparse

import pytest

from helpers import aim_args
from raid.cli import args as a
from raid.cli.commands import extract, reconstruct
from raid.cli.main import main
from raid.primitives.synthetic import write_images


def parse(module, argv):
    p = argparse.ArgumentParser(prog=f"raid {module.NAME}")
    module.add_arguments(p)
    return p, p.parse_args(argv)


def test_old_spellings_still_parse_and_stay_hidden():
    p, args = parse(reconstruct, ["--input", "in", "--output", "out", "--vae", "v",
                                  "--precision", "fp16", "--accelerator", "cuda"])
    assert (a.one_input(args, "folder"), args.out, args.precision, args.accelerator) == \
        ("in", "out", "16-mixed", "gpu")
    assert a.AUTOENCODER_PRECISION[args.precision] == "fp16"
    assert "--output" not in p.format_help() and "(default: None)" not in p.format_help()
    p, args = parse(extract, ["in", "--out", "s.h5", "--arch", "x", "--backbone", "b",
                              "--precision", "32-true"])
    assert a.one_input(args, "folder") == "in" and args.precision == "32"


def test_empty_folder_or_a_file_is_one_line_and_creates_nothing(tiny_aim, tmp_path, capsys):
    from raid.models.autoencoders import tiny_autoencoder_kl

    vae = tmp_path / "vae"
    tiny_autoencoder_kl(seed=0).save_pretrained(vae, safe_serialization=True)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("not an image")
    write_images(tmp_path, {"one.png": (64, 64)})
    cases = [
        (["extract", str(tmp_path / "empty"), "--out", str(tmp_path / "s.h5"),
          *aim_args(tiny_aim)], "no images found in this folder"),
        (["extract", str(tmp_path / "one.png"), "--out", str(tmp_path / "s.h5"),
          *aim_args(tiny_aim)], "is a file: extract takes a folder of images"),
        (["reconstruct", str(tmp_path / "empty"), "--vae", str(vae), "--out",
          str(tmp_path / "recon")], "no images found in this folder"),
    ]
    for argv, message in cases:
        capsys.readouterr()
        assert main(argv + ["--accelerator", "cpu"]) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "one.png", "vae"]


@pytest.mark.parametrize("module", [extract, reconstruct], ids=lambda m: m.NAME)
def test_parsers_import_nothing_heavy(module):
    import subprocess
    import sys

    code = ("import argparse, sys\n"
            f"from raid.cli.commands import {module.__name__.rsplit('.', 1)[1]} as m\n"
            "m.add_arguments(argparse.ArgumentParser())\n"
            "heavy = [n for n in ('torch', 'lightning', 'numpy') if n in sys.modules]\n"
            "assert not heavy, heavy\n")
    subprocess.run([sys.executable, "-c", code], check=True)
