"""AIM sizes: the built-in named sizes (shipped in the package, mirrored in configs/aim/),
custom YAML sizes, and the one-line errors of bad ones."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

import raid
from helpers import SMALL_AIM_YAML

from raid.models.aim import NAMED_SIZES, AimConfig, load_config
from raid.primitives.errors import RaidError

REPO = Path(__file__).resolve().parents[2]



@pytest.mark.parametrize("name, width, depth, heads, first", [
    ("600m", 1536, 24, 12, 14), ("1b", 2048, 24, 16, 12),
    ("3b", 3072, 24, 24, 12), ("7b", 4096, 32, 32, 14)])
def test_named_configs(name, width, depth, heads, first):
    cfg = load_config(name)
    assert (cfg.width, cfg.depth, cfg.heads) == (width, depth, heads)
    assert cfg.probe_layers == tuple(range(first, first + 6))
    assert (cfg.patch_size, cfg.image_size, cfg.num_tokens) == (14, 224, 256)
    assert load_config(f"aim-{name.upper()}") == cfg
    assert load_config(name, probe="last").probe_layers == tuple(range(depth - 6, depth))


def test_custom_yaml(tiny_cfg: AimConfig):
    assert (tiny_cfg.width, tiny_cfg.depth, tiny_cfg.heads) == (64, 4, 4)
    assert tiny_cfg.probe_layers == (1, 2) and tiny_cfg.grid == 4
    assert tiny_cfg.name == "tiny"
    assert load_config(tiny_cfg.source, probe="last").probe_layers == (2, 3)


@pytest.mark.parametrize("text, reason", [
    ("width: [1\n", "YAML"),
    ("- 1\n- 2\n", "mapping"),
    (SMALL_AIM_YAML.replace("heads: 4\n", ""), "heads"),
    (SMALL_AIM_YAML.replace("heads: 4", "heads: 5"), "divisible"),
    (SMALL_AIM_YAML.replace("[1, 2]", "[1, 4]"), "probe layer"),
    (SMALL_AIM_YAML.replace("[1, 2]", "[]"), "probe_layers"),
    (SMALL_AIM_YAML.replace("[1, 2]", "[1, 1]"), "duplicates"),
    (SMALL_AIM_YAML.replace("width: 64", "width: -64"), "width"),
    (SMALL_AIM_YAML.replace("image_size: 56", "image_size: 50"), "multiple"),
    (SMALL_AIM_YAML + "widht: 3\n", "unknown"),
])
def test_bad_yaml_is_a_raid_error(tmp_path: Path, text: str, reason: str):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(RaidError, match=reason) as info:
        load_config(path)
    assert str(path) in str(info.value)


def test_unknown_size_and_missing_file(tmp_path: Path):
    with pytest.raises(RaidError, match="unknown AIM size"):
        load_config("5b")
    with pytest.raises(RaidError, match="no such"):
        load_config(tmp_path / "absent.yaml")
    with pytest.raises(RaidError, match="probe"):
        load_config("3b", probe="middle")




@pytest.mark.parametrize("name", NAMED_SIZES)
def test_named_sizes_come_from_the_package_and_equal_the_configs_mirror(name, tmp_path,
                                                                        monkeypatch):
    monkeypatch.chdir(tmp_path)  # nothing is looked up in the working folder
    built_in = load_config(name)
    assert Path(built_in.source).is_relative_to(Path(raid.__file__).resolve().parent)
    mirror = REPO / "configs" / "aim" / f"aim-{name}.yaml"
    from_mirror = load_config(mirror)
    assert dataclasses.replace(from_mirror, name=built_in.name,
                               source=built_in.source) == built_in
    assert mirror.read_bytes() == Path(built_in.source).read_bytes()


def test_a_yaml_file_named_like_a_size_is_a_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "aim-3b.yaml").write_text(SMALL_AIM_YAML)
    assert load_config("aim-3b.yaml").width == 64
    assert load_config("aim-3b").width == 3072


def test_yaml_syntax_errors_give_line_and_column(tmp_path: Path):
    path = tmp_path / "typo.yaml"
    path.write_text(SMALL_AIM_YAML.replace("heads: 4", "heads 4\n  x: 1"))
    with pytest.raises(RaidError, match=r"line 4, column 4") as info:
        load_config(path)
    assert str(info.value).startswith(f"{path}: not valid YAML")
    path.write_text(SMALL_AIM_YAML + "depth: 5\n")
    with pytest.raises(RaidError, match=r"line 7, column 1: key 'depth' given twice"):
        load_config(path)
