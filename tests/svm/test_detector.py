"""RaidDetector: SVM paths against scikit-learn, Platt scaling, model files, bad input,
and the seed's published features (skipped where ../shared is absent)."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score
from sklearn.svm import SVC

from raid.svm.detector import RaidDetector, RbfKernel, fit_platt, platt_probability
from raid.primitives.errors import RaidError


def blobs(n: int = 300, d: int = 20, seed: int = 0, shift: float = 0.6):
    """Two overlapping Gaussian classes (float32), so the SVM has margin errors too."""
    rng = np.random.default_rng(seed)
    y = np.repeat([0, 1], n // 2)
    X = rng.normal(size=(n, d)) + shift * y[:, None] * rng.normal(size=d)
    return X.astype(np.float32), y


@pytest.fixture(scope="module")
def data():
    X, y = blobs(400, 20, seed=1)
    return X[:300], y[:300], X[300:], y[300:]


@pytest.fixture(scope="module")
def fitted(data):
    X, y, _, _ = data
    return RaidDetector(backend="sklearn", progress=False).fit(X, y)


# ---------------------------------------------------------------- kernel and scoring

def test_gram_matches_float64_kernel():
    from sklearn.metrics.pairwise import rbf_kernel
    X, _ = blobs(700, 50, seed=2)
    X = X * 3 + 5  # off-centre, larger norms: the centring must absorb this
    gamma = 1 / 50
    K = RbfKernel(gamma, X.mean(0, dtype=np.float64)).gram(X)
    ref = rbf_kernel(X.astype(np.float64), gamma=gamma)
    assert K.dtype == np.float64 and K.flags.c_contiguous
    assert np.array_equal(K, K.T) and np.all(np.diag(K) == 1.0)
    assert np.abs(K - ref).max() < 1e-6


@pytest.mark.parametrize("precompute", [True, False])
def test_fit_matches_sklearn(data, precompute):
    X, y, Xt, _ = data
    det = RaidDetector(backend="sklearn", precompute=precompute, progress=False).fit(X, y)
    ref = SVC(kernel="rbf", C=1.0, gamma=1 / X.shape[1]).fit(X, y)
    assert det.solver_ == ("precomputed" if precompute else "rbf")
    assert det.gamma_ == pytest.approx(1 / 20)
    assert np.array_equal(det.support_, ref.support_)
    assert np.array_equal(det.support_vectors_, ref.support_vectors_)
    assert np.allclose(det.dual_coef_, ref.dual_coef_[0], atol=1e-4)
    assert det.support_vectors_.dtype == np.float32
    dec, dec_ref = det.decision_function(Xt), ref.decision_function(Xt)
    assert np.allclose(dec, dec_ref, atol=1e-4)
    assert np.array_equal(dec > 0, dec_ref > 0)


def test_scoring_matches_sklearn_decision_function(data):
    """The torch scorer alone (plain-path model) against libsvm's own decision values."""
    X, y, Xt, _ = data
    ref = SVC(kernel="rbf", C=2.0, gamma=0.03).fit(X, y)
    kernel = RbfKernel(0.03, ref.support_vectors_.mean(0))
    dec = kernel.decision(Xt, ref.support_vectors_.astype(np.float32), ref.dual_coef_[0],
                          ref.intercept_[0], batch=7)
    assert np.allclose(dec, ref.decision_function(Xt), atol=1e-6)


def test_precomputed_and_plain_paths_agree(data):
    X, y, Xt, _ = data
    a = RaidDetector(backend="sklearn", precompute=True, progress=False).fit(X, y)
    b = RaidDetector(backend="sklearn", precompute=False, progress=False).fit(X, y)
    assert np.array_equal(a.support_, b.support_)
    assert np.allclose(a.dual_coef_, b.dual_coef_, atol=1e-4)
    assert np.allclose(a.predict_proba(Xt), b.predict_proba(Xt), atol=1e-4)


def test_memory_limit_chooses_plain_path(data):
    X, y, _, _ = data
    det = RaidDetector(backend="sklearn", kernel_memory_gb=1e-6, progress=False).fit(X, y)
    assert det.solver_ == "rbf"
    assert RaidDetector(backend="sklearn", progress=False).fit(X, y).solver_ == "precomputed"


def test_gamma_options(data):
    X, y, Xt, _ = data
    scale = RaidDetector(gamma="scale", backend="sklearn", progress=False).fit(X * 4, y)
    ref = SVC(kernel="rbf", gamma="scale").fit(X * 4, y)
    assert scale.gamma_ == pytest.approx(ref._gamma, rel=1e-6)
    assert np.allclose(scale.decision_function(Xt * 4), ref.decision_function(Xt * 4), atol=1e-4)
    num = RaidDetector(gamma=0.2, backend="sklearn", progress=False).fit(X, y)
    assert num.gamma_ == 0.2
    ref = SVC(kernel="rbf", gamma=0.2).fit(X, y)
    assert np.allclose(num.decision_function(Xt), ref.decision_function(Xt), atol=1e-4)
    for bad in ("sometimes", -1.0, 0, float("nan")):
        with pytest.raises(RaidError, match="gamma"):
            RaidDetector(gamma=bad, progress=False).fit(X, y)


