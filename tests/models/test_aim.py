"""AIM v1 + attention probe: key layout, configs, loading, and the forward pass checked
against an independent straightforward re-implementation."""

from __future__ import annotations

import hashlib
import math
import pickle
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from raid.models.aim import (AimConfig, build_aim, checkpoint_digest, load_aim, load_config,
                      random_aim, save_official_checkpoint)
from raid.primitives.errors import RaidError



@pytest.fixture()
def tiny(tiny_cfg: AimConfig):
    return random_aim(tiny_cfg, seed=3)


def images(cfg: AimConfig, n: int = 3, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, cfg.image_size, cfg.image_size, generator=g)


# --------------------------------------------------------------------------- layout


def reference_3b_layout() -> dict[str, tuple[int, ...]]:
    """Keys and shapes of Apple's AIM-3B attention-probe checkpoints, from the reference."""
    d = 3072
    keys = {
        "preprocessor.patchifier.proj.weight": (d, 3, 14, 14),
        "preprocessor.patchifier.proj.bias": (d,),
        "preprocessor.patchifier.norm.weight": (d,),
        "preprocessor.patchifier.norm.bias": (d,),
        "trunk.post_trunk_norm.weight": (d,),
        "trunk.post_trunk_norm.bias": (d,),
        "head.cls_token": (1, 1, d),
        "head.k.weight": (d, d),
        "head.v.weight": (d, d),
        "head.linear.weight": (1000, d),
        "head.bn.running_mean": (d,),
        "head.bn.running_var": (d,),
        "head.bn.num_batches_tracked": (),
    }
    for i in range(24):
        p = f"trunk.blocks.{i}."
        keys.update({
            p + "attn.qkv.weight": (9216, d), p + "attn.proj.weight": (d, d),
            p + "norm_1.weight": (d,), p + "norm_1.bias": (d,),
            p + "norm_2.weight": (d,), p + "norm_2.bias": (d,),
            p + "mlp.fc1.weight": (12288, d), p + "mlp.fc2.weight": (d, 12288),
        })
    return keys


def test_aim_3b_has_the_official_key_layout():
    model = build_aim(load_config("3b"), device="meta")
    got = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert got == reference_3b_layout()
    # the position embedding is a buffer, but not a checkpoint key
    assert "preprocessor.pos_embed" in dict(model.named_buffers())
    backbone = sum(v.numel() for k, v in model.state_dict().items() if not k.startswith("head."))
    assert round(backbone / 1e9, 2) == 2.72


# --------------------------------------------------------------------------- forward


def test_position_embedding_formula(tiny: torch.nn.Module):
    cfg = tiny.config
    pos = tiny.preprocessor.pos_embed[0]
    q = cfg.width // 4
    for r, c, k in [(0, 0, 0), (1, 2, 3), (3, 1, 7), (2, 3, q - 1)]:
        w = 1.0 / 10000 ** (k / q)
        t = r * cfg.grid + c
        expected = [math.sin(c * w), math.cos(c * w), math.sin(r * w), math.cos(r * w)]
        got = [pos[t, k], pos[t, q + k], pos[t, 2 * q + k], pos[t, 3 * q + k]]
        assert [float(v) for v in got] == pytest.approx(expected, abs=1e-6)


def _layer_norm(x, w, b, eps=1e-6):
    mean = x.mean(-1, keepdim=True)
    var = ((x - mean) ** 2).mean(-1, keepdim=True)
    return (x - mean) / torch.sqrt(var + eps) * w + b


def _softmax_attention(q, k, v):
    scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
    weights = torch.exp(scores - scores.max(-1, keepdim=True).values)
    return (weights / weights.sum(-1, keepdim=True)) @ v


