"""Tests of raid.models.autoencoders with tiny random diffusers autoencoders saved to tmp_path."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from raid.models.autoencoders import (
    Reconstructor,
    autoencoder_digest,
    autoencoder_name,
    load_autoencoder,
    nonfinite_rows,
    pad_to_multiple,
    reconstruct_seed_style,
    sd_vae_config,
    spatial_factor,
    tiny_autoencoder_kl,
    tiny_autoencoder_tiny,
    tiny_vq_model,
)
from raid.primitives.errors import RaidError

BUILDERS = {"AutoencoderKL": tiny_autoencoder_kl, "AutoencoderTiny": tiny_autoencoder_tiny,
            "VQModel": tiny_vq_model}
WEIGHTS = "diffusion_pytorch_model.safetensors"


def images(n: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, h, w), generator=g, dtype=torch.uint8)


def save_plain(model, folder: Path, **kwargs) -> Path:
    model.save_pretrained(folder, **kwargs)
    return folder


def save_pipeline(model, folder: Path) -> Path:
    """A pipeline-like folder: model_index.json naming the vae, the vae in vae/."""
    folder.mkdir(parents=True)
    (folder / "model_index.json").write_text(json.dumps(
        {"_class_name": "StableDiffusionPipeline", "vae": ["diffusers", type(model).__name__]}))
    model.save_pretrained(folder / "vae")
    return folder


def same_weights(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def diffusers_to_uint8(decoded: torch.Tensor) -> torch.Tensor:
    """The seed's quantization, written out here independently of the module."""
    return torch.floor(torch.clamp(decoded / 2 + 0.5, 0, 1) * 255).to(torch.uint8)


# ----------------------------------------------------------------------------- loading

@pytest.mark.parametrize("kind", ["plain", "pipeline"])
@pytest.mark.parametrize("cls_name", list(BUILDERS))
def test_load_both_folder_kinds(tmp_path, cls_name, kind):
    model = BUILDERS[cls_name](seed=3)
    save = save_plain if kind == "plain" else save_pipeline
    folder = save(model, tmp_path / "my-autoencoder")
    loaded = load_autoencoder(folder)
    assert type(loaded).__name__ == cls_name
    assert not loaded.training
    assert not any(p.requires_grad for p in loaded.parameters())
    assert all(p.dtype == torch.float32 for p in loaded.parameters())
    assert same_weights(loaded, model)
    assert autoencoder_name(folder) == "my-autoencoder"


def test_load_dtype_and_name_of_pipeline_vae(tmp_path):
    folder = save_pipeline(tiny_autoencoder_kl(), tmp_path / "stable-diffusion-v1-4")
    assert autoencoder_name(folder / "vae") == "stable-diffusion-v1-4"
    assert autoencoder_name(folder) == "stable-diffusion-v1-4"
    half = load_autoencoder(folder, dtype=torch.bfloat16)
    assert all(p.dtype == torch.bfloat16 for p in half.parameters())


def test_digest_covers_config_and_weights_of_the_model_folder(tmp_path):
    folder = save_pipeline(tiny_autoencoder_kl(seed=1), tmp_path / "pipe")
    vae = folder / "vae"
    # written out independently: sorted "name NUL sha256 LF" lines, hashed
    lines = b"".join(p.name.encode() + b"\0" + hashlib.sha256(p.read_bytes()).hexdigest()
                     .encode() + b"\n" for p in sorted(vae.iterdir()))
    digest = autoencoder_digest(folder)
    assert digest == hashlib.sha256(lines).hexdigest()
    assert autoencoder_digest(vae) == digest
    (vae / "notes.txt").write_text("not part of the model")
    (folder / "model_index.json").write_text("{}")
    assert autoencoder_digest(folder) == digest
    other = save_pipeline(tiny_autoencoder_kl(seed=2), tmp_path / "other")
    assert autoencoder_digest(other) != digest
    with pytest.raises(RaidError, match="no such autoencoder folder"):
        autoencoder_digest(tmp_path / "absent")


