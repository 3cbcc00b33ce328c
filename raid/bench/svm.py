"""`raid bench svm`: RAID's SVM against plain scikit-learn SVC, measured in one run.

Both sides train on the same rows and score the same rows. Plain side:
`SVC(kernel="rbf", C=1, gamma=1/D).fit` and `.predict`; RAID side: `RaidDetector.fit`
(Platt calibration included, so RAID does six SVM fits to the plain side's one) and
`predict_proba`. Accuracy is measured on held-out pairs when --holdout > 0, else on the
scored training rows (the same rows for both sides). RAID's label is P(generated) > 0.5; "agree" is the
fraction of scored rows where the sign of RAID's decision value equals plain SVC's label
(the same SVM, whatever the Platt threshold does).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

HELP = "SVM: RAID's fit and scoring against plain scikit-learn SVC (time ratios, accuracy)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--features", type=Path, default=Path("../shared/seed-features/train"),
                        help="folder of per-image .npy features in 0_real/ and 1_fake/")
    parser.add_argument("--n", type=int, default=None,
                        help="training rows (pairs kept whole, classes balanced); default all")
    parser.add_argument("--predict-n", type=int, default=8000, help="rows to score")
    parser.add_argument("--holdout", type=float, default=0.0,
                        help="fraction of pairs held out for scoring and accuracy; "
                             "0 = score training rows")
    parser.add_argument("--backend", default="all", choices=["all", "sklearn", "cuml"],
                        help="RAID rows to run: all = the CPU backend with the kernel on the "
                             "CPU, plus (when present) on the GPU, plus cuML")
    parser.add_argument("--seed", type=int, default=0, help="seed of the row selection")


def _pairs(names: list[str]) -> np.ndarray:
    """Pair id per row: same file name under 0_real and 1_fake = one pair."""
    _, ids = np.unique(np.array([n.rsplit("/", 1)[-1] for n in names]), return_inverse=True)
    return ids


def _select(ids: np.ndarray, n: int | None, holdout: float, seed: int):
    rng = np.random.default_rng(seed)
    pairs = rng.permutation(np.unique(ids))
    n_test = int(round(len(pairs) * holdout))
    test_pairs, train_pairs = pairs[:n_test], pairs[n_test:]
    if n is not None:
        train_pairs = train_pairs[: max(n // 2, 1)]
    return np.flatnonzero(np.isin(ids, train_pairs)), np.flatnonzero(np.isin(ids, test_pairs))


def _timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def run(args: argparse.Namespace) -> int:
    import torch
    from sklearn.svm import SVC

    from raid.svm.detector import RaidDetector, cuml_available
    from raid.primitives.errors import RaidError
    from raid.store.npyio import read_npy_tree

    tree = read_npy_tree(args.features)
    X, y = tree.features, tree.labels.astype(np.int64)
    train, test = _select(_pairs(tree.keys), args.n, args.holdout, args.seed)
    rng = np.random.default_rng(args.seed + 1)
    pool = test if len(test) else train
    score = np.sort(rng.choice(pool, min(args.predict_n, len(pool)), replace=False))
    Xtr, ytr, Xsc, ysc = X[train], y[train], X[score], y[score]
    where = "held-out" if len(test) else "training"
    print(f"{len(Xtr)} x {Xtr.shape[1]} training rows, {len(Xsc)} {where} rows scored, "
          f"torch threads {torch.get_num_threads()}")

    plain = SVC(kernel="rbf", C=1.0, gamma=1.0 / X.shape[1])
    _, plain_fit = _timed(lambda: plain.fit(Xtr, ytr))
    plain_pred, plain_score = _timed(lambda: plain.predict(Xsc))
    rows = [("plain sklearn SVC", plain_fit, plain_score, (plain_pred == ysc).mean(), 1.0)]

    configs = []
    if args.backend in ("all", "sklearn"):
        configs.append(("RAID sklearn, CPU kernel", dict(backend="sklearn", device="cpu")))
        if torch.cuda.is_available():
            configs.append(("RAID sklearn, GPU kernel", dict(backend="sklearn", device="cuda")))
    if args.backend in ("all", "cuml"):
        if cuml_available():
            configs.append(("RAID cuml", dict(backend="cuml", device="cuda")))
        elif args.backend == "cuml":
            raise RaidError("--backend cuml needs cuML and a CUDA device")
    for name, params in configs:
        det = RaidDetector(**params)
        _, fit_s = _timed(lambda: det.fit(Xtr, ytr))
        proba, score_s = _timed(lambda: det.predict_proba(Xsc))
        pred = (proba[:, 1] > 0.5).astype(np.int64)
        same_side = (det.decision_function(Xsc) > 0) == (plain_pred == 1)
        rows.append((name, fit_s, score_s, (pred == ysc).mean(), same_side.mean()))

    print(f"\n{'':28s} {'fit s':>8s} {'x plain':>8s} {'score s':>8s} {'x plain':>8s} "
          f"{'acc (' + where + ')':>16s} {'agree':>7s}")
    for name, fit_s, score_s, acc, agree in rows:
        print(f"{name:28s} {fit_s:8.1f} {plain_fit / fit_s:8.1f} {score_s:8.2f} "
              f"{plain_score / score_s:8.1f} {acc:16.4f} {agree:7.4f}")
    return 0
