"""Held-out bookkeeping: which rows a model was trained on, and a threshold chosen on
held-out rows for a target false-positive rate.

A model records `provenance["training"]`: the row counts, a digest of its sorted training
keys, and each key's 8-byte hash (16 hex digits; a few hundred kB for 12,000 rows), so
`raid evaluate` can say how many evaluated rows it was trained on without the training
store. Keys are store keys (`raid.primitives.keys`): the same image gets the same key in
the stores made from one folder, and `raid split` keeps keys as they are.
"""

from __future__ import annotations

import hashlib
from typing import Iterable

import numpy as np

from raid.primitives.layout import FAKE, REAL


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:16]


def keys_digest(keys: Iterable[str]) -> str:
    h = hashlib.sha256()
    for key in sorted(keys):
        h.update(key.encode("utf-8") + b"\n")
    return h.hexdigest()


def training_record(keys: np.ndarray, labels: np.ndarray) -> dict:
    """What a model records about its training rows."""
    keys = [str(k) for k in keys]
    return {"rows": len(keys), "real": int((labels == REAL).sum()),
            "generated": int((labels == FAKE).sum()), "keys_digest": keys_digest(keys),
            "key_hashes": sorted(key_hash(k) for k in keys)}


def training_overlap(provenance: dict | None, keys: Iterable[str]) -> int | None:
    """How many of `keys` the model (whose provenance this is) was trained on; None when
    the model does not record its training keys."""
    recorded = (provenance or {}).get("training") or {}
    hashes = recorded.get("key_hashes")
    if not isinstance(hashes, list):
        return None
    trained = set(hashes)
    return sum(key_hash(str(k)) in trained for k in keys)


def overlap_message(n: int, total: int, model: str, store: str) -> str:
    return (f"{n} of {total} evaluated rows of {store} were in the training rows of "
            f"{model}: these figures overstate accuracy on unseen images; evaluate on a "
            "held-out store (`raid split`)")


def choose_threshold(real_probs: np.ndarray, target_fpr: float) -> float:
    """The lowest threshold t such that at most floor(target_fpr * n) of the real rows
    have P(generated) > t (images are called generated when P > t)."""
    r = np.sort(np.asarray(real_probs, dtype=np.float64))[::-1]
    if not len(r):
        raise ValueError("no real rows to choose a threshold on")
    k = int(np.floor(target_fpr * len(r) + 1e-9))
    return float(r[min(k, len(r) - 1)]) if k < len(r) else 0.0
