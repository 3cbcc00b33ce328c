"""`raid benchmark`: per-generator reports from images (cached, perturbed) and from
imported .npy features."""

import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from helpers import aim_args
from raid.pipelines.benchmark import load_benchmark_config
from raid.cli.main import main
from raid.svm.detector import RaidDetector
from raid.primitives.errors import RaidError
from raid.store.store import FeatureStore

CPU = ["--accelerator", "cpu", "--num-workers", "0", "--batch-size", "8"]
# generator folder -> subsets (None: label folders directly inside), images per class
TREE = {"gA": (None, 3), "gB": (("s1", "s2"), 2), "gC": (None, 3), "other": (None, 1)}
CONFIG = """\
name: Test bench
generators:
  - {folder: gA, name: Gen A}
  - gB
  - {folder: gMissing, name: Missing}
  - gC
"""


def make_tree(root: Path) -> dict[str, int]:
    """Small random images; returns images per generator."""
    rng = np.random.default_rng(0)
    counts: dict[str, int] = {}
    for gen, (subsets, n) in TREE.items():
        for sub in subsets or (None,):
            base = root / gen / sub if sub else root / gen
            for label in ("0_real", "1_fake"):
                for i in range(n):
                    h, w = rng.integers(40, 80, size=2)
                    img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
                    if label == "1_fake":  # smoother fakes: some signal for the features
                        img = np.repeat(np.repeat(img[::4, ::4], 4, 0), 4, 1)
                    (base / label).mkdir(parents=True, exist_ok=True)
                    Image.fromarray(img).save(base / label / f"{i}.png")
                    counts[gen] = counts.get(gen, 0) + 1
    return counts


def save_detector(path: Path, dim: int, seed: int = 0) -> RaidDetector:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(40, dim))
    y = np.repeat([0, 1], 20)
    X[y == 1] += 0.4
    det = RaidDetector(backend="sklearn").fit(X, y)
    det.save(path)
    return det


@pytest.fixture(scope="module")
def bench(tmp_path_factory, tiny_aim):
    d = tmp_path_factory.mktemp("bench")
    counts = make_tree(d / "root")
    (d / "bench.yaml").write_text(CONFIG)
    save_detector(d / "model.safetensors", 32)
    return {"dir": d, "counts": counts, "root": d / "root", "config": d / "bench.yaml",
            "model": d / "model.safetensors", "aim": aim_args(tiny_aim)}


def by_hand(model: Path, store: Path, folders: list[str]) -> dict[str, float]:
    """Accuracy per generator computed directly from the store's rows."""
    det = RaidDetector.load(model)
    with FeatureStore(store) as fs:
        rows = fs.read()
    gen = np.array([k.split("/")[0] for k in rows.keys])
    pred = det.predict_proba(rows.features)[:, 1] > 0.5
    return {g: float(np.mean(pred[gen == g] == rows.labels[gen == g])) for g in folders}


def test_groups_means_files_and_a_cached_rerun(bench, tmp_path, capsys):
    out = tmp_path / "out"
    args = ["benchmark", "--config", str(bench["config"]), "--root", str(bench["root"]),
            "--model", str(bench["model"]), "--out", str(out), *bench["aim"], *CPU]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "missing generators: gMissing (folder not found)" in text
    assert "not in the config (left out): other" in text

    metrics = json.loads((out / "clean" / "metrics.json").read_text())
    assert list(metrics["groups"]) == ["gA", "gB", "gC"]  # config order, nested gB counted once
    for g in ("gA", "gB", "gC"):
        assert metrics["groups"][g]["n"] == bench["counts"][g]
    stores = list((out / "features").rglob("*.h5"))
    assert [s.name for s in stores] == ["clean.h5"]
    hand = by_hand(bench["model"], stores[0], ["gA", "gB", "gC"])
    for g, acc in hand.items():
        assert metrics["groups"][g]["accuracy"] == pytest.approx(acc)
    assert metrics["mean"]["accuracy"] == pytest.approx(np.mean(list(hand.values())))
    for name in ("metrics.csv", "report.md", "roc.png", "benchmark.md", "benchmark.csv"):
        assert (out / "clean" / name).is_file(), name
    assert not (out / "robustness.png").exists()  # no perturbation, no sweep

    table = list(csv.DictReader((out / "clean" / "benchmark.csv").open()))
    assert [r["generator"] for r in table] == ["Gen A", "gB", "Missing", "gC", "mean"]
    assert table[2]["status"] == "missing" and table[2]["accuracy"] == ""
    assert table[-1]["status"] == "3/4"
    assert float(table[-1]["accuracy"]) == pytest.approx(metrics["mean"]["accuracy"])
    md = (out / "clean" / "benchmark.md").read_text()
    # the one column order of every table: name, n, then the metrics
    assert "| Missing | folder not found | – | – | – | – | – |" in md
    assert "**Mean (3/4)**" in md
    assert "gMissing (folder not found)" in (out / "clean" / "report.md").read_text()

    before = stores[0].read_bytes()
    assert main(args) == 0
    again = capsys.readouterr().out
    n_all = sum(n for g, n in bench["counts"].items() if g != "other")  # unlisted: not extracted
    assert f"clean: features {stores[0]}: 0 extracted, {n_all} reused from the cache" in again
    assert stores[0].read_bytes() == before
    assert json.loads((out / "clean" / "metrics.json").read_text()) == metrics