def test_indices(data):
    X, y, Xt, _ = data
    idx = np.array([7, 3, 15, 0, 11, 2])
    det = RaidDetector(indices=idx, backend="sklearn", progress=False).fit(X, y)
    ref = SVC(kernel="rbf", gamma=1 / len(idx)).fit(X[:, idx], y)
    assert det.gamma_ == pytest.approx(1 / 6) and det.n_features_in_ == 20
    assert det.support_vectors_.shape[1] == 6
    assert np.array_equal(det.indices_, idx)
    assert np.allclose(det.decision_function(Xt), ref.decision_function(Xt[:, idx]), atol=1e-4)
    for bad in ([0, 0, 1], [0, 20], [-1, 2], [0.5, 1.0], []):
        with pytest.raises(RaidError, match="indices"):
            RaidDetector(indices=np.array(bad), progress=False).fit(X, y)


# ---------------------------------------------------------------- Platt scaling

def test_platt_recovers_known_sigmoid():
    rng = np.random.default_rng(3)
    f = rng.uniform(-3, 3, 40000)
    a_true, b_true = -2.0, 0.5
    y = rng.random(len(f)) < platt_probability(f, a_true, b_true)
    a, b = fit_platt(f, y)
    assert a == pytest.approx(a_true, abs=0.08) and b == pytest.approx(b_true, abs=0.06)


def test_platt_separable_data_matches_direct_minimisation():
    """Perfectly separated values: only the smoothed targets keep A finite. The Newton fit
    must land on the minimum of Platt's loss, checked against scipy's BFGS."""
    from scipy.optimize import minimize
    f = np.concatenate([np.linspace(-5, -1, 50), np.linspace(1, 5, 70)])
    y = (f > 0).astype(int)
    a, b = fit_platt(f, y)
    t = np.where(y == 1, 71 / 72, 1 / 52)

    def loss(ab):
        z = ab[0] * f + ab[1]
        return np.sum(np.logaddexp(0, z) - (1 - t) * z)

    ref = minimize(loss, [0.0, 0.0], method="BFGS", options={"gtol": 1e-10})
    assert np.isfinite([a, b]).all() and a < 0
    assert a == pytest.approx(ref.x[0], abs=1e-4) and b == pytest.approx(ref.x[1], abs=1e-4)
    assert loss([a, b]) <= ref.fun + 1e-9


def test_probabilities_monotone_in_decision(fitted, data):
    _, _, Xt, _ = data
    dec = fitted.decision_function(Xt)
    proba = fitted.predict_proba(Xt)
    assert proba.shape == (len(Xt), 2) and np.allclose(proba.sum(1), 1.0)
    order = np.argsort(dec)
    assert np.all(np.diff(proba[order, 1]) >= 0)
    assert fitted.platt_a_ < 0
    assert np.array_equal(fitted.predict(Xt), (proba[:, 1] > 0.5).astype(int))
    assert np.array_equal(fitted.classes_, [0, 1])


def test_calibration_is_seeded(data):
    X, y, _, _ = data
    a = RaidDetector(backend="sklearn", random_state=5, progress=False).fit(X, y)
    b = RaidDetector(backend="sklearn", random_state=5, progress=False).fit(X, y)
    c = RaidDetector(backend="sklearn", random_state=6, progress=False).fit(X, y)
    serial = RaidDetector(backend="sklearn", random_state=5, n_jobs=1, progress=False).fit(X, y)
    assert (a.platt_a_, a.platt_b_) == (b.platt_a_, b.platt_b_)
    assert (a.platt_a_, a.platt_b_) == (serial.platt_a_, serial.platt_b_)
    assert np.array_equal(a.dual_coef_, serial.dual_coef_)
    assert (a.platt_a_, a.platt_b_) != (c.platt_a_, c.platt_b_)


# ---------------------------------------------------------------- model file

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


def test_round_trip_with_indices(data, tmp_path):
    X, y, Xt, _ = data
    det = RaidDetector(indices=np.arange(0, 20, 2), gamma="scale", backend="sklearn",
                       progress=False).fit(X, y)
    det.save(tmp_path / "m")
    loaded = RaidDetector.load(tmp_path / "m")
    assert np.array_equal(loaded.indices_, det.indices_) and loaded.gamma == "scale"
    assert np.array_equal(loaded.predict_proba(Xt), det.predict_proba(Xt))


def _header(path):
    data = path.read_bytes()
    size = struct.unpack("<Q", data[:8])[0]
    return data, size, json.loads(data[8:8 + size])


def _rewrite(path, header, body):
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + body)


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
    from raid.svm.detector import _digest
    from safetensors.numpy import load_file
    p = tmp_path / "m"
    fitted.save(p)
    data, size, header = _header(p)
    meta = json.loads(header["__metadata__"]["raid"])
    meta["format_version"] = 99
    meta_json = json.dumps(meta, sort_keys=True)
    header["__metadata__"]["raid"] = meta_json
    header["__metadata__"]["sha256"] = _digest(load_file(str(p)), meta_json)
    _rewrite(p, header, data[8 + size:])
    with pytest.raises(RaidError, match="version 99"):
        RaidDetector.load(p)


