"""The speed benchmarks run and print their side-by-side ratios (figures are not judged
here: speed targets are read from `raid bench`, never asserted in tests)."""

import re

from conftest import TINY_AIM_YAML
from raid.cli.main import main


def test_bench_extract_prints_both_paths_and_ratios(tmp_path, capsys):
    (tmp_path / "tiny.yaml").write_text(TINY_AIM_YAML)
    assert main(["bench", "extract", "--arch", str(tmp_path / "tiny.yaml"), "--n", "6",
                 "--seed-n", "2", "--image-size", "80", "--batch-size", "4",
                 "--num-workers", "0", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"end to end \(images/s\)\s+[\d.]+\s+[\d.]+\s+[\d.]+x", out)
    assert re.search(r"model alone \(images/s\)\s+[\d.]+\s+[\d.]+\s+[\d.]+x", out)


def test_bench_patch_checks_the_same_choice(capsys):
    assert main(["bench", "patch", "--images", "2", "--height", "300", "--width", "260"]) == 0
    out = capsys.readouterr().out
    assert "x" in out and "2/2" in out
