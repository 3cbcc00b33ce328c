"""The model file: round trips, provenance and threshold, the previous format, damage."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest
from svm_helpers import write_v1_model

from raid.primitives.errors import RaidError
from raid.svm.detector import RaidDetector

PROVENANCE = {"extractor": "aim", "aim": {"size": "3b", "backbone_sha256": "ab" * 32},
              "probe": "attention", "patch": {"policy": "rich", "seed": 0},
              "precision": "float32", "feature_dim": 20}


def _header(path):
    data = path.read_bytes()
    size = struct.unpack("<Q", data[:8])[0]
    return data, size, json.loads(data[8:8 + size])


def _rewrite(path, header, body):
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + body)


def test_save_load_round_trip(fitted, data, tmp_path):
    _, _, Xt, _ = data
    path = tmp_path / "sub" / "model.safetensors"
    fitted.save(path)
    assert [p.name for p in path.parent.iterdir()] == ["model.safetensors"]  # no temp left
    assert b"pickle" not in path.read_bytes()[:8]
    loaded = RaidDetector.load(path)
    assert np.array_equal(loaded.predict_proba(Xt), fitted.predict_proba(Xt))
    for attr in ("support_vectors_", "dual_coef_", "support_"):
        assert np.array_equal(getattr(loaded, attr), getattr(fitted, attr))
    assert (loaded.gamma_, loaded.intercept_, loaded.backend_) == (
        fitted.gamma_, fitted.intercept_, fitted.backend_)
    assert loaded.indices_ is None and loaded.C == fitted.C
    assert loaded.provenance_ is None and loaded.threshold_ == 0.5


def test_round_trip_with_indices(data, tmp_path):
    X, y, Xt, _ = data
    det = RaidDetector(indices=np.arange(0, 20, 2), gamma="scale", backend="sklearn",
                       progress=False).fit(X, y)
    det.save(tmp_path / "m")
    loaded = RaidDetector.load(tmp_path / "m")
    assert np.array_equal(loaded.indices_, det.indices_) and loaded.gamma == "scale"
    assert np.array_equal(loaded.predict_proba(Xt), det.predict_proba(Xt))


def test_provenance_round_trip(fitted, tmp_path):
    assert fitted.provenance_ is None  # fit alone knows nothing of the features' origin
    fitted.save(tmp_path / "m", provenance=PROVENANCE)
    loaded = RaidDetector.load(tmp_path / "m")
    assert loaded.provenance_ == PROVENANCE
    assert fitted.provenance_ is None  # save does not change the estimator
    # Saving a loaded model again keeps its provenance unless another is given.
    loaded.save(tmp_path / "again")
    assert RaidDetector.load(tmp_path / "again").provenance_ == PROVENANCE
    loaded.save(tmp_path / "other", provenance={"extractor": "other"})
    assert RaidDetector.load(tmp_path / "other").provenance_ == {"extractor": "other"}


def test_provenance_is_covered_by_the_checksum(fitted, tmp_path):
    p = tmp_path / "m"
    fitted.save(p, provenance=PROVENANCE)
    data, size, header = _header(p)
    meta = json.loads(header["__metadata__"]["raid"])
    assert meta["provenance"] == PROVENANCE and meta["format_version"] == 2
    meta["provenance"]["aim"]["size"] = "7b"
    header["__metadata__"]["raid"] = json.dumps(meta, sort_keys=True)
    _rewrite(p, header, data[8 + size:])
    with pytest.raises(RaidError, match="checksum"):
        RaidDetector.load(p)


def test_bad_provenance_is_refused_and_nothing_written(fitted, tmp_path):
    with pytest.raises(ValueError, match="provenance must be a dict"):
        fitted.save(tmp_path / "a", provenance=["aim"])
    with pytest.raises(RaidError, match="b: cannot write the model's metadata as JSON"):
        fitted.save(tmp_path / "b", provenance={"digest": b"\x00"})
    with pytest.raises(RaidError, match="JSON"):
        fitted.save(tmp_path / "c", provenance={"x": float("nan")})
    assert list(tmp_path.iterdir()) == []


def test_threshold_saved_and_used_by_predict(data, tmp_path):
    X, y, Xt, _ = data
    det = RaidDetector(backend="sklearn", threshold=0.8, progress=False).fit(X, y)
    assert det.threshold_ == 0.8
    p = det.predict_proba(Xt)[:, 1]
    assert np.array_equal(det.predict(Xt), (p > 0.8).astype(int))
    assert 0 < (p > 0.5).sum() - (p > 0.8).sum()  # the threshold matters on this data
    det.threshold_ = 0.3  # a threshold chosen after fitting (e.g. for a target error rate)
    det.save(tmp_path / "m")
    loaded = RaidDetector.load(tmp_path / "m")
    assert loaded.threshold_ == 0.3
    assert np.array_equal(loaded.predict(Xt), (p > 0.3).astype(int))


@pytest.mark.parametrize("indices", [None, np.array([7, 3, 15, 0, 11, 2])])
def test_previous_format_still_loads(data, tmp_path, indices):
    X, y, Xt, _ = data
    det = RaidDetector(backend="sklearn", indices=indices, progress=False).fit(X, y)
    write_v1_model(det, tmp_path / "v1.safetensors")
    old = RaidDetector.load(tmp_path / "v1.safetensors")
    assert old.provenance_ is None and old.threshold_ == 0.5
    assert np.array_equal(old.predict_proba(Xt), det.predict_proba(Xt))
    assert np.array_equal(old.predict(Xt), det.predict(Xt))
    assert old.get_params()["threshold"] == 0.5 and old.solver_ == det.solver_
    # Saved again, it is written in the current format, with provenance if given.
    old.save(tmp_path / "v2.safetensors", provenance=PROVENANCE)
    assert json.loads(_header(tmp_path / "v2.safetensors")[2]["__metadata__"]["raid"])[
        "format_version"] == 2
    assert RaidDetector.load(tmp_path / "v2.safetensors").provenance_ == PROVENANCE


def test_corrupted_files(fitted, tmp_path):
    good = tmp_path / "good.safetensors"
    fitted.save(good)
    data, size, header = _header(good)

    flipped = bytearray(data)
    flipped[-3] ^= 0x01  # one bit of a tensor
    cases = {  # name: (content, expected reason)
        "truncated": (data[:len(data) - 100], "truncated"),
        "short": (data[:5], "only 5 bytes"),
        "tensor_bit": (bytes(flipped), "checksum"),
        "png": (b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4, "not safetensors"),
        "empty": (b"", "only 0 bytes"),
    }
    for name, (blob, reason) in cases.items():
        p = tmp_path / f"{name}.safetensors"
        p.write_bytes(blob)
        with pytest.raises(RaidError, match=f"{name}.safetensors: .*{reason}") as err:
            RaidDetector.load(p)
        assert "\n" not in str(err.value) and err.value.path == str(p)

    # Altered metadata (intercept changed): the checksum covers the metadata too.
    meta = json.loads(header["__metadata__"]["raid"])
    meta["intercept"] += 1.0
    header["__metadata__"]["raid"] = json.dumps(meta, sort_keys=True)
    p = tmp_path / "meta_altered"
    _rewrite(p, header, data[8 + size:])
    with pytest.raises(RaidError, match="meta_altered.*checksum"):
        RaidDetector.load(p)

    # A valid safetensors file that is not a RAID model.
    from safetensors.numpy import save_file
    foreign = tmp_path / "foreign.safetensors"
    save_file({"w": np.zeros((3, 3), np.float32)}, str(foreign))
    with pytest.raises(RaidError, match="foreign.*not a RAID model"):
        RaidDetector.load(foreign)

    with pytest.raises(RaidError, match="missing.*cannot read"):
        RaidDetector.load(tmp_path / "missing.safetensors")


def test_future_format_version_is_refused(fitted, tmp_path):
    from safetensors.numpy import load_file

    from raid.svm.modelfile import digest
    p = tmp_path / "m"
    fitted.save(p)
    data, size, header = _header(p)
    meta = json.loads(header["__metadata__"]["raid"])
    meta["format_version"] = 99
    meta_json = json.dumps(meta, sort_keys=True)
    header["__metadata__"]["raid"] = meta_json
    header["__metadata__"]["sha256"] = digest(load_file(str(p)), meta_json)
    _rewrite(p, header, data[8 + size:])
    with pytest.raises(RaidError, match="version 99"):
        RaidDetector.load(p)


def test_provenance_of_wrong_type_is_refused(fitted, tmp_path):
    """A checksummed file whose provenance is not an object: damaged, not a crash later."""
    from safetensors.numpy import load_file

    from raid.svm.modelfile import digest
    p = tmp_path / "m"
    fitted.save(p)
    data, size, header = _header(p)
    meta = json.loads(header["__metadata__"]["raid"])
    meta["provenance"] = "aim-3b"
    meta_json = json.dumps(meta, sort_keys=True)
    header["__metadata__"]["raid"] = meta_json
    header["__metadata__"]["sha256"] = digest(load_file(str(p)), meta_json)
    _rewrite(p, header, data[8 + size:])
    with pytest.raises(RaidError, match="m: damaged.*provenance"):
        RaidDetector.load(p)


@pytest.mark.slow
def test_scorer_loads_and_scores_without_scikit_learn(fitted, data, tmp_path):
    """`SvmScorer.load` gives the same probabilities as `RaidDetector.load`, in a fresh
    interpreter that never imports scikit-learn (scoring commands skip its import time)."""
    import subprocess
    import sys

    from raid.svm.scorer import SvmScorer
    _, _, Xt, _ = data
    fitted.save(tmp_path / "m", provenance=PROVENANCE)
    np.save(tmp_path / "x.npy", Xt)
    scorer = SvmScorer.load(tmp_path / "m")
    assert not isinstance(scorer, RaidDetector) and scorer.provenance_ == PROVENANCE
    assert np.array_equal(scorer.predict_proba(Xt), fitted.predict_proba(Xt))
    assert np.array_equal(scorer.predict(Xt), fitted.predict(Xt))
    code = ("import sys, numpy as np; from raid.svm.scorer import SvmScorer; "
            f"m = SvmScorer.load({str(tmp_path / 'm')!r}); "
            f"np.save({str(tmp_path / 'p.npy')!r}, m.predict_proba(np.load({str(tmp_path / 'x.npy')!r}))); "
            "print(sorted(k for k in sys.modules if k.split('.')[0] in ('sklearn', 'scipy')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout
    assert np.array_equal(np.load(tmp_path / "p.npy"), fitted.predict_proba(Xt))
    with pytest.raises(RaidError, match="SvmScorer is not fitted"):
        SvmScorer().predict(Xt)