def test_load_bin_and_variant(tmp_path):
    model = tiny_autoencoder_kl(seed=5)
    binary = save_plain(model, tmp_path / "bin", safe_serialization=False)
    assert (binary / "diffusion_pytorch_model.bin").is_file()
    assert same_weights(load_autoencoder(binary), model)
    variant = save_plain(model, tmp_path / "variant", variant="fp16")
    assert not (variant / WEIGHTS).exists()
    assert same_weights(load_autoencoder(variant), model)


def _broken_folders(tmp_path: Path):
    good = tiny_autoencoder_kl()
    yield tmp_path / "absent", "no such autoencoder folder"
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    yield a_file, "not a folder"
    (tmp_path / "empty").mkdir()
    yield tmp_path / "empty", "no config.json"
    pipe = tmp_path / "pipe-no-vae"
    pipe.mkdir()
    (pipe / "model_index.json").write_text("{}")
    yield pipe, "no vae/ subfolder"
    (tmp_path / "pipe-empty-vae" / "vae").mkdir(parents=True)
    (tmp_path / "pipe-empty-vae" / "model_index.json").write_text("{}")
    yield tmp_path / "pipe-empty-vae", "vae/ subfolder has no config.json"
    noweights = save_plain(good, tmp_path / "noweights")
    (noweights / WEIGHTS).unlink()
    yield noweights, "no weights"
    unknown = save_plain(good, tmp_path / "unknown")
    cfg = json.loads((unknown / "config.json").read_text())
    cfg["_class_name"] = "UNet2DConditionModel"
    (unknown / "config.json").write_text(json.dumps(cfg))
    yield unknown, "unsupported autoencoder class 'UNet2DConditionModel'"
    badjson = save_plain(good, tmp_path / "badjson")
    (badjson / "config.json").write_text("{not json")
    yield badjson, "unreadable config.json"
    corrupt = save_plain(good, tmp_path / "corrupt")
    (corrupt / WEIGHTS).write_bytes(b"definitely not safetensors" * 10)
    yield corrupt, "cannot load AutoencoderKL weights"
    partial = save_plain(good, tmp_path / "partial")
    tensors = load_file(partial / WEIGHTS)
    del tensors["decoder.conv_out.weight"]
    save_file(tensors, partial / WEIGHTS)
    yield partial, "missing (e.g. decoder.conv_out.weight)"
    mismatch = save_plain(good, tmp_path / "mismatch")
    cfg = json.loads((mismatch / "config.json").read_text())
    cfg["latent_channels"] = 8
    (mismatch / "config.json").write_text(json.dumps(cfg))
    yield mismatch, "size mismatch"


def test_load_errors_say_what_is_missing(tmp_path):
    cases = list(_broken_folders(tmp_path))
    assert len(cases) == 11
    for path, expected in cases:
        with pytest.raises(RaidError) as err:
            load_autoencoder(path)
        assert expected in str(err.value), (path, str(err.value))
        assert str(path) in str(err.value)


# ----------------------------------------------------------------------------- geometry

def test_spatial_factors():
    for build in BUILDERS.values():
        assert spatial_factor(build()) == 2
        assert spatial_factor(build(num_blocks=4)) == 8
    from diffusers import AutoencoderKL

    with torch.device("meta"):  # architecture only: no memory, no init cost
        sd = AutoencoderKL(**sd_vae_config())
    assert spatial_factor(sd) == 8
    assert abs(sum(p.numel() for p in sd.parameters()) / 1e6 - 83.65) < 0.1


def test_pad_to_multiple_reflects_or_replicates():
    x = torch.arange(3 * 5, dtype=torch.float32).reshape(1, 1, 3, 5)
    padded = pad_to_multiple(x, 4)
    assert padded.shape == (1, 1, 4, 8)
    assert torch.equal(padded[..., :3, :5], x)
    assert torch.equal(padded[0, 0, 3, :5], x[0, 0, 1])          # reflected row
    assert torch.equal(padded[0, 0, :3, 5:], x[0, 0, :, [3, 2, 1]])  # reflected columns
    tiny = torch.arange(2 * 3, dtype=torch.float32).reshape(1, 1, 2, 3)
    padded = pad_to_multiple(tiny, 8)  # 6 rows of padding on 2: reflect impossible
    assert padded.shape == (1, 1, 8, 8)
    assert torch.equal(padded[0, 0, 7, :3], tiny[0, 0, 1])
    assert torch.equal(padded[0, 0, 0, 7], tiny[0, 0, 0, 2])
    aligned = torch.zeros(1, 1, 4, 8)
    assert pad_to_multiple(aligned, 4) is aligned