def test_a_sweep_writes_tables_plot_and_separate_caches(bench, tmp_path, capsys):
    out, cache = tmp_path / "out", tmp_path / "cache"
    assert main(["benchmark", "--config", str(bench["config"]), "--root", str(bench["root"]),
                 "--model", str(bench["model"]), "--out", str(out), "--cache", str(cache),
                 "--perturb", "jpeg=40", "blur=2", *bench["aim"], *CPU]) == 0
    capsys.readouterr()
    for setting in ("clean", "jpeg=40", "blur=2"):
        assert (out / setting / "benchmark.md").is_file()
        assert f"perturbation: {setting}" in (out / setting / "report.md").read_text()
    assert (out / "robustness.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    sweep = list(csv.DictReader((out / "robustness.csv").open()))
    assert [(r["setting"], r["kind"], r["strength"]) for r in sweep] == [
        ("clean", "clean", ""), ("jpeg=40", "jpeg", "40"), ("blur=2", "blur", "2")]
    for r in sweep:
        m = json.loads((out / r["setting"] / "metrics.json").read_text())["mean"]
        assert float(r["accuracy"]) == pytest.approx(m["accuracy"])

    stores = {p.stem: p for p in cache.rglob("*.h5")}
    assert sorted(stores) == ["blur=2", "clean", "jpeg=40"]
    feats = {}
    for name, path in stores.items():
        with FeatureStore(path) as fs:
            assert fs.provenance["perturbation"] == name
            rows = fs.read()
        feats[name] = dict(zip(rows.keys, rows.features))
    keys = sorted(feats["clean"])
    for name in ("jpeg=40", "blur=2"):
        assert sorted(feats[name]) == keys
        differ = sum(not np.allclose(feats[name][k], feats["clean"][k]) for k in keys)
        assert differ >= len(keys) - 1, name


def make_npy_tree(src: Path, dim: int) -> dict[str, int]:
    rng = np.random.default_rng(1)
    counts = {}
    layout = {"gA": [""], "gB": ["s1/", "s2/"], "gC": [""]}
    for gen, subs in layout.items():
        for sub in subs:
            for label, shift in (("0_real", 0.0), ("1_fake", 0.4)):
                folder = src / gen / sub / label
                folder.mkdir(parents=True)
                for i in range(4):
                    np.save(folder / f"{i}.npy",
                            (rng.normal(size=(1, dim)) + shift).astype(np.float32))
                    counts[gen] = counts.get(gen, 0) + 1
    return counts


def test_from_imported_npy_features_without_images(bench, tmp_path, capsys):
    counts = make_npy_tree(tmp_path / "npy", 16)
    store = tmp_path / "test.h5"
    assert main(["import-npy", str(tmp_path / "npy"), "--out", str(store)]) == 0
    model = tmp_path / "m16.safetensors"
    save_detector(model, 16, seed=2)
    out = tmp_path / "out"
    capsys.readouterr()
    assert main(["benchmark", "--config", str(bench["config"]), "--features", str(store),
                 "--model", str(model), "--out", str(out)]) == 0
    assert "missing generators: gMissing (not in the feature store)" in capsys.readouterr().out
    metrics = json.loads((out / "clean" / "metrics.json").read_text())
    assert {g: m["n"] for g, m in metrics["groups"].items()} == counts
    hand = by_hand(model, store, ["gA", "gB", "gC"])
    for g, acc in hand.items():
        assert metrics["groups"][g]["accuracy"] == pytest.approx(acc)
    assert (out / "clean" / "benchmark.csv").is_file()

    # features are fixed: no perturbation; images need the AIM options; sizes must agree
    assert main(["benchmark", "--config", str(bench["config"]), "--features", str(store),
                 "--model", str(model), "--out", str(out), "--perturb", "jpeg=75"]) == 2
    assert "--perturb needs images" in capsys.readouterr().err
    assert main(["benchmark", "--config", str(bench["config"]), "--root", str(bench["root"]),
                 "--model", str(model), "--out", str(out)]) == 2
    assert "--arch" in capsys.readouterr().err
    assert main(["benchmark", "--config", str(bench["config"]), "--root", str(bench["root"]),
                 "--model", str(model), "--out", str(tmp_path / "o2"), *bench["aim"], *CPU]) == 2
    err = capsys.readouterr().err
    assert "model expects 16 features" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o2" / "features").exists()  # refused before any extraction


@pytest.mark.parametrize("text, message", [
    ("generators: []\n", "non-empty list"),
    ("generators: [a, b, a]\n", "a listed twice"),
    ("generators: [a/b]\n", "not a folder name"),
    ("generators: [a]\nextra: 1\n", "unknown key(s): extra"),
    ("generators: [{name: x}]\n", "generators[0]"),
])
def test_bad_benchmark_configs_fail_in_one_line(tmp_path, text, message):
    path = tmp_path / "b.yaml"
    path.write_text(text)
    with pytest.raises(RaidError, match=re.escape(message)):
        load_benchmark_config(path)


def test_the_aigcdetect_config_lists_the_18_generators():
    config = load_benchmark_config(Path(__file__).resolve().parents[2] / "configs" /
                                   "benchmark" / "aigcdetect.yaml")
    assert config.folders == [
        "progan", "stylegan", "biggan", "cyclegan", "stargan", "gaugan", "stylegan2",
        "whichfaceisreal", "ADM", "Glide", "Midjourney", "stable_diffusion_v_1_4",
        "stable_diffusion_v_1_5", "VQDM", "wukong", "DALLE2", "SDXL", "flux"]
