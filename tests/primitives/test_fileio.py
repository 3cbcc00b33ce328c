"""Atomic outputs (raid.primitives.fileio): special files refused, symlinks written through."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from raid.primitives.errors import RaidError
from raid.primitives.fileio import atomic_path, write_bytes, write_text


def _entries(folder: Path) -> list[str]:
    return sorted(os.listdir(folder))


def test_fifo_target_is_refused_in_one_line_and_kept(tmp_path: Path):
    fifo = tmp_path / "out.json"
    os.mkfifo(fifo)
    with pytest.raises(RaidError, match="exists and is a FIFO, not a regular file") as err:
        write_text(fifo, "{}")
    assert "\n" not in str(err.value) and str(fifo) in str(err.value)
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode) and _entries(tmp_path) == ["out.json"]


def test_folder_target_is_refused(tmp_path: Path):
    (tmp_path / "model.raid").mkdir()
    with pytest.raises(RaidError, match="is a folder, not a regular file"):
        write_bytes(tmp_path / "model.raid", b"x")
    assert (tmp_path / "model.raid").is_dir() and _entries(tmp_path) == ["model.raid"]


def test_device_target_is_refused(tmp_path: Path):
    """A link to /dev/null (what `--out /dev/null` names): before, the link was replaced; as
    root with the path itself, the device was replaced by a regular file."""
    link = tmp_path / "report.md"
    link.symlink_to("/dev/null")
    with pytest.raises(RaidError, match="is a character device, not a regular file"):
        write_text(link, "report")
    assert link.is_symlink() and os.readlink(link) == "/dev/null"
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)
    assert _entries(tmp_path) == ["report.md"]


def test_symlinked_target_is_written_through(tmp_path: Path):
    real_dir, link_dir = tmp_path / "real", tmp_path / "links"
    real_dir.mkdir(), link_dir.mkdir()
    real = real_dir / "model.raid"
    real.write_bytes(b"old")
    real.chmod(0o640)
    link = link_dir / "current.raid"
    link.symlink_to(os.path.relpath(real, link_dir))
    seen = []
    with atomic_path(link) as tmp:
        seen.append(tmp.parent)  # the temporary file sits in the target's folder
        tmp.write_bytes(b"new")
    assert seen == [real_dir]
    assert link.is_symlink() and real.read_bytes() == b"new" and link.read_bytes() == b"new"
    assert stat.S_IMODE(real.stat().st_mode) == 0o640  # the replaced file's mode is kept
    assert _entries(real_dir) == ["model.raid"] and _entries(link_dir) == ["current.raid"]


def test_dangling_symlink_creates_its_target(tmp_path: Path):
    link = tmp_path / "out.csv"
    link.symlink_to(tmp_path / "made.csv")
    write_text(link, "a,b\n")
    assert link.is_symlink() and (tmp_path / "made.csv").read_text() == "a,b\n"


def test_regular_files_are_replaced_atomically(tmp_path: Path):
    target = tmp_path / "sub" / "x.txt"
    write_text(target, "one")
    write_text(target, "two")
    assert target.read_text() == "two" and _entries(target.parent) == ["x.txt"]
    with pytest.raises(ValueError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise ValueError("crash")
    assert target.read_text() == "two" and _entries(target.parent) == ["x.txt"]