@pytest.mark.parametrize("cls_name", list(BUILDERS))
@pytest.mark.parametrize("size", [(37, 50), (3, 5), (32, 48)])
def test_output_keeps_input_size(cls_name, size):
    rec = Reconstructor(BUILDERS[cls_name](num_blocks=4))
    x = images(2, *size)
    out = rec.reconstruct(x, seeds=[1, 2])
    assert out.dtype == torch.uint8 and out.shape == x.shape


# ----------------------------------------------------------------------------- agreement

@pytest.mark.parametrize("cls_name", list(BUILDERS))
def test_mode_matches_diffusers(cls_name):
    vae = BUILDERS[cls_name](seed=1)
    x = images(3, 32, 48, seed=7)
    out = Reconstructor(vae).reconstruct(x, seeds=[0, 1, 2], latent="mode")
    with torch.no_grad():
        pixels = x.float() / 255 * 2 - 1
        if cls_name == "AutoencoderKL":
            ref = vae.decode(vae.encode(pixels).latent_dist.mode()).sample
        elif cls_name == "AutoencoderTiny":
            ref = vae.decode(vae.encode(pixels).latents).sample
        else:  # VQModel.forward: encode, then decode with codebook quantization
            ref = vae(pixels).sample
    ref = diffusers_to_uint8(ref)
    assert (out.int() - ref.int()).abs().max() <= 1
    # The comparison means something only if the output is not saturated.
    assert len(torch.unique(out)) > 20


def test_sample_matches_diffusers_sampling_with_same_seed():
    vae = tiny_autoencoder_kl(seed=2)
    x = images(1, 16, 24, seed=3)
    seed = 2**62 + 12345  # stable_seed gives 63-bit seeds
    out = Reconstructor(vae).reconstruct(x, seeds=[seed])
    with torch.no_grad():
        dist = vae.encode(x.float() / 255 * 2 - 1).latent_dist
        z = dist.sample(generator=torch.Generator().manual_seed(seed))
        ref = diffusers_to_uint8(vae.decode(z).sample)
    assert (out.int() - ref.int()).abs().max() <= 1


# ----------------------------------------------------------------------------- seeding

def test_sampling_is_seeded_and_batch_independent():
    rec = Reconstructor(tiny_autoencoder_kl(num_blocks=4))
    a, b = images(1, 37, 50, seed=1), images(1, 37, 50, seed=2)
    alone = rec.reconstruct(a, seeds=[11])
    assert torch.equal(alone, rec.reconstruct(a, seeds=[11]))
    batch = rec.reconstruct(torch.cat([b, a]), seeds=[22, 11])
    assert (batch[1].int() - alone[0].int()).abs().max() <= 1  # same up to batched-kernel rounding
    other = rec.reconstruct(a, seeds=[12])
    assert (other.int() - alone.int()).abs().sum() > 0
    mode = rec.reconstruct(a, latent="mode")
    assert (mode.int() - alone.int()).abs().sum() > 0
    assert torch.equal(mode, rec.reconstruct(a, seeds=[99], latent="mode"))


@pytest.mark.parametrize("cls_name", ["AutoencoderTiny", "VQModel"])
def test_no_distribution_means_sample_is_mode(cls_name):
    rec = Reconstructor(BUILDERS[cls_name]())
    assert not rec.has_distribution
    x = images(2, 20, 20)
    assert torch.equal(rec.reconstruct(x, seeds=[1, 2]), rec.reconstruct(x, latent="mode"))
    assert torch.equal(rec.reconstruct(x, seeds=[1, 2]), rec.reconstruct(x, seeds=[3, 4]))


