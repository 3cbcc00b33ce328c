"""RaidDetector: SVM paths against scikit-learn, calibration, scikit-learn conventions,
bad input, and the seed's published features (skipped where ../shared is absent)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import DataConversionWarning, NotFittedError
from sklearn.metrics import roc_auc_score
from sklearn.svm import SVC

from raid.primitives.errors import RaidError, RaidInputError
from raid.svm.detector import RaidDetector

# ---------------------------------------------------------------- fit paths


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
    # libsvm stops within tol=1e-3 of the optimum: kernels equal to ~1e-7 (float32 BLAS
    # here, float64 in SVC) may stop at different points inside it.
    assert np.allclose(det.decision_function(Xt), ref.decision_function(Xt[:, idx]), atol=1e-3)
    for bad in ([0, 0, 1], [0, 20], [-1, 2], [0.5, 1.0], []):
        with pytest.raises(RaidError, match="indices"):
            RaidDetector(indices=np.array(bad), progress=False).fit(X, y)


# ---------------------------------------------------------------- calibration

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
    """Same seed, same model; with n_jobs=2 the next fold's sub-matrix is gathered on
    another thread into a second buffer: the same model as gathering in turn (n_jobs=1)."""
    X, y, _, _ = data
    a = RaidDetector(backend="sklearn", random_state=5, n_jobs=2, progress=False).fit(X, y)
    b = RaidDetector(backend="sklearn", random_state=5, progress=False).fit(X, y)
    c = RaidDetector(backend="sklearn", random_state=6, progress=False).fit(X, y)
    serial = RaidDetector(backend="sklearn", random_state=5, n_jobs=1, progress=False).fit(X, y)
    assert (a.platt_a_, a.platt_b_) == (b.platt_a_, b.platt_b_)
    assert (a.platt_a_, a.platt_b_) == (serial.platt_a_, serial.platt_b_)
    assert np.array_equal(a.dual_coef_, serial.dual_coef_)
    assert (a.platt_a_, a.platt_b_) != (c.platt_a_, c.platt_b_)


# ---------------------------------------------------------------- scikit-learn conventions

def test_parameters_are_stored_unchecked_and_clone():
    """__init__ only stores (validation happens in fit), so clone and set_params work on
    any value; get_params lists every __init__ parameter."""
    idx = np.array([3, 1])
    det = RaidDetector(C=-5, gamma="nonsense", indices=idx, backend="thundersvm", threshold=2)
    assert det.get_params()["C"] == -5 and det.get_params()["backend"] == "thundersvm"
    twin = clone(det)
    assert twin.get_params()["gamma"] == "nonsense"
    assert np.array_equal(twin.indices, idx)
    assert not hasattr(twin, "classes_")
    assert set(det.get_params()) >= {"C", "gamma", "indices", "backend", "cv_folds",
                                     "random_state", "tol", "threshold", "n_jobs"}
    with pytest.raises(ValueError, match="Invalid parameter"):
        det.set_params(kernel="linear")


def test_not_fitted_error_before_fit(data, tmp_path):
    _, _, Xt, _ = data
    det = RaidDetector()
    for call in (det.predict, det.predict_proba, det.decision_function):
        with pytest.raises(NotFittedError, match="not fitted"):
            call(Xt)
    with pytest.raises(RaidError, match="not fitted"):  # the CLI's one-line error too
        det.save(tmp_path / "m")
    assert list(tmp_path.iterdir()) == []


def test_input_errors_are_value_errors(data):
    X, y, _, _ = data
    det = RaidDetector(backend="sklearn", progress=False)
    for bad_X, bad_y in ((X[:, :0], y), (X, y[:-1]), (X, np.full(len(y), 0.5))):
        with pytest.raises(ValueError) as err:
            det.fit(bad_X, bad_y)
        assert isinstance(err.value, RaidInputError) and isinstance(err.value, RaidError)


def test_array_likes_and_dtypes_give_the_same_model(data):
    """What the label-bound scikit-learn checks test, with RAID's 0/1 labels: lists,
    float64, int and object arrays, read-only input, boolean and column-vector labels."""
    X, y, Xt, _ = data
    Xr = np.round(X * 4)  # exactly representable in every dtype below
    ref = RaidDetector(backend="sklearn", progress=False).fit(Xr, y)
    ro = Xr.copy()
    ro.flags.writeable = False
    variants = [(Xr.tolist(), y.tolist()), (Xr.astype(np.float64), y),
                (Xr.astype(np.int32), y.astype(np.float64)), (Xr.astype(object), y),
                (ro, y.astype(bool))]
    for Xv, yv in variants:
        det = RaidDetector(backend="sklearn", progress=False).fit(Xv, yv)
        assert np.array_equal(det.dual_coef_, ref.dual_coef_)
        assert np.array_equal(det.decision_function(Xt.tolist()), ref.decision_function(Xt))
    with pytest.warns(DataConversionWarning):
        col = RaidDetector(backend="sklearn", progress=False).fit(Xr, y[:, None])
    assert np.array_equal(col.dual_coef_, ref.dual_coef_)


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
    # A store's unknown rows (label -1) are never trained on as a class.
    with pytest.raises(RaidError, match=r"labels must be 0 \(real\) or 1 \(generated\)"):
        det.fit(X, np.where(np.arange(len(y)) % 7 == 0, -1, y))
    with pytest.raises(RaidError, match="requires y"):
        det.fit(X, None)
    for name, bad in (("C", dict(C=0)), ("C", dict(C="1")), ("cv_folds", dict(cv_folds=1)),
                      ("cv_folds", dict(cv_folds=200)), ("threshold", dict(threshold=1.0)),
                      ("threshold", dict(threshold=True))):
        with pytest.raises(RaidInputError, match=name):
            RaidDetector(backend="sklearn", progress=False, **bad).fit(X, y)


def test_bad_scoring_input(fitted, data):
    _, _, Xt, _ = data
    with pytest.raises(RaidError, match="X has 19 features, but RaidDetector is expecting 20"):
        fitted.predict_proba(Xt[:, :19])
    bad = Xt.copy()
    bad[0, 0] = np.nan
    with pytest.raises(RaidError, match="NaN or infinite features in 1 of"):
        fitted.decision_function(bad)
    with pytest.raises(RaidError, match="empty"):
        fitted.predict(Xt[:0])
    with pytest.raises(RaidError, match="not fitted"):
        RaidDetector().predict(Xt)
    from scipy.sparse import csr_matrix
    with pytest.raises(RaidError, match="sparse input is not supported"):
        fitted.predict(csr_matrix(Xt))


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


@pytest.mark.slow
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


@pytest.mark.slow
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
