"""Walking input folders (raid.primitives.layout): special files, symlinked folders, loops
and names that are not UTF-8, with real FIFOs, links and byte names."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from raid.primitives.images import IMAGE_SUFFIXES, load_rgb
from raid.primitives.layout import group_of, label_of, walk
from raid.primitives.synthetic import write_images

SIZES = {"0_real/a.jpg": (32, 32), "1_fake/b.png": (32, 32)}


def test_fifo_named_like_an_image_is_skipped_with_its_reason(tmp_path: Path, caplog):
    write_images(tmp_path, SIZES)
    os.mkfifo(tmp_path / "0_real" / "pipe.jpg")
    with caplog.at_level(logging.WARNING):
        keys, others = walk(tmp_path, IMAGE_SUFFIXES)
    assert keys == ["0_real/a.jpg", "1_fake/b.png"] and others == []
    assert f"skipped {tmp_path / '0_real' / 'pipe.jpg'}: a FIFO, not a regular file" \
        in caplog.text


def test_symlinked_folders_are_followed_and_loops_reported(tmp_path: Path, caplog):
    root, elsewhere = tmp_path / "root", tmp_path / "elsewhere"
    write_images(root, SIZES)
    write_images(elsewhere, {"c.jpg": (32, 32)})
    (root / "linked").symlink_to(elsewhere, target_is_directory=True)
    (root / "0_real" / "loop").symlink_to("..", target_is_directory=True)
    (root / "1_fake" / "file_link.png").symlink_to(root / "1_fake" / "b.png")
    with caplog.at_level(logging.WARNING):
        keys, _ = walk(root, IMAGE_SUFFIXES)
    assert keys == ["0_real/a.jpg", "1_fake/b.png", "1_fake/file_link.png", "linked/c.jpg"]
    assert "0_real/loop: symlinked folder loops back to a folder above it" in caplog.text
    assert load_rgb(root / "linked/c.jpg").shape == (32, 32, 3)


def test_non_utf8_names_keep_their_bytes(tmp_path: Path):
    write_images(tmp_path, SIZES)
    raw = os.fsencode(tmp_path / "0_real") + b"/caf\xe9.jpg"
    os.link(os.fsencode(tmp_path / "0_real" / "a.jpg"), raw)
    keys, _ = walk(tmp_path, IMAGE_SUFFIXES)
    assert len(keys) == 3
    key = keys[1]
    assert os.fsencode(key) == b"0_real/caf\xe9.jpg"
    assert label_of(key) == 0 and group_of(key, tmp_path) == tmp_path.name
    assert load_rgb(tmp_path / key).shape == (32, 32, 3)  # the key opens the file