def test_bad_arguments():
    rec = Reconstructor(tiny_autoencoder_kl())
    with pytest.raises(ValueError, match="one seed per image"):
        rec.reconstruct(images(2, 8, 8), seeds=[1])
    with pytest.raises(ValueError, match="one seed per image"):
        rec.reconstruct(images(2, 8, 8))
    with pytest.raises(ValueError, match="uint8"):
        rec.reconstruct(images(1, 8, 8).float(), seeds=[1])
    with pytest.raises(ValueError, match="latent"):
        rec.reconstruct(images(1, 8, 8), seeds=[1], latent="mean")
    with pytest.raises(ValueError, match="precision"):
        Reconstructor(tiny_autoencoder_kl(), precision="fp8")


# ----------------------------------------------------------------------------- precision

def test_nonfinite_rows():
    x = torch.zeros(4, 3, 2, 2)
    x[1, 0, 0, 0] = float("inf")
    x[3, 2, 1, 1] = float("nan")
    assert nonfinite_rows(x).tolist() == [1, 3]
    assert nonfinite_rows(torch.zeros(2, 3)).numel() == 0


def test_reduced_precision_close_to_fp32():
    vae = tiny_autoencoder_kl(seed=4)
    x = images(2, 24, 24, seed=5)
    ref = Reconstructor(vae).reconstruct(x, seeds=[1, 2]).int()
    for precision in ("bf16", "fp16"):
        out = Reconstructor(vae, precision=precision).reconstruct(x, seeds=[1, 2]).int()
        assert (out - ref).abs().float().mean() < 3


def test_fp16_overflow_is_recomputed_in_fp32(caplog):
    vae = tiny_autoencoder_kl(seed=0)
    with torch.no_grad():  # huge first conv: activations overflow fp16 (max 65504), not fp32;
        vae.encoder.conv_in.weight.mul_(1e5)  # the GroupNorm after it rescales them in fp32
        vae.encoder.conv_in.bias.zero_()
    flat = torch.full((1, 3, 16, 16), 128, dtype=torch.uint8)  # ~0 after mapping: no overflow
    busy = images(1, 16, 16, seed=9)
    x = torch.cat([flat, busy])
    rec16, rec32 = Reconstructor(vae, precision="fp16"), Reconstructor(vae)
    # The construction holds: only the busy image overflows in fp16, none in fp32.
    assert nonfinite_rows(rec16.decode_batch(x, [1, 2], "sample", torch.float16)).tolist() == [1]
    assert nonfinite_rows(rec32.decode_batch(x, [1, 2], "sample", torch.float32)).numel() == 0
    with caplog.at_level(logging.WARNING, logger="raid.models.autoencoders"):
        out = rec16.reconstruct(x, seeds=[1, 2])
    assert "1 of 2 reconstructions were not finite in fp16" in caplog.text
    assert torch.equal(out[1], rec32.reconstruct(busy, seeds=[2])[0])
    kept = rec16.reconstruct(flat, seeds=[1])[0]  # the finite image keeps its fp16 result
    assert (out[0].int() - kept.int()).abs().max() <= 2
    assert len(torch.unique(out[1])) > 20


# ----------------------------------------------------------------------------- seed style

def test_seed_style_output_is_smaller_and_matches_for_multiples():
    vae = tiny_autoencoder_kl(seed=6, num_blocks=4)
    odd = images(1, 37, 50, seed=4)[0].permute(1, 2, 0).numpy()
    small = reconstruct_seed_style(vae, odd, torch.Generator().manual_seed(1))
    assert small.dtype == np.uint8 and small.shape == (32, 48, 3)

    # On a multiple of 8 the seed's shared generator, used once, equals a per-image seed of 1.
    x = images(1, 32, 40, seed=5)
    seed_out = reconstruct_seed_style(vae, x[0].permute(1, 2, 0).numpy(),
                                      torch.Generator().manual_seed(1))
    ours = Reconstructor(vae).reconstruct(x, seeds=[1])[0].permute(1, 2, 0).numpy()
    assert np.abs(seed_out.astype(int) - ours.astype(int)).max() <= 1
    # A shared generator moves on: a second image gets other noise than seed 1 would give.
    g = torch.Generator().manual_seed(1)
    first = reconstruct_seed_style(vae, x[0].permute(1, 2, 0).numpy(), g)
    second = reconstruct_seed_style(vae, x[0].permute(1, 2, 0).numpy(), g)
    assert np.array_equal(first, seed_out) and not np.array_equal(first, second)
