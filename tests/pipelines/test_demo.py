"""`raid demo`: the whole pipeline on its own synthetic material, twice into one folder, and
on a config naming checkpoints and folders."""

import csv
import json
import re
from pathlib import Path

import pytest
import yaml

from raid.cli.main import main
from raid.pipelines.bundle import load_bundle
from raid.pipelines.demo_config import load_demo_config
from raid.primitives.errors import RaidError


@pytest.mark.slow
def test_demo_runs_reruns_and_runs_from_a_config(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "mean NOTHING" in text and f"report: {out / 'report' / 'report.md'}" in text
    report = out / "report"
    assert "mean NOTHING" in (report / "report.md").read_text()
    metrics = json.loads((report / "clean" / "metrics.json").read_text())
    assert list(metrics["groups"]) == ["upsampler", "smoother", "gan"]
    assert metrics["groups"]["gan"]["n"] == 16  # two nested subsets of 4 + 4
    assert "diffusion (folder not found)" in (report / "clean" / "report.md").read_text()
    for plot in ("robustness.png", "clean/roc.png", "jpeg=75/roc.png"):
        assert (report / plot).read_bytes()[:4] == b"\x89PNG", plot
    assert "mean NOTHING" in (report / "jpeg=75" / "report.md").read_text()
    detections = list(csv.DictReader((report / "detections.csv").open()))
    assert len(detections) == 7
    broken = [d for d in detections if d["path"].endswith("broken.jpg")]
    assert broken and broken[0]["error"] and not broken[0]["p_generated"]
    assert len(list((out / "reconstructed" / "vae-tiny").glob("*.png"))) == 40
    summary = json.loads((report / "summary.json").read_text())
    assert [s["step"] for s in summary["steps"]] == [
        "reconstruct", "build-train", "fit", "bundle", "benchmark", "detect"]
    # a self-contained detector bundle: its files inside it, verified on loading
    bundle = load_bundle(out / "bundle")
    assert bundle.model.read_bytes() == (out / "models" / "detector.safetensors").read_bytes()
    for path in (bundle.model, bundle.backbone, bundle.head, Path(bundle.arch)):
        assert path.is_relative_to((out / "bundle").resolve()), path
    assert summary["bundle"] == str(out / "bundle") and f"--model {out / 'bundle'}" in text

    # a second run into the same folder reuses everything and gives the same numbers
    model = out / "models" / "detector.safetensors"
    model_bytes = model.read_bytes()
    assert main(["demo", "--out", str(out)]) == 0
    again = capsys.readouterr().out
    assert "0 written, 40 already present" in again
    assert "0 rows added, 40 photos already complete" in again
    assert "reused" in again and "0 extracted" in again
    assert model.read_bytes() == model_bytes
    assert json.loads((report / "clean" / "metrics.json").read_text()) == metrics

    # the same pipeline from a config naming checkpoints and folders
    models, data = out / "models", out / "data"
    config = {
        "aim": {"arch": str(models / "aim-tiny.yaml"),
                "backbone": str(models / "aim-tiny_backbone.pth"),
                "head": str(models / "aim-tiny_head.pth")},
        "vae": [str(models / "vae-tiny")], "real": str(data / "real"),
        "benchmark": {"config": str(data / "benchmark.yaml"), "root": str(data / "benchmark")},
        "detect": [str(data / "detect" / "real_0.png")], "perturb": [],
        "out": str(tmp_path / "from-config"),
        "run": {"batch_size": 16, "num_workers": 0, "accelerator": "cpu"},
        "fit": {"backend": "sklearn"}}
    (tmp_path / "raid.yaml").write_text(yaml.safe_dump(config))
    assert main(["demo", "--config", str(tmp_path / "raid.yaml")]) == 0
    text = capsys.readouterr().out
    assert "mean NOTHING" not in text
    second = tmp_path / "from-config" / "report"
    assert json.loads((second / "clean" / "metrics.json").read_text()) == metrics
    assert not (second / "robustness.png").exists()
    assert not (tmp_path / "from-config" / "reconstructed").exists()
    # without copies: the bundle names the checkpoints where the config has them
    assert load_bundle(tmp_path / "from-config" / "bundle").backbone == \
        (models / "aim-tiny_backbone.pth").resolve()


def test_the_shipped_config_is_valid_but_names_missing_files(tmp_path):
    shipped = Path(__file__).resolve().parents[2] / "configs" / "raid.yaml"
    with pytest.raises(RaidError, match=r"key 'aim.backbone': no such file"):
        load_demo_config(shipped)


@pytest.mark.parametrize("change, message", [
    ({"aim": None}, "key 'aim': must be a mapping"),
    ({"colour": 1}, "unknown key(s) colour"),
    ({"aim": {"arch": "tiny.yaml", "backbone": "b.pth", "typo": 1}}, "key 'aim.typo'"),
    ({"vae": []}, "key 'vae': must list"),
    ({"vae": ["nowhere"]}, "key 'vae[0]': no such folder"),
    ({"benchmark": {"config": "bench.yaml"}}, "key 'benchmark.root': is missing"),
    ({"run": {"batch_size": "8"}}, "key 'run.batch_size': has the wrong type"),
    ({"run": {"precision": "fp8"}}, "key 'run.precision'"),
    ({"perturb": ["jpeg=500"]}, "key 'perturb'"),
    ({"fit": {"C": True}}, "key 'fit.C'"),
    ({"run": {"devices": 2}}, "key 'run.devices': unknown key"),
])
def test_config_mistakes_name_the_key(tmp_path, monkeypatch, change, message):
    monkeypatch.chdir(tmp_path)
    for name in ("b.pth", "tiny.yaml", "bench.yaml"):
        (tmp_path / name).write_text("x")
    for name in ("vae", "real", "root"):
        (tmp_path / name).mkdir()
    config = {"aim": {"arch": "tiny.yaml", "backbone": "b.pth"}, "vae": ["vae"],
              "real": "real", "benchmark": {"config": "bench.yaml", "root": "root"}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    plan = load_demo_config(tmp_path / "c.yaml")  # the base config is fine
    assert plan.real == Path("real") and plan.out == Path("raid-demo") and not plan.synthetic
    config.update(change)
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    with pytest.raises(RaidError, match=re.escape(message)) as info:
        load_demo_config(tmp_path / "c.yaml")
    assert "\n" not in str(info.value)
