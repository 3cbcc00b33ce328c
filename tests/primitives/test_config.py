"""The one YAML reader: its errors name the file, the line and column, unknown and missing
keys; built-in files resolve by name from the package and equal their configs/ mirrors."""

from __future__ import annotations

from pathlib import Path

import pytest

import raid
from raid.primitives.config import (builtin_names, builtin_path, load_yaml,
                                    resolve_config)
from raid.primitives.errors import RaidError

REPO = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, text: str | bytes, name: str = "c.yaml") -> Path:
    path = tmp_path / name
    (path.write_bytes if isinstance(text, bytes) else path.write_text)(text)
    return path


@pytest.mark.parametrize("text, where, problem", [
    ("a: 1\n\tb: 2\n", "line 2, column 1", "cannot start any token"),
    ("a: 1\nb: [1, 2\nc: 3\n", "line 3, column 2", "expected ',' or ']'"),
    ("a: 1\n  b: 2\n", "line 2, column 4", "mapping values are not allowed"),
    ("a: 1\nb: 2\na: 3\n", "line 3, column 1", "key 'a' given twice"),
    ("a: {x: 1, y: 2, x: 3}\n", "line 1, column 17", "key 'x' given twice"),
])
def test_syntax_errors_name_file_line_and_column(tmp_path, text, where, problem):
    path = write(tmp_path, text)
    with pytest.raises(RaidError) as info:
        load_yaml(path)
    message = str(info.value)
    assert message.startswith(f"{path}: not valid YAML: {where}: "), message
    assert problem in message and "\n" not in message


def test_merge_keys_may_repeat_a_key(tmp_path):
    path = write(tmp_path, "base: &b {x: 1, y: 2}\nc:\n  <<: *b\n  x: 3\n")
    assert load_yaml(path)["c"] == {"x": 3, "y": 2}


@pytest.mark.parametrize("text, known, required, message", [
    ("a: 1\nwidht: 2\n", ("a", "width"), (), "unknown key(s) widht; known: a, width"),
    ("a: 1\n", ("a", "b", "c"), ("a", "b", "c"), "missing key(s) b, c"),
    ("- 1\n- 2\n", None, (), "expected a mapping"),
    ("", None, (), "expected a mapping"),
    (b"a: \xff\xfe\n", None, (), "not a text file"),
])
def test_content_errors_are_one_line(tmp_path, text, known, required, message):
    path = write(tmp_path, text)
    with pytest.raises(RaidError) as info:
        load_yaml(path, known=known, required=required)
    text = str(info.value)
    assert text.startswith(f"{path}: ") and "\n" not in text
    assert message in text


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(RaidError, match="no such file"):
        load_yaml(tmp_path / "absent.yaml")
    with pytest.raises(RaidError, match="is a folder"):
        load_yaml(tmp_path)


def test_known_and_required_keys_pass(tmp_path):
    path = write(tmp_path, "width: 3\nname: x\n")
    assert load_yaml(path, known=("width", "name"), required=("width",)) == {
        "width": 3, "name": "x"}


# --------------------------------------------------------------------------- built-ins


def test_built_in_files_live_in_the_package():
    package = Path(raid.__file__).resolve().parent
    assert builtin_path("benchmark/aigcdetect.yaml").is_relative_to(package)
    assert builtin_names("aim") == ["aim-1b", "aim-3b", "aim-600m", "aim-7b"]
    assert builtin_names("benchmark") == ["aigcdetect"]


@pytest.mark.parametrize("kind", ["aim", "benchmark"])
def test_configs_folder_mirrors_the_built_in_files(kind):
    """configs/ is the user-editable copy: the same files, byte for byte."""
    mirror = sorted(p.stem for p in (REPO / "configs" / kind).glob("*.yaml"))
    assert mirror == builtin_names(kind)
    for name in mirror:
        shipped = builtin_path(f"{kind}/{name}.yaml").read_bytes()
        assert (REPO / "configs" / kind / f"{name}.yaml").read_bytes() == shipped, name


def test_resolve_by_name_or_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert resolve_config("aigcdetect", "benchmark") == builtin_path(
        "benchmark/aigcdetect.yaml")
    own = write(tmp_path, "name: mine\ngenerators: [a]\n", "mine.yaml")
    assert resolve_config(own, "benchmark") == own
    assert resolve_config("mine.yaml", "benchmark") == Path("mine.yaml")
    # a file in the working folder that is named like a built-in wins over it
    (tmp_path / "aigcdetect").write_text("name: local\n")
    assert resolve_config("aigcdetect", "benchmark") == Path("aigcdetect")


def test_resolve_errors(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(RaidError, match=r"unknown built-in benchmark config 'aigc' "
                                        r"\(built in: aigcdetect; or give a YAML file\)"):
        resolve_config("aigc", "benchmark")
    with pytest.raises(RaidError, match="absent.yaml: no such file"):
        resolve_config("absent.yaml", "benchmark")
    (tmp_path / "folder").mkdir()
    with pytest.raises(RaidError, match="folder: not a file"):
        resolve_config("folder", "benchmark")
