"""Helpers of the SVM tests: synthetic two-class data and a model file in the previous
format (version 1, before provenance and threshold), written by hand to its spec."""

from __future__ import annotations

import hashlib
import json

import numpy as np

# The parameters a version-1 file stored (every __init__ parameter of that release
# except `indices`, which travels as a tensor).
V1_PARAMS = {"C": 1.0, "gamma": "auto", "backend": "auto", "cv_folds": 5, "random_state": 0,
             "tol": 1e-3, "kernel_memory_gb": 8.0, "precompute": None, "device": "auto",
             "cache_size": 1024.0, "n_jobs": None, "progress": False}


def blobs(n: int = 300, d: int = 20, seed: int = 0, shift: float = 0.6):
    """Two overlapping Gaussian classes (float32), so the SVM has margin errors too."""
    rng = np.random.default_rng(seed)
    y = np.repeat([0, 1], n // 2)
    X = rng.normal(size=(n, d)) + shift * y[:, None] * rng.normal(size=d)
    return X.astype(np.float32), y


def write_v1_model(det, path, raid_version: str = "0.1.0") -> None:
    """`det`'s fitted arrays in the version-1 layout: tensors support_vectors (float32),
    dual_coef (float64), support (int64) [, indices (int64)]; metadata `format`, `raid`
    (sorted-key JSON) and `sha256` over that JSON and each tensor's name, dtype, shape,
    bytes."""
    from safetensors.numpy import save_file

    tensors = {"support_vectors": det.support_vectors_.astype(np.float32),
               "dual_coef": det.dual_coef_.astype(np.float64),
               "support": det.support_.astype(np.int64)}
    if det.indices_ is not None:
        tensors["indices"] = det.indices_.astype(np.int64)
    params = {k: getattr(det, k) for k in V1_PARAMS}
    meta = {"format": "raid-svm", "format_version": 1, "raid_version": raid_version,
            "params": params, "backend": det.backend_, "solver": det.solver_,
            "n_features_in": int(det.n_features_in_), "gamma": det.gamma_,
            "intercept": det.intercept_, "platt_a": det.platt_a_, "platt_b": det.platt_b_}
    meta_json = json.dumps(meta, sort_keys=True)
    h = hashlib.sha256(meta_json.encode("utf-8"))
    for name in sorted(tensors):
        t = np.ascontiguousarray(tensors[name])
        h.update(f"\0{name}\0{t.dtype.str}\0{t.shape}\0".encode())
        h.update(t.tobytes())
    save_file(tensors, str(path), metadata={"format": "raid-svm", "raid": meta_json,
                                            "sha256": h.hexdigest()})
