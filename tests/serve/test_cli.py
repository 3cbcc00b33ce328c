"""`raid serve` options and its one-line refusals before anything starts."""

from __future__ import annotations

import shutil

import pytest

from raid.cli.main import main


def test_help_lists_the_options(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["serve", "--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    for option in ("--model", "--host", "--port", "--accelerator", "--devices",
                   "--workers-per-device", "--max-batch-size", "--batch-timeout",
                   "--max-upload-mb", "--max-pixels", "--api-key", "RAID_API_KEY"):
        assert option in text
    assert "127.0.0.1" in text


@pytest.mark.parametrize("extra, words", [
    ([], ["no such bundle folder"]),
    (["--port", "80"], ["port must be from 1024"]),
    (["--max-batch-size", "0"], ["max_batch_size must be at least 1"]),
    (["--devices", "two"], ["--devices must be a number or auto"]),
])
def test_refusals_are_one_line(bundle, tmp_path, capsys, extra, words):
    model = str(tmp_path / "missing") if not extra else str(bundle)
    assert main(["serve", "--model", model, *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("raid serve: error: ") and "\n" not in err, err
    for word in words:
        assert word in err


def test_a_damaged_bundle_is_refused_before_workers_start(bundle, tmp_path, capsys):
    copy = tmp_path / "bundle"
    shutil.copytree(bundle, copy)
    (copy / "detector.safetensors").write_bytes(b"changed")
    assert main(["serve", "--model", str(copy), "--port", "8123"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("raid serve: error: ") and "\n" not in err, err
    assert "detector.safetensors" in err
