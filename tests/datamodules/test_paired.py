"""Tests of datamodules.batches and datamodules.paired: size batches and the paired rows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from datamodules.batches import ImageBatches, header_size, plan_sizes, size_batches
from datamodules.images import discover_images
from datamodules.paired import PairedDataModule
from raid.models.autoencoders import Reconstructor, tiny_autoencoder_kl
from raid.pipelines.reconstruction import FrozenAutoencoder
from raid.primitives.patches import patch_rng, rich_patch, select_rich_patch
from raid.primitives.seeding import stable_seed


def test_size_batches_group_by_size():
    sizes = [(64, 64), (60, 72), None, (64, 64), (60, 72), (64, 64), None]
    batches = size_batches(sizes, 2)
    assert sorted(i for b in batches for i in b) == list(range(len(sizes)))
    for b in batches:
        assert len(b) <= 2 and len({sizes[i] for i in b}) == 1
    assert batches[-1] == [2, 6]  # unknown sizes last, on their own


def test_header_size_reads_without_decoding(tmp_path: Path):
    Image.new("RGB", (75, 61)).save(tmp_path / "a.png")
    data = (tmp_path / "a.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[:60])  # header intact, pixels missing
    (tmp_path / "bad.jpg").write_bytes(b"<html></html>")
    assert header_size(tmp_path / "a.png") == (61, 75)
    assert header_size(tmp_path / "cut.png") == (61, 75)
    assert header_size(tmp_path / "bad.jpg") is None
    assert header_size(tmp_path / "a.png", max_pixels=100) is None


def _folder(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    for key, (h, w) in {"a.png": (64, 64), "b.png": (64, 64), "s/c.png": (60, 70),
                        "s/small.png": (30, 40)}.items():
        (tmp_path / key).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(tmp_path / key)
    (tmp_path / "broken.png").write_bytes(b"not an image at all")
    return tmp_path


def _batches(root: Path, batch_size: int = 8) -> list[dict]:
    planned = plan_sizes(root, discover_images(root).keys)
    keys = [k for k, _, _ in planned]
    sizes = [None if h is None else (h, w) for _, h, w in planned]
    ds = ImageBatches(root, keys, size_batches(sizes, batch_size))
    return [ds[i] for i in range(len(ds))]


@pytest.mark.parametrize("same_position", [False, True])
def test_paired_rows(tmp_path: Path, same_position: bool):
    root = _folder(tmp_path)
    listing = discover_images(root)
    vaes = {"one": tiny_autoencoder_kl(1), "two": tiny_autoencoder_kl(2)}
    dm = PairedDataModule(listing, {n: FrozenAutoencoder(m) for n, m in vaes.items()},
                          seed=3, recon_seed=4, patch_size=32, same_position=same_position)
    out = [dm.pair(b) for b in _batches(root)]
    keys = [k for o in out for k in o["key"]]
    assert sorted(keys) == sorted(
        ["broken.png"] + [k for p in ["a.png", "b.png", "s/c.png", "s/small.png"]
                          for k in (p, f"one/{p}", f"two/{p}")])
    rows = {k: (o["label"][i], o["group"][i], o["patch"][i], o["error"][i])
            for o in out for i, k in enumerate(o["key"])}
    assert rows["broken.png"][3] and rows["a.png"][3] == ""
    assert rows["a.png"][:2] == (0, "real") and rows["one/a.png"][:2] == (1, "one")
    # Each reconstruction is the Reconstructor's, with the noise of (recon seed, image key).
    image = np.array(Image.open(root / "s/c.png"))
    x = torch.from_numpy(image).permute(2, 0, 1)[None]
    recon = Reconstructor(vaes["two"]).reconstruct(
        x, [stable_seed(4, "s/c.png", "noise")])[0].permute(1, 2, 0).contiguous()
    real_pos = select_rich_patch(image, patch_rng(3, "s/c.png"), 32)
    top, left = real_pos if same_position else select_rich_patch(
        recon, patch_rng(3, "two/s/c.png"), 32)
    assert torch.equal(rows["two/s/c.png"][2], recon[top:top + 32, left:left + 32])
    assert torch.equal(rows["s/c.png"][2], torch.from_numpy(
        rich_patch(image, patch_rng(3, "s/c.png"), 32)))
    # Small images are resized whole, like extraction does.
    small = np.asarray(Image.open(root / "s/small.png"))
    assert torch.equal(rows["s/small.png"][2],
                       torch.from_numpy(rich_patch(small, patch_rng(3, "s/small.png"), 32)))


def test_paired_takes_any_reconstruction_function(tmp_path: Path):
    """The data module knows no model: it calls the injected function with each batch of
    one size and the per-image noise seeds of (recon seed, image key)."""
    root = _folder(tmp_path)
    calls = []

    def invert(images: torch.Tensor, seeds: list[int]) -> torch.Tensor:
        calls.append((tuple(images.shape), list(seeds)))
        return 255 - images

    dm = PairedDataModule(discover_images(root), {"inv": invert}, seed=3, recon_seed=4,
                          patch_size=32, same_position=True)
    batches = _batches(root, batch_size=2)
    out = [dm.pair(b) for b in batches]
    rows = {k: (o["patch"][i], o["label"][i], o["group"][i])
            for o in out for i, k in enumerate(o["key"])}
    # one call per decoded batch of one size, with the seeds of its images' keys
    expected = [(tuple(imgs.shape), [stable_seed(4, b["key"][i], "noise") for i in r])
                for b in batches for imgs, r in zip(b["images"], b["rows"])]
    assert calls == expected and len(calls) == 3  # (64, 64) x 2, (60, 70), (30, 40)
    real, fake = rows["s/c.png"], rows["inv/s/c.png"]
    assert fake[1:] == (1, "inv") and real[1:] == (0, "real")
    assert torch.equal(fake[0], 255 - real[0])  # same position: the inverted real patch
    with pytest.raises(ValueError, match="at least one autoencoder"):
        PairedDataModule(discover_images(root), {})
