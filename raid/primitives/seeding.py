"""Per-file seeds: every random choice about a file (its patch, its latent noise, its
perturbation) is seeded from (run seed, file key), so results do not depend on worker
count, order, batch size or device count."""

from __future__ import annotations

import hashlib
import random

from raid.primitives.keys import key_bytes


def stable_seed(seed: int, key: str, purpose: str = "") -> int:
    """A 63-bit seed from the run seed, the file key and what the randomness is for.

    A hash (not Python's `hash`, which is salted per process) keeps it identical across
    processes and machines; `purpose` keeps the patch, noise and perturbation streams apart.
    The key enters as its bytes (`raid.primitives.keys.key_bytes`): the UTF-8 of a valid key,
    the original bytes of a file name that is not UTF-8.
    """
    head = f"{int(seed)}\0{purpose}\0".encode("utf-8")
    digest = hashlib.blake2b(head + key_bytes(key), digest_size=8)
    return int.from_bytes(digest.digest(), "little") >> 1


def file_rng(seed: int, key: str, purpose: str) -> random.Random:
    """A `random.Random` for one file, as the seed's `random` module calls expect."""
    return random.Random(stable_seed(seed, key, purpose))
