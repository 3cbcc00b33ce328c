"""Progress inside a slow reconstruction batch (issue 11, item 3): the line moves as the
autoencoder's coarse stages end, by whole images, ends at the exact count, changes no
result, and stays silent under -q."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers import aim_args
from raid.cli.main import main
from raid.models.autoencoders import (coarse_stages, tiny_autoencoder_kl,
                                      tiny_autoencoder_tiny, tiny_vq_model)
from raid.pipelines.predict import ImagesPerSecondBar
from raid.pipelines.reconstruction import FrozenAutoencoder
from raid.primitives import synthetic
from raid.primitives.progress import Progress
from raid.store.store import FeatureStore

N = 6  # images, all one size: one batch
PHOTOS = {f"p{i}.png": (40, 48) for i in range(N)}
RUN = ["--accelerator", "cpu", "--num-workers", "0", "--batch-size", "8"]


@pytest.fixture
def models(tmp_path: Path) -> dict[str, Path]:
    # num_blocks=4: 4 down blocks, 2 mid blocks, 4 up blocks (10 stages), factor 8 like SD
    tiny_autoencoder_kl(1, num_blocks=4).save_pretrained(tmp_path / "vae-one")
    tiny_autoencoder_kl(2, num_blocks=4).save_pretrained(tmp_path / "vae-two")
    return {"vae1": tmp_path / "vae-one", "vae2": tmp_path / "vae-two"}


@pytest.fixture
def events(monkeypatch) -> list[tuple[str, int]]:
    """What the progress line counts, in order: ("update", count) after every update of
    the Progress object, ("batch end", count) as a batch ends, before its update."""
    seen: list[tuple[str, int]] = []
    update, batch_end = Progress.update, ImagesPerSecondBar.on_predict_batch_end

    def recorded_update(self, n=1):
        update(self, n)
        seen.append(("update", self.count))

    def recorded_batch_end(self, *args, **kwargs):
        seen.append(("batch end", self.images))
        return batch_end(self, *args, **kwargs)

    monkeypatch.setattr(Progress, "update", recorded_update)
    monkeypatch.setattr(ImagesPerSecondBar, "on_predict_batch_end", recorded_batch_end)
    monkeypatch.setattr(ImagesPerSecondBar, "delay", 0.0)  # show even a short run
    root, raid_log = logging.getLogger(), logging.getLogger("raid")
    levels = root.level, raid_log.level
    raid_log.setLevel(logging.NOTSET)  # the CLI's -q (on the root logger) decides
    yield seen
    root.setLevel(levels[0])
    raid_log.setLevel(levels[1])


def assert_moved_inside_the_batch(seen: list[tuple[str, int]], n: int) -> None:
    ends = [i for i, (what, _) in enumerate(seen) if what == "batch end"]
    assert len(ends) == 1, seen  # one batch
    inside = [count for _, count in seen[:ends[0]]]
    assert any(0 < count < n for count in inside), seen
    assert all(0 <= count <= n for count in inside), seen  # whole images, never ahead
    assert seen[-1] == ("update", n), seen  # exactly the batch's images at its end


def test_reconstruct_progress_moves_inside_a_batch(tmp_path: Path, models, events, capfd):
    src = tmp_path / "in"
    synthetic.write_images(src, PHOTOS, seed=1)
    args = ["reconstruct", "--vae", str(models["vae1"]), "--input", str(src), *RUN]

    assert main([*args, "--output", str(tmp_path / "shown")]) == 0
    err = capfd.readouterr().err
    assert_moved_inside_the_batch(events, N)
    assert f"reconstructing: {N}/{N} images" in err

    events.clear()
    assert main([*args, "--output", str(tmp_path / "quiet"), "-q"]) == 0
    out, err = capfd.readouterr()
    assert "update" not in dict(events) and err == "", err  # -q: no line, nothing counted
    for key in PHOTOS:  # progress changes no bit of the reconstructions
        png = Path(key).with_suffix(".png")
        assert (tmp_path / "shown" / png).read_bytes() == (tmp_path / "quiet" / png).read_bytes()


def test_build_train_progress_moves_inside_a_batch(tmp_path: Path, models, tiny_aim, events,
                                                   capfd):
    real = tmp_path / "real"
    synthetic.write_images(real, PHOTOS, seed=2)
    args = ["build-train", "--real", str(real), "--vae", str(models["vae1"]),
            "--vae", str(models["vae2"]), *aim_args(tiny_aim), *RUN]

    assert main([*args, "--out", str(tmp_path / "shown.h5")]) == 0
    err = capfd.readouterr().err
    assert_moved_inside_the_batch(events, N)  # photos, each over both autoencoders
    assert f"reconstructing + extracting: {N}/{N} images" in err

    events.clear()
    assert main([*args, "--out", str(tmp_path / "quiet.h5"), "-q"]) == 0
    assert "update" not in dict(events) and capfd.readouterr().err == ""
    with FeatureStore(tmp_path / "shown.h5") as a, FeatureStore(tmp_path / "quiet.h5") as b:
        shown, quiet = a.read(), b.read()
    assert len(shown.keys) == 3 * N and list(shown.keys) == list(quiet.keys)
    assert np.array_equal(shown.features, quiet.features)


@pytest.mark.parametrize("make", [tiny_autoencoder_kl, tiny_autoencoder_tiny, tiny_vq_model])
def test_stages_report_the_call_and_leave_no_hook(make):
    model = make(0, num_blocks=3)
    images = torch.randint(0, 256, (3, 3, 16, 24), dtype=torch.uint8)
    seeds = [1, 2, 3]
    plain = FrozenAutoencoder(model)(images, seeds)
    watched, reports = FrozenAutoencoder(model), []
    watched.on_stage = reports.append
    assert torch.equal(watched(images, seeds), plain)
    assert len(reports) == len(coarse_stages(model)) > 1
    assert sum(reports) == pytest.approx(3)
    assert not any(m._forward_hooks for m in model.modules())


def test_a_failed_call_takes_back_what_it_reported():
    model = tiny_autoencoder_kl(0)
    watched, reports = FrozenAutoencoder(model), []
    watched.on_stage = reports.append

    def fail(*_):  # out of memory in the decoder, after the encoder's stages
        raise RuntimeError("CUDA out of memory")

    handle = model.decoder.mid_block.register_forward_pre_hook(fail)
    with pytest.raises(RuntimeError):
        watched(torch.zeros((2, 3, 8, 8), dtype=torch.uint8), [1, 2])
    handle.remove()
    assert any(r > 0 for r in reports) and sum(reports) == pytest.approx(0)
