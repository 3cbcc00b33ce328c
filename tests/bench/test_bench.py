"""The speed benchmarks run and print their side-by-side ratios as numbers (figures are not
judged here: speed targets are read from `raid bench`, never asserted in tests)."""

import os
import re
from pathlib import Path

import numpy as np
import pytest

from helpers import TINY_AIM_YAML
from raid.cli.main import main

RATIO = r"([\d.]+)x"
NUMBER = r"([\d.]+(?:e[+-]\d+)?)"


def test_bench_extract_prints_both_paths_and_ratios(tmp_path, capsys):
    (tmp_path / "tiny.yaml").write_text(TINY_AIM_YAML)
    assert main(["bench", "extract", "--arch", str(tmp_path / "tiny.yaml"), "--n", "6",
                 "--seed-n", "2", "--image-size", "80", "--batch-size", "4",
                 "--num-workers", "0", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"end to end \(images/s\)\s+[\d.]+\s+[\d.]+\s+[\d.]+x", out)
    assert re.search(r"model alone \(images/s\)\s+[\d.]+\s+[\d.]+\s+[\d.]+x", out)


def _patch_figures(out: str) -> tuple[float, float, float, int, int]:
    seed = re.search(r"seed-style loop .*?:\s+([\d.]+) images/s", out)
    ours = re.search(r"RAID prefix sums .*?:\s+([\d.]+) images/s", out)
    ratio = re.search(r"ratio: " + RATIO + r" faster; same patch chosen: (\d+)/(\d+)", out)
    assert seed and ours and ratio, out
    seed_rate, our_rate, r = float(seed[1]), float(ours[1]), float(ratio[1])
    assert seed_rate > 0 and our_rate > 0
    assert r == pytest.approx(our_rate / seed_rate, rel=0.06)  # the ratio of the two rates
    return seed_rate, our_rate, r, int(ratio[2]), int(ratio[3])


def test_bench_patch_prints_rates_ratio_and_same_choice(capsys):
    assert main(["bench", "patch", "--images", "3", "--height", "300", "--width", "260"]) == 0
    out = capsys.readouterr().out
    *_, same, total = _patch_figures(out)
    assert (same, total) == (3, 3)
    assert "no competing process" in out


def _children(pid: int) -> list[int]:
    """Live (not zombie) child processes of `pid`, from /proc."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(entry.name))
    return found


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")
def test_bench_patch_busy_runs_beside_a_competitor_and_stops_it(capsys):
    before = set(_children(os.getpid()))
    assert main(["bench", "patch", "--busy", "--busy-seconds", "60", "--images", "2",
                 "--height", "260", "--width", "300"]) == 0
    out = capsys.readouterr().out
    *_, same, total = _patch_figures(out)
    assert (same, total) == (2, 2)
    assert "beside 1 competing CPU-bound process" in out
    assert set(_children(os.getpid())) <= before  # the competitor is gone


def _npy_tree(root: Path, pairs: int, dim: int, seed: int = 0) -> Path:
    """A seed-layout feature folder: pairs of real and generated vectors, separable."""
    rng = np.random.default_rng(seed)
    for label, shift in (("0_real", -0.6), ("1_fake", 0.6)):
        (root / label).mkdir(parents=True)
        for i in range(pairs):
            vec = rng.normal(shift, 1.0, (1, dim)).astype(np.float32)
            np.save(root / label / f"{i:04d}.npy", vec)
    return root


def _ratios(out: str) -> dict[str, float]:
    """'fit|score LABEL vs PEER  N.Nx' lines -> {'fit LABEL vs PEER': N.N}."""
    found = {}
    for what, label, value in re.findall(r"^  (fit|score)\s+(.+?)\s+>?\s*([\d.]+)x", out, re.M):
        found[f"{what} {label}"] = float(value)
    return found


@pytest.mark.slow
def test_bench_svm_prints_command_kernel_and_peer_ratios(tmp_path, capsys):
    features = _npy_tree(tmp_path / "features", pairs=60, dim=24)
    assert main(["bench", "svm", "--features", str(features), "--predict-n", "80",
                 "--peers", "sklearn", "sklearn-proba", "thundersvm",
                 "--peer-timeout", "120"]) == 0
    out = capsys.readouterr().out
    assert "120 x 24 training rows, 80 training rows scored" in out
    table = {}
    for name, fit_s, score_s, acc in re.findall(
            r"^(.+?)\s+([\d.]+)\s+([\d.]+)\s+(0\.\d{4}|1\.0000)", out, re.M):
        table[name.strip()] = (float(fit_s), float(score_s), float(acc))
    for name in ("RAID `raid fit` / `raid evaluate`", "RAID kernel, sklearn, CPU",
                 "sklearn SVC (uncalibrated)", "sklearn SVC(probability=True)"):
        fit_s, score_s, acc = table[name]
        assert fit_s > 0 and score_s > 0 and 0.5 < acc <= 1.0, (name, out)
    ratios = _ratios(out)
    command_fit = ratios["fit `raid fit` vs sklearn SVC (uncalibrated)"]
    assert command_fit == pytest.approx(table["sklearn SVC (uncalibrated)"][0]
                                        / table["RAID `raid fit` / `raid evaluate`"][0], rel=0.01)
    assert ratios["score `raid evaluate` vs sklearn SVC (uncalibrated)"] > 0
    assert ratios["fit RAID kernel, sklearn, CPU fit vs sklearn SVC(probability=True)"] > 0
    thunder = [k for k in ratios if "ThunderSVM" in k]
    assert thunder or "ThunderSVM-CPU skipped: `import thundersvm` failed" in out
    assert "(same support vectors): yes" in out
    points = re.findall(r"accuracy (.+?) - sklearn SVC: ([+-][\d.]+) points", out)
    assert len(points) >= 3 and all(abs(float(p)) <= 100 for _, p in points)


def test_bench_svm_one_class_folder_is_a_one_line_error(tmp_path, capsys):
    features = _npy_tree(tmp_path / "features", pairs=3, dim=8)
    for f in (features / "1_fake").iterdir():
        f.unlink()
    (features / "1_fake").rmdir()
    assert main(["bench", "svm", "--features", str(features)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("raid bench: error:") and "generated" in err
    assert len(err.strip().splitlines()) == 1