def reference_features(model, x: torch.Tensor) -> torch.Tensor:
    """Float64, explicit patches, loops over heads, formula-built position embedding."""
    cfg = model.config
    sd = {k: v.double() for k, v in model.state_dict().items() if v.is_floating_point()}
    b, p, g, d, h = x.shape[0], cfg.patch_size, cfg.grid, cfg.width, cfg.heads
    hd = d // h
    x = x.double()
    patches = torch.stack([x[:, :, r * p:(r + 1) * p, c * p:(c + 1) * p].reshape(b, -1)
                           for r in range(g) for c in range(g)], dim=1)
    w = sd["preprocessor.patchifier.proj.weight"].reshape(d, -1)
    tok = patches @ w.T + sd["preprocessor.patchifier.proj.bias"]
    tok = _layer_norm(tok, sd["preprocessor.patchifier.norm.weight"],
                      sd["preprocessor.patchifier.norm.bias"])
    pos = torch.zeros(g * g, d, dtype=torch.float64)
    for r in range(g):
        for c in range(g):
            for k in range(d // 4):
                freq = 10000 ** (-k / (d // 4))
                pos[r * g + c, k] = math.sin(c * freq)
                pos[r * g + c, d // 4 + k] = math.cos(c * freq)
                pos[r * g + c, d // 2 + k] = math.sin(r * freq)
                pos[r * g + c, 3 * d // 4 + k] = math.cos(r * freq)
    tok = tok + pos
    outs = []
    for i in range(cfg.depth):  # every block, as the seed does
        pre = f"trunk.blocks.{i}."
        y = _layer_norm(tok, sd[pre + "norm_1.weight"], sd[pre + "norm_1.bias"])
        qkv = y @ sd[pre + "attn.qkv.weight"].T
        heads = []
        for j in range(h):
            q_, k_, v_ = (qkv[..., s * d + j * hd: s * d + (j + 1) * hd] for s in range(3))
            heads.append(_softmax_attention(q_, k_, v_))
        tok = tok + torch.cat(heads, -1) @ sd[pre + "attn.proj.weight"].T
        y = _layer_norm(tok, sd[pre + "norm_2.weight"], sd[pre + "norm_2.bias"])
        y = y @ sd[pre + "mlp.fc1.weight"].T
        y = 0.5 * y * (1 + torch.erf(y / math.sqrt(2)))
        tok = tok + y @ sd[pre + "mlp.fc2.weight"].T
        outs.append(tok)
    feats = sum(outs[i] for i in cfg.probe_layers) / len(cfg.probe_layers)
    feats = (feats - sd["head.bn.running_mean"]) / torch.sqrt(sd["head.bn.running_var"] + 1e-6)
    k_all, v_all = feats @ sd["head.k.weight"].T, feats @ sd["head.v.weight"].T
    query = sd["head.cls_token"][0, 0]
    pooled = []
    for j in range(h):
        sl = slice(j * hd, (j + 1) * hd)
        pooled.append(_softmax_attention(query[sl].expand(b, 1, hd), k_all[..., sl],
                                         v_all[..., sl])[:, 0])
    return torch.cat(pooled, -1)


def test_forward_matches_an_independent_implementation(tiny):
    x = images(tiny.config)
    with torch.no_grad():
        got = tiny(x)
    want = reference_features(tiny, x)
    assert got.shape == (3, 64) and got.dtype == torch.float32
    assert want.abs().max() > 0.1  # a non-trivial feature
    torch.testing.assert_close(got.double(), want, rtol=1e-4, atol=1e-5)


def test_truncated_and_full_depth_runs_agree(tiny):
    x = images(tiny.config)
    with torch.no_grad():
        short = tiny(x)
        full = tiny.features(x, all_blocks=True)
        per_image = torch.cat([tiny(x[i:i + 1]) for i in range(len(x))])
        tiny.train()  # running statistics are used whatever the mode
        trained_mode = tiny(x)
        tiny.eval()
        truncated = tiny.truncate()
        after = truncated(x)
    torch.testing.assert_close(short, full, rtol=0, atol=1e-6)
    torch.testing.assert_close(short, per_image, rtol=1e-5, atol=1e-6)
    assert torch.equal(short, trained_mode)
    assert len(truncated.trunk.blocks) == 3 and truncated.head.linear is None
    assert truncated.trunk.post_trunk_norm is None
    assert torch.equal(short, after)
    with pytest.raises(ValueError):
        truncated.features(x, all_blocks=True)


def test_bf16_autocast_stays_close(tiny):
    x = images(tiny.config, n=4)
    with torch.no_grad():
        ref = tiny(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = tiny(x)
    assert low.shape == ref.shape and torch.isfinite(low).all()
    rel = (low.float() - ref).abs().max() / ref.abs().max()
    assert rel < 0.05, rel


# --------------------------------------------------------------------------- files


@pytest.fixture()
def saved(tiny, tmp_path: Path):
    backbone, head = tmp_path / "backbone.pth", tmp_path / "head.pth"
    save_official_checkpoint(tiny, backbone, head)
    return backbone, head


def test_two_file_round_trip(tiny, saved):
    backbone, head = saved
    assert set(torch.load(head, weights_only=True)) == {
        k for k in tiny.state_dict() if k.startswith("head.")}
    loaded = load_aim(tiny.config, backbone, head)
    assert not loaded.training
    assert not any(p.requires_grad for p in loaded.parameters())
    x = images(tiny.config)
    with torch.no_grad():
        assert torch.equal(loaded(x), tiny(x))
        short = load_aim(tiny.config, backbone, head, truncate=True)
        assert len(short.trunk.blocks) == 3
        assert torch.equal(short(x), tiny(x))
    assert checkpoint_digest(backbone) == hashlib.sha256(backbone.read_bytes()).hexdigest()


def test_merged_pth_safetensors_and_nested(tiny, tmp_path: Path):
    state = {k: v.clone() for k, v in tiny.state_dict().items()}
    x = images(tiny.config)
    with torch.no_grad():
        want = tiny(x)
    torch.save(state, tmp_path / "m.pth")
    save_file(state, str(tmp_path / "m.safetensors"))
    torch.save({"state_dict": state, "epoch": 3}, tmp_path / "nested.pth")
    for name in ("m.pth", "m.safetensors", "nested.pth"):
        with torch.no_grad():
            assert torch.equal(load_aim(tiny.config, tmp_path / name)(x), want), name


def _broken(tiny, tmp_path: Path, edit) -> Path:
    state = dict(tiny.state_dict())
    edit(state)
    path = tmp_path / "edited.pth"
    torch.save(state, path)
    return path


def test_missing_unexpected_and_misshapen_keys(tiny, tmp_path: Path):
    cases = [
        (lambda s: s.pop("trunk.blocks.1.mlp.fc1.weight"), "missing.*trunk.blocks.1.mlp.fc1"),
        (lambda s: s.update(extra_thing=torch.zeros(2)), "unexpected.*extra_thing"),
        (lambda s: s.update({"head.k.weight": torch.zeros(64, 32)}), "shape.*head.k.weight"),
    ]
    for edit, pattern in cases:
        path = _broken(tiny, tmp_path, edit)
        with pytest.raises(RaidError, match=pattern) as info:
            load_aim(tiny.config, path)
        assert str(path) in str(info.value)


def test_non_strict_tolerates_only_unused_parts(tiny, tmp_path: Path):
    x = images(tiny.config)
    path = _broken(tiny, tmp_path, lambda s: (s.pop("head.linear.weight"),
                                              s.pop("trunk.blocks.3.mlp.fc2.weight"),
                                              s.update(extra=torch.zeros(1))))
    with pytest.raises(RaidError, match="missing"):
        load_aim(tiny.config, path)
    with torch.no_grad():
        assert torch.equal(load_aim(tiny.config, path, strict=False)(x), tiny(x))
    path = _broken(tiny, tmp_path, lambda s: s.pop("trunk.blocks.2.norm_1.bias"))
    with pytest.raises(RaidError, match="trunk.blocks.2.norm_1.bias"):
        load_aim(tiny.config, path, strict=False)


def test_same_key_in_both_files(saved, tiny, tmp_path: Path):
    backbone, _ = saved
    with pytest.raises(RaidError, match="both files"):
        load_aim(tiny.config, backbone, backbone)


class _Payload:
    def __reduce__(self):
        return (print, ("code ran",))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_files_that_are_not_checkpoints(tiny, saved, tmp_path: Path):
    png = tmp_path / "image.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(saved[0].read_bytes()[:2000])
    evil = tmp_path / "evil.pth"
    evil.write_bytes(pickle.dumps({"a": _Payload()}))
    evil_zip = tmp_path / "evil_zip.pth"
    torch.save({"a": _Payload()}, evil_zip)
    not_dict = tmp_path / "list.pth"
    torch.save([torch.zeros(1)], not_dict)
    for path in (png, truncated, evil, evil_zip, not_dict, tmp_path / "absent.pth"):
        with pytest.raises(RaidError) as info:
            load_aim(tiny.config, path)
        assert str(path) in str(info.value)
        assert "weights_only=False" not in str(info.value)
    with pytest.raises(RaidError, match="absent"):
        checkpoint_digest(tmp_path / "absent.pth")


@pytest.mark.parametrize("name, content, reason", [
    ("text.pth", b"every word here is text\n", "not a weights file (expected a PyTorch"),
    ("photo.pth", b"\xff\xd8\xff\xe0" + bytes(range(256)) * 2, "not a weights file"),
    ("empty.pth", b"", "empty file, not a weights file"),
    ("zip.pth", b"PK\x03\x04" + bytes(200), "not a readable PyTorch checkpoint (damaged"),
    ("pickle.pth", b"\x80\x02" + bytes(range(40)), "not a readable PyTorch checkpoint"),
    ("eee.pth", b"e" * 40, "not a weights file"),
    ("bad.safetensors", b"hello", "not a readable safetensors file"),
])
def test_a_file_that_is_no_weights_file_gives_one_plain_line(tiny, tmp_path: Path, name,
                                                              content, reason):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(RaidError) as info:
        load_aim(tiny.config, path)
    message = str(info.value)
    assert message.startswith(f"{path}: {reason}"), message
    assert "\n" not in message and "Error" not in message  # no loader internals


def test_pickled_objects_and_truncated_files_are_named_as_such(tiny, saved, tmp_path: Path):
    evil = tmp_path / "evil.pth"
    torch.save({"a": _Payload()}, evil)
    with pytest.raises(RaidError, match="holds Python objects besides tensors; refused"):
        load_aim(tiny.config, evil)
    cut = tmp_path / "cut.pth"
    cut.write_bytes(saved[0].read_bytes()[:2000])
    with pytest.raises(RaidError, match=r"cut.pth: not a readable PyTorch checkpoint \(damaged"):
        load_aim(tiny.config, cut)