# ---------------------------------------------------------------- bad input

def test_bad_training_input(data):
    X, y, _, _ = data
    det = RaidDetector(backend="sklearn", progress=False)
    Xn = X.copy()
    Xn[[3, 10, 11], 2] = np.nan
    Xn[20, 0] = np.inf
    with pytest.raises(RaidError, match="NaN or infinite features in 4 of 300 rows"):
        det.fit(Xn, y)
    with pytest.raises(RaidError, match="only real"):
        det.fit(X, np.zeros(len(X)))
    with pytest.raises(RaidError, match="only generated"):
        det.fit(X, np.ones(len(X)))
    with pytest.raises(RaidError, match="empty"):
        det.fit(np.zeros((0, 20), np.float32), np.zeros(0))
    with pytest.raises(RaidError, match="2-D"):
        det.fit(X[0], y[:1])
    with pytest.raises(RaidError, match="labels"):
        det.fit(X, y * 2)
    with pytest.raises(RaidError, match="300 rows but y has 299"):
        det.fit(X, y[:-1])
    with pytest.raises(RaidError, match="backend"):
        RaidDetector(backend="thundersvm").fit(X, y)


def test_bad_scoring_input(fitted, data):
    _, _, Xt, _ = data
    with pytest.raises(RaidError, match="model expects 20 features, got 19"):
        fitted.predict_proba(Xt[:, :19])
    bad = Xt.copy()
    bad[0, 0] = np.nan
    with pytest.raises(RaidError, match="NaN or infinite features in 1 of"):
        fitted.decision_function(bad)
    with pytest.raises(RaidError, match="empty"):
        fitted.predict(Xt[:0])
    with pytest.raises(RaidError, match="not fitted"):
        RaidDetector().predict(Xt)


def test_cuml_backend_refused_without_cuml(data):
    from raid.svm.detector import cuml_available
    if cuml_available():
        pytest.skip("cuML and a GPU are present")
    X, y, _, _ = data
    with pytest.raises(RaidError, match="cuML"):
        RaidDetector(backend="cuml").fit(X, y)
    assert RaidDetector(backend="auto", progress=False).fit(X, y).backend_ == "sklearn"


# ---------------------------------------------------------------- the seed's features

@pytest.fixture(scope="session")
def seed_train(seed_features):
    from raid.store.npyio import read_npy_tree
    tree = read_npy_tree(seed_features / "train")
    names = [k.split("/", 1)[1] for k in tree.keys]
    return tree.features, tree.labels.astype(np.int64), names


@pytest.fixture(scope="session")
def seed_split(seed_train):
    """80/20 split by pair (same file name in 0_real and 1_fake), fixed seed."""
    X, y, names = seed_train
    pairs = np.array(sorted(set(names)))
    test_pairs = set(np.random.default_rng(0).permutation(pairs)[: len(pairs) // 5])
    test = np.array([n in test_pairs for n in names])
    return X[~test], y[~test], X[test], y[test]


@pytest.fixture(scope="session")
def seed_model(seed_split):
    Xtr, ytr, _, _ = seed_split
    return RaidDetector(progress=False).fit(Xtr, ytr)


def test_seed_features_accuracy(seed_split, seed_model, tmp_path):
    _, _, Xte, yte = seed_split
    assert len(Xte) == 2400 and seed_model.backend_ in ("sklearn", "cuml")
    proba = seed_model.predict_proba(Xte)
    acc = float((seed_model.predict(Xte) == yte).mean())
    auc = roc_auc_score(yte, proba[:, 1])
    assert acc >= 0.99, acc
    assert auc >= 0.999, auc
    seed_model.save(tmp_path / "seed.safetensors")
    again = RaidDetector.load(tmp_path / "seed.safetensors")
    assert np.array_equal(again.predict_proba(Xte), proba)


def test_seed_features_match_plain_svc(seed_split):
    """Same decisions as plain SVC(kernel="rbf", C=1, gamma=1/3072). Plain SVC is slow
    here, so both are trained on the same stratified 2,000-row subset of the training
    split and compared on all 2,400 test vectors."""
    Xtr, ytr, Xte, _ = seed_split
    rng = np.random.default_rng(1)
    sub = np.concatenate([rng.choice(np.flatnonzero(ytr == c), 1000, replace=False)
                          for c in (0, 1)])
    det = RaidDetector(backend="sklearn", progress=False).fit(Xtr[sub], ytr[sub])
    ref = SVC(kernel="rbf", C=1.0, gamma=1 / 3072).fit(Xtr[sub], ytr[sub])
    assert det.gamma_ == 1 / 3072
    overlap = len(np.intersect1d(det.support_, ref.support_)) / len(ref.support_)
    assert overlap >= 0.999, overlap
    dec, dec_ref = det.decision_function(Xte), ref.decision_function(Xte)
    assert float(np.mean((dec > 0) == (dec_ref > 0))) >= 0.999
    assert np.abs(dec - dec_ref).max() < 1e-3
