"""End-to-end tests of `raid reconstruct` and `raid build-train` (in-process CLI, CPU, tiny
random diffusers autoencoders and a tiny random AIM saved like the real ones)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from helpers import aim_args, require_shared
from raid.models.autoencoders import Reconstructor, load_autoencoder, tiny_autoencoder_kl
from raid.cli.main import main
from raid.pipelines.reconstruction import FAILURES_FILE
from raid.store.store import FeatureStore
from raid.pipelines.train import fit_store
from raid.primitives import synthetic

# (height, width): odd sides (padded to the factor 8 and cropped back) and one image
# smaller than the 56-pixel patch (resized whole by the patch policy).
PHOTOS = {"a.jpg": (64, 64), "b.png": (60, 72), "sub/c.png": (61, 75), "sub/d.jpg": (64, 64),
          "sub/deep/e.png": (40, 50)}
BAD = ["empty.jpg", "truncated.jpg", "html_as.jpg"]
RUN = ["--accelerator", "cpu", "--num-workers", "0"]


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    # num_blocks=4: spatial factor 8, like the SD VAE, so odd sides need padding.
    tiny_autoencoder_kl(1, num_blocks=4).save_pretrained(root / "vae-one")
    tiny_autoencoder_kl(2, num_blocks=4).save_pretrained(root / "vae-two")
    return {"vae1": root / "vae-one", "vae2": root / "vae-two"}


def make_photos(folder: Path, seed: int = 0) -> dict[str, np.ndarray]:
    """Textured synthetic photos at `PHOTOS` (a random decoder's output then has structure,
    and the texture-rich patch has a clear choice); returns the pixels each file holds."""
    return synthetic.write_images(folder, PHOTOS, seed=seed)


def read_png(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        assert im.format == "PNG" and im.mode == "RGB"
        return np.asarray(im)


def rows(store: Path) -> dict[str, tuple[np.ndarray, int, str]]:
    with FeatureStore(store) as fs:
        r = fs.read()
    return {k: (f, int(l), g) for k, f, l, g in zip(r.keys, r.features, r.labels, r.groups)}


# --------------------------------------------------------------------------- reconstruct

@pytest.mark.slow
def test_reconstruct_end_to_end(tmp_path: Path, models, capsys):
    bad_dir = require_shared("bad-images")
    src = tmp_path / "in"
    photos = make_photos(src)
    for name in BAD:
        shutil.copy(bad_dir / name, src / name)
    shutil.copy(src / "a.jpg", src / "sub" / "x.jpg")  # x.jpg and x.png -> x.png: collision
    Image.fromarray(photos["a.jpg"]).save(src / "sub" / "x.png")
    (src / "notes.txt").write_text("not an image")
    out = tmp_path / "out"
    vae = ["--vae", str(models["vae1"]), "--input", str(src)]

    # exit code 1: finished, but the broken files failed (each named)
    assert main(["reconstruct", *vae, "--output", str(out), "--seed", "3",
                 "--batch-size", "2", *RUN]) == 1
    text = capsys.readouterr().out
    assert f"{len(PHOTOS)} written, 0 already present, {len(BAD)} failed" in text
    for name in BAD:
        assert f"failed {name}:" in text
    assert "collision sub/x.png: sub/x.jpg, sub/x.png" in text
    assert "1 skipped" in text
    for key, (h, w) in PHOTOS.items():
        image = read_png(out / Path(key).with_suffix(".png"))
        assert image.shape == (h, w, 3)  # odd sizes come back at their size
        assert np.abs(image.astype(int) - photos[key]).mean() > 1  # really reconstructed
    assert not (out / "sub" / "x.png").exists()
    assert sorted(p.name for p in out.rglob("*") if p.is_file()) == sorted(
        [Path(k).with_suffix(".png").name for k in PHOTOS] + [FAILURES_FILE])
    record = json.loads((out / FAILURES_FILE).read_text())
    assert sorted(record["failed"]) == sorted(BAD)
    assert record["collisions"] == {"sub/x.png": ["sub/x.jpg", "sub/x.png"]}

    # The same seed gives the same images; another seed does not. Another batch size
    # draws the same noise, but float convolutions over other batch shapes may round
    # differently, so a floor can flip by one level on a few pixels.
    again, rebatched, other = tmp_path / "again", tmp_path / "rebatched", tmp_path / "other"
    assert main(["reconstruct", *vae, "--output", str(again), "--seed", "3",
                 "--batch-size", "2", *RUN]) == 1
    assert main(["reconstruct", *vae, "--output", str(rebatched), "--seed", "3",
                 "--batch-size", "1", *RUN]) == 1
    assert main(["reconstruct", *vae, "--output", str(other), "--seed", "4", *RUN]) == 1
    capsys.readouterr()
    for key in PHOTOS:
        name = Path(key).with_suffix(".png")
        assert np.array_equal(read_png(out / name), read_png(again / name)), key
        diff = np.abs(read_png(out / name).astype(int) - read_png(rebatched / name))
        assert diff.max() <= 1 and (diff == 0).mean() > 0.999, key
        assert np.abs(read_png(out / name).astype(int) - read_png(other / name)).mean() > 1

    # A second run keeps every output and only retries the broken files.
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*.png")}
    assert main(["reconstruct", *vae, "--output", str(out), "--seed", "3", *RUN]) == 1
    text = capsys.readouterr().out
    assert f"0 written, {len(PHOTOS)} already present, {len(BAD)} failed" in text
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.png")} == stamps


@pytest.mark.slow
def test_reconstruct_mode_equals_diffusers(tmp_path: Path, models, capsys):
    src = tmp_path / "in"
    photos = make_photos(src, seed=1)
    out = tmp_path / "out"
    assert main(["reconstruct", "--vae", str(models["vae1"]), "--input", str(src),
                 "--output", str(out), "--latent", "mode", "--batch-size", "8", *RUN]) == 0
    vae = load_autoencoder(models["vae1"])
    same = ["a.jpg", "sub/d.jpg"]  # the 64 x 64 images: one batch of the run
    x = torch.from_numpy(np.stack([photos[k] for k in same])).permute(0, 3, 1, 2).contiguous()
    ours = Reconstructor(vae).reconstruct(x, latent="mode").permute(0, 2, 3, 1).numpy()
    with torch.no_grad():  # diffusers' own mode path, quantized as the seed does
        unit = x.float() / 255 * 2 - 1
        decoded = vae.decode(vae.encode(unit).latent_dist.mode()).sample
        ref = torch.floor(torch.clamp(decoded / 2 + 0.5, 0, 1) * 255).to(torch.uint8)
    ref = ref.permute(0, 2, 3, 1).numpy()
    for i, key in enumerate(same):
        written = read_png(out / Path(key).with_suffix(".png"))
        assert np.array_equal(written, ours[i])
        # Float summation order may flip a floor at a level boundary, nothing more.
        diff = np.abs(written.astype(int) - ref[i])
        assert diff.max() <= 1 and (diff == 0).mean() > 0.99


def test_reconstruct_refuses_output_equal_to_input(tmp_path: Path, models, capsys):
    make_photos(tmp_path)
    assert main(["reconstruct", "--vae", str(models["vae1"]), "--input", str(tmp_path),
                 "--output", str(tmp_path), *RUN]) == 2
    assert "output folder is the input folder" in capsys.readouterr().err


# --------------------------------------------------------------------------- build-train

@pytest.mark.slow
def test_build_train_equals_reconstruct_then_extract(tmp_path: Path, models, tiny_aim,
                                                     capsys):
    real = tmp_path / "real"
    make_photos(real, seed=2)
    bad_dir = require_shared("bad-images")
    shutil.copy(bad_dir / "truncated.jpg", real / "truncated.jpg")
    store = tmp_path / "train.h5"
    common = [*aim_args(tiny_aim), *RUN, "--batch-size", "2", "--seed", "7"]
    build = ["build-train", "--real", str(real), "--vae", str(models["vae1"]),
             "--vae", str(models["vae2"]), "--out", str(store), *common]
    assert main(build) == 1  # finished, one input failed
    text = capsys.readouterr().out
    n = len(PHOTOS)
    assert f"{3 * n} rows added, 0 photos already complete, 1 failed" in text
    assert "failed truncated.jpg: truncated image" in text
    built = rows(store)
    assert len(built) == 3 * n
    for key in PHOTOS:  # one row per photo per autoencoder, grouped by autoencoder name
        png = str(Path(key).with_suffix(".png"))
        assert built[key][1:] == (0, "real")
        assert built[f"vae-one/{png}"][1:] == (1, "vae-one")
        assert built[f"vae-two/{png}"][1:] == (1, "vae-two")
    with FeatureStore(store) as fs:
        prov = fs.provenance["training_pairs"]
        assert [a["name"] for a in prov["autoencoders"]] == ["vae-one", "vae-two"]
        assert prov["latent"] == "sample" and prov["seed"] == 7 and prov["precision"] == "fp32"
        assert "truncated.jpg" in fs.failures()

    # The offline path: PNGs under OUT/<name>, then extraction of OUT (keys <name>/...).
    offline = tmp_path / "offline"
    assert main(["reconstruct", "--vae", str(models["vae1"]), "--input", str(real),
                 "--output", str(offline / "vae-one"), "--seed", "7", "--batch-size", "2",
                 *RUN]) == 1  # truncated.jpg fails, as in build-train
    assert main(["extract", "--input", str(offline), "--out", str(tmp_path / "recon.h5"),
                 *common]) == 0
    assert main(["extract", "--input", str(real), "--out", str(tmp_path / "real.h5"),
                 *common]) == 1
    capsys.readouterr()
    extracted = {**rows(tmp_path / "recon.h5"), **rows(tmp_path / "real.h5")}
    compared = [k for k in built if not k.startswith("vae-two/")]
    assert sorted(compared) == sorted(extracted)
    for key in compared:
        np.testing.assert_allclose(built[key][0], extracted[key][0], atol=1e-5, err_msg=key)
    # The second autoencoder really differs from the first.
    assert not np.allclose(built["vae-one/a.png"][0], built["vae-two/a.png"][0], atol=1e-3)

    # A second run adds nothing; the store is ready for `raid fit`.
    assert main(build) == 1  # finished, one input failed
    assert f"0 rows added, {n} photos already complete" in capsys.readouterr().out
    assert len(rows(store)) == 3 * n
    summary = fit_store(store, tmp_path / "model.safetensors")
    assert (summary.n_real, summary.n_fake) == (n, 2 * n)
    assert (tmp_path / "model.safetensors").is_file()


def test_build_train_refuses_another_autoencoder_set(tmp_path: Path, models, tiny_aim,
                                                     capsys):
    real = tmp_path / "real"
    make_photos(real, seed=3)
    for name in list(PHOTOS)[1:]:
        (real / name).unlink()
    store = tmp_path / "train.h5"
    args = ["build-train", "--real", str(real), "--out", str(store), *aim_args(tiny_aim), *RUN]
    assert main([*args, "--vae", str(models["vae1"])]) == 0
    assert main([*args, "--vae", str(models["vae2"])]) == 2
    err = capsys.readouterr().err
    assert "training_pairs.autoencoders" in err and str(store) in err


def test_bench_reconstruct_tiny_prints_both_rates(capsys):
    assert main(["bench", "reconstruct", "--tiny", "--n", "2", "--batch-size", "2",
                 "--height", "32", "--width", "40", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "seed-style loop" in out and "RAID Reconstructor" in out
    assert re.search(r"ratio: [\d.]+x", out)
