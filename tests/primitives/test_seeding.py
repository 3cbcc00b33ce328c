"""Per-file seeds (raid.primitives.seeding): unchanged for valid keys, defined for any bytes."""

from __future__ import annotations

import hashlib
import os

from raid.primitives.patches import patch_rng
from raid.primitives.seeding import file_rng, stable_seed

VALID = ["a.jpg", "sub/deep/b.PNG", "unicode_名前 é.png", "0_real/x y.webp", ""]


def _seed_before(seed: int, key: str, purpose: str) -> int:
    """The derivation every earlier result was made with (valid UTF-8 keys only)."""
    data = f"{int(seed)}\0{purpose}\0{key}".encode("utf-8")
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little") >> 1


def test_seeds_of_valid_keys_are_unchanged():
    for key in VALID:
        for seed, purpose in [(0, "patch"), (3, "noise"), (-7, "perturb"), (1 << 40, "")]:
            assert stable_seed(seed, key, purpose) == _seed_before(seed, key, purpose)
    assert file_rng(0, "a.jpg", "patch").random() == patch_rng(0, "a.jpg").random()


def test_non_utf8_file_names_get_their_own_seed():
    raw = b"caf\xe9.jpg"  # Latin-1 bytes: not UTF-8
    key = os.fsdecode(raw)  # what os.walk gives: 'caf\udce9.jpg'
    seed = stable_seed(0, key, "patch")  # raised UnicodeEncodeError before
    assert seed == stable_seed(0, key, "patch") and 0 <= seed < 2 ** 63
    assert seed != stable_seed(0, "café.jpg", "patch")  # another file, another seed
    assert seed != stable_seed(0, os.fsdecode(b"caf\xe8.jpg"), "patch")

    from raid.primitives.keys import display_key, key_bytes, key_from_bytes
    assert key_bytes(key) == raw and key_from_bytes(raw) == key
    assert display_key(key) == "caf\\xe9.jpg"
    assert display_key("unicode_名前 é.png") == "unicode_名前 é.png"
    assert display_key("bell\a.jpg") == "bell\\x07.jpg"
    assert stable_seed(0, "\ud800", "x") >= 0  # a lone surrogate not from a file name
