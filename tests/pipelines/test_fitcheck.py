"""`raid fit` refuses, by name and with what to do, features the RBF kernel cannot use and
class sizes the calibration folds cannot split (raid.pipelines.fitcheck)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from raid.cli.main import main
from raid.store.store import StoreWriter


def _store(path: Path, X: np.ndarray, y: np.ndarray) -> Path:
    with StoreWriter(path, X.shape[1], {"extractor": "test"}) as w:
        w.append([f"{i}.jpg" for i in range(len(y))], X.astype(np.float32), y, ["g"] * len(y))
    return path


def _rows(n: int = 200, d: int = 16) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    y = np.arange(n) % 2
    return rng.normal(size=(n, d)) + 0.8 * y[:, None], y


def _fit(tmp_path: Path, capsys, name: str, X, y, *extra: str) -> tuple[int, str]:
    store = _store(tmp_path / f"{name}.h5", X, y)
    code = main(["fit", str(store), "--out", str(tmp_path / f"{name}.safetensors"),
                 "--backend", "sklearn", *extra])
    err = capsys.readouterr().err
    return code, err


@pytest.mark.parametrize("name, scale, needles", [
    ("x1e20", 1e20, ["feature values reach", "overflow", "rescale the features"]),
    ("x1e12", 1e12, ["i.e. 0: every row would be a support vector", "--gamma scale"]),
    ("x1e-6", 1e-6, ["i.e. 1: the rows cannot be told apart", "--gamma scale"]),
])
def test_degenerate_kernel_scales_are_refused_by_name(tmp_path, capsys, name, scale, needles):
    """Before: x1e20 crashed with a ValueError traceback; the others fitted a model that
    scores every image 0.5, without a word."""
    X, y = _rows()
    code, err = _fit(tmp_path, capsys, name, X * scale, y)
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    assert f"{name}.h5: " in err and all(n in err for n in needles), err
    assert not (tmp_path / f"{name}.safetensors").exists()


def test_constant_features_are_refused(tmp_path, capsys):
    X, y = _rows()
    code, err = _fit(tmp_path, capsys, "const", np.ones_like(X), y)
    assert code == 2 and "every one of the 16 features has the same value in all 200 rows" \
        in err and "chance-level" in err, err


def test_gamma_scale_fits_features_of_any_moderate_scale(tmp_path, capsys):
    X, y = _rows()
    code, err = _fit(tmp_path, capsys, "scaled", X * 1e12, y, "--gamma", "scale")
    assert code == 0, err
    code, err = _fit(tmp_path, capsys, "plain", X, y)
    assert code == 0, err


def test_too_few_rows_for_the_folds_names_the_option(tmp_path, capsys):
    """Before: "cv_folds must be an integer between 2 and the smaller class size (3), got
    5", naming no option `raid fit` has."""
    X, y = _rows(6)
    code, err = _fit(tmp_path, capsys, "few", X, y)
    assert code == 2 and "only 3 real rows for 5 calibration folds" in err, err
    assert "lower --cv-folds (2 to 3)" in err
    code, err = _fit(tmp_path, capsys, "few3", X, y, "--cv-folds", "3")
    assert code == 0, err


def test_seed_features_pass_the_scale_check(seed_features):
    from raid.pipelines.fitcheck import check_kernel_scale
    files = sorted((seed_features / "train").glob("*/*.npy"))[::40]
    X = np.stack([np.load(f).reshape(-1) for f in files])
    assert 0.1 < check_kernel_scale(X, "auto", "train") < 10
