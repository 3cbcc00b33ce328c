"""`raid bench svm`: RAID's SVM as a user meets it, against scikit-learn and ThunderSVM.

All sides train on the same rows and score the same rows, in one run:
- RAID, whole commands: `raid fit` and `raid evaluate` run as separate processes
  (`python -m raid.cli ...`) on feature stores written here, timed from start to exit
  (start-up, imports, store reading, the report and its plot included).
- RAID, kernel: `RaidDetector.fit` (Platt calibration included: six SVM fits) and
  `predict_proba`, in this process on arrays already in memory.
- scikit-learn `SVC(kernel="rbf", C=1, gamma=1/D)`: `fit` uncalibrated and `predict` (the
  reference of the goals); with `--peers sklearn-proba` also `SVC(probability=True)`.
- ThunderSVM-CPU with the seed's recipe, `SVC(kernel="rbf", probability=True)` (C = 1,
  gamma 1/D): `fit` and `predict_proba`; skipped, with a line saying so, when
  `thundersvm` does not import (`pip install -e ".[bench]"`).
Peers run on arrays in memory (their imports and data loading are not timed).

Accuracy is measured on held-out pairs when --holdout > 0, else on the scored training
rows. RAID's label is P(generated) > 0.5 (`raid.metrics.metrics.THRESHOLD`); "agree" is the fraction of scored rows where the
sign of RAID's decision value equals plain SVC's label.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HELP = ("SVM: `raid fit` / `raid evaluate` as whole commands and RAID's kernel against "
        "scikit-learn SVC and ThunderSVM-CPU (time ratios, accuracy)")
PEERS = ("sklearn", "sklearn-proba", "thundersvm")
# Goals of the project for the whole commands (printed beside the ratios).
GOALS = {("fit", "sklearn"): 6.0, ("fit", "thundersvm"): 3.0, ("score", "sklearn"): 30.0}


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
                        help="RAID kernel rows: all = the CPU backend with the kernel on the "
                             "CPU, plus (when present) on the GPU, plus cuML")
    parser.add_argument("--peers", nargs="+", choices=PEERS, default=["sklearn", "thundersvm"],
                        help="peers to run: sklearn = plain SVC (uncalibrated), sklearn-proba "
                             "= SVC(probability=True) (about 5x longer), thundersvm = "
                             "ThunderSVM-CPU SVC(probability=True), the seed's classifier")
    parser.add_argument("--peer-timeout", type=float, default=900.0,
                        help="seconds ThunderSVM may run (fit and scoring); beyond it its "
                             "times are reported as lower bounds")
    parser.add_argument("--no-commands", dest="commands", action="store_false",
                        help="skip the whole-command rows (kernel and peers only)")
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


class Row:
    """One side of the comparison: fit and score times (a lower bound where the side ran
    out of time: `*_done` False), accuracy (None when unknown), agreement with SVC."""

    def __init__(self, name: str, fit_s: float, score_s: float, accuracy: float | None,
                 agree: float | None = None, fit_done: bool = True, score_done: bool = True):
        self.name, self.fit_s, self.score_s = name, fit_s, score_s
        self.accuracy, self.agree = accuracy, agree
        self.fit_done, self.score_done = fit_done, score_done


def _write_store(path: Path, tree, idx: np.ndarray) -> None:
    from raid.store.npyio import NPY_PROVENANCE
    from raid.store.store import StoreWriter

    with StoreWriter(path, tree.features.shape[1], NPY_PROVENANCE) as w:
        w.append([tree.keys[i] for i in idx], tree.features[idx], tree.labels[idx],
                 [tree.groups[i] for i in idx])


def _command(args: list[str], cwd: Path) -> float:
    """Run `python -m raid.cli ARGS` as a user would; its wall time from start to exit."""
    from raid.primitives.errors import RaidError

    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "raid.cli", *args], cwd=cwd,
                          capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise RaidError(f"`raid {' '.join(args)}` failed (exit {done.returncode}): "
                        + " / ".join(tail))
    return seconds


def _commands(tree, train: np.ndarray, score: np.ndarray) -> tuple[Row, np.ndarray]:
    """`raid fit` on a store of the training rows, `raid evaluate` on one of the scored
    rows, in a scratch folder removed afterwards. Returns the row and the support indices
    of the model `raid fit` wrote."""
    from raid.svm.detector import RaidDetector

    work = Path(tempfile.mkdtemp(prefix="raid-bench-svm-"))
    try:
        _write_store(work / "train.h5", tree, train)
        _write_store(work / "score.h5", tree, score)
        fit_s = _command(["fit", "train.h5", "--out", "model.safetensors"], work)
        score_s = _command(["evaluate", "model.safetensors", "score.h5", "--out", "report"],
                           work)
        groups = json.loads((work / "report" / "metrics.json").read_text())["groups"]
        support = RaidDetector.load(work / "model.safetensors").support_
    finally:
        shutil.rmtree(work, ignore_errors=True)
    correct = sum(m["accuracy"] * m["n"] for m in groups.values())
    accuracy = correct / sum(m["n"] for m in groups.values())
    return Row("RAID `raid fit` / `raid evaluate`", fit_s, score_s, accuracy), support


# ThunderSVM runs in a child process: its OpenMP solver cannot be stopped from a thread,
# and on a small machine it can run for hours; the child is killed at --peer-timeout.
_THUNDER = """
import json, sys, time
from pathlib import Path
import numpy as np
from thundersvm import SVC
work = Path(sys.argv[1])
X, y, Xs = (np.load(work / f) for f in ("Xtr.npy", "ytr.npy", "Xsc.npy"))
model = SVC(kernel="rbf", C=1.0, gamma=1.0 / X.shape[1], probability=True)
t = time.perf_counter(); model.fit(X, y); fit_s = time.perf_counter() - t
(work / "fit.json").write_text(json.dumps({"fit_s": fit_s}))
t = time.perf_counter(); model.predict_proba(Xs); score_s = time.perf_counter() - t
np.save(work / "pred.npy", np.asarray(model.predict_label).astype(np.int64))
(work / "score.json").write_text(json.dumps({"score_s": score_s}))
"""


def _thundersvm_importable() -> str:
    """"" when `thundersvm` imports here, else why not (checked in a child process: a
    broken binary can fail at load)."""
    done = subprocess.run([sys.executable, "-c", "import thundersvm"], capture_output=True,
                          text=True)
    if done.returncode == 0:
        return ""
    lines = done.stderr.strip().splitlines()
    return lines[-1] if lines else f"exit code {done.returncode}"


def _thunder(Xtr, ytr, Xsc, ysc, timeout: float) -> Row:
    """ThunderSVM-CPU with the seed's recipe, fit then predict_proba, timed in a child
    process; at `timeout` seconds it is stopped and the times become lower bounds."""
    name = "ThunderSVM-CPU SVC(probability=True)"
    work = Path(tempfile.mkdtemp(prefix="raid-bench-thundersvm-"))
    try:
        for file, a in (("Xtr.npy", Xtr), ("ytr.npy", ytr), ("Xsc.npy", Xsc)):
            np.save(work / file, a)
        child = subprocess.Popen([sys.executable, "-c", _THUNDER, str(work)],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        start = time.perf_counter()
        try:
            _, err = child.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            child.kill()
            _, err = child.communicate()
        elapsed = time.perf_counter() - start
        if (work / "score.json").exists():
            fit_s = json.loads((work / "fit.json").read_text())["fit_s"]
            score_s = json.loads((work / "score.json").read_text())["score_s"]
            pred = np.load(work / "pred.npy")
            return Row(name, fit_s, score_s, float((pred == ysc).mean()))
        if (work / "fit.json").exists():
            fit_s = json.loads((work / "fit.json").read_text())["fit_s"]
            return Row(name, fit_s, max(elapsed - fit_s, 0.0), None, score_done=False)
        if child.returncode not in (0, -9) and elapsed < timeout:
            from raid.primitives.errors import RaidError

            raise RaidError("ThunderSVM failed: " + " / ".join(err.strip().splitlines()[-2:]))
        return Row(name, elapsed, float("nan"), None, fit_done=False, score_done=False)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run(args: argparse.Namespace) -> int:
    svm_log = logging.getLogger("raid.svm")
    level = svm_log.level
    svm_log.setLevel(logging.WARNING)  # the kernel rows' fit logs are not the output
    try:
        return _run(args)
    finally:
        svm_log.setLevel(level)


def _run(args: argparse.Namespace) -> int:
    import warnings

    import torch
    from sklearn.svm import SVC

    from raid.metrics.metrics import predict_labels
    from raid.primitives.errors import RaidError
    from raid.store.npyio import read_npy_tree
    from raid.svm.detector import RaidDetector, cuml_available

    tree = read_npy_tree(args.features)
    if len(np.unique(tree.labels)) < 2:
        raise RaidError("needs both real (0_real) and generated (1_fake) features", args.features)
    X, y = tree.features, tree.labels.astype(np.int64)
    train, test = _select(_pairs(tree.keys), args.n, args.holdout, args.seed)
    rng = np.random.default_rng(args.seed + 1)
    pool = test if len(test) else train
    score = np.sort(rng.choice(pool, min(args.predict_n, len(pool)), replace=False))
    Xtr, ytr, Xsc, ysc = X[train], y[train], X[score], y[score]
    where = "held-out" if len(test) else "training"
    from raid.primitives.threads import available_cpus

    cores = available_cpus()
    print(f"{len(Xtr)} x {Xtr.shape[1]} training rows, {len(Xsc)} {where} rows scored; "
          f"{cores} CPU cores, torch threads {torch.get_num_threads()}", flush=True)

    rows: list[Row] = []
    command_support = None
    if args.commands:
        row, command_support = _commands(tree, train, score)
        rows.append(row)

    plain = SVC(kernel="rbf", C=1.0, gamma=1.0 / X.shape[1])
    _, plain_fit = _timed(lambda: plain.fit(Xtr, ytr))
    plain_pred, plain_score = _timed(lambda: plain.predict(Xsc))
    peers = {"sklearn": Row("sklearn SVC (uncalibrated)", plain_fit, plain_score,
                            (plain_pred == ysc).mean(), 1.0)}

    configs = []
    if args.backend in ("all", "sklearn"):
        configs.append(("RAID kernel, sklearn, CPU", dict(backend="sklearn", device="cpu")))
        if torch.cuda.is_available():
            configs.append(("RAID kernel, sklearn, GPU", dict(backend="sklearn", device="cuda")))
    if args.backend in ("all", "cuml"):
        if cuml_available():
            configs.append(("RAID kernel, cuml", dict(backend="cuml", device="cuda")))
        elif args.backend == "cuml":
            raise RaidError("--backend cuml needs cuML and a CUDA device")
    same_model = None
    for name, params in configs:
        det = RaidDetector(progress=False, **params)
        _, fit_s = _timed(lambda: det.fit(Xtr, ytr))
        proba, score_s = _timed(lambda: det.predict_proba(Xsc))
        pred = predict_labels(proba[:, 1])
        same_side = (det.decision_function(Xsc) > 0) == (plain_pred == 1)
        rows.append(Row(name, fit_s, score_s, (pred == ysc).mean(), same_side.mean()))
        if command_support is not None and same_model is None:
            same_model = np.array_equal(command_support, det.support_)

    if "sklearn-proba" in args.peers:
        calibrated = SVC(kernel="rbf", C=1.0, gamma=1.0 / X.shape[1], probability=True,
                         random_state=args.seed)
        with warnings.catch_warnings():  # deprecated in scikit-learn 1.9, still the recipe
            warnings.simplefilter("ignore", FutureWarning)
            _, fit_s = _timed(lambda: calibrated.fit(Xtr, ytr))
        proba, score_s = _timed(lambda: calibrated.predict_proba(Xsc))
        pred = calibrated.classes_[np.argmax(proba, axis=1)]
        peers["sklearn-proba"] = Row("sklearn SVC(probability=True)", fit_s, score_s,
                                     (pred == ysc).mean())
    skipped = ""
    if "thundersvm" in args.peers:
        why = _thundersvm_importable()
        if why:
            skipped = (f"ThunderSVM-CPU skipped: `import thundersvm` failed ({why}); "
                       "pip install -e \".[bench]\" to compare with it")
        else:
            peers["thundersvm"] = _thunder(Xtr, ytr, Xsc, ysc, args.peer_timeout)
    _report(rows, peers, where, skipped, same_model)
    return 0


def _seconds(value: float, done: bool) -> str:
    """4 significant digits (fit times span milliseconds to hours), '> N' for a bound."""
    return f"{value:9.4g}" if done else (f"> {value:7.0f}" if value == value else f"{'–':>9s}")


def _ratio(value: float) -> str:
    """3 significant digits, never in exponent form."""
    if value >= 100:
        return f"{value:.0f}x"
    return f"{value:.3g}x" if value >= 0.001 else f"{value:.6f}x"


def _report(rows: list[Row], peers: dict[str, Row], where: str, skipped: str,
            same_model: bool | None) -> None:
    print(f"\n{'':40s} {'fit s':>9s} {'score s':>9s} {'acc (' + where + ')':>16s} {'agree':>7s}")
    for r in rows + list(peers.values()):
        acc = "n/a" if r.accuracy is None else f"{r.accuracy:.4f}"
        agree = "" if r.agree is None else f"{r.agree:.4f}"
        print(f"{r.name:40s} {_seconds(r.fit_s, r.fit_done)} "
              f"{_seconds(r.score_s, r.score_done)} {acc:>16s} {agree:>7s}")
    if skipped:
        print(skipped)
    for r in peers.values():
        if not (r.fit_done and r.score_done):
            print(f"{r.name} did not finish within --peer-timeout: its times and ratios are "
                  "lower bounds (>)")
    if same_model is not None:
        print(f"`raid fit` wrote the model the kernel row fitted (same support vectors): "
              f"{'yes' if same_model else 'NO'}")
    print("\nratios (peer time / RAID time):")
    for r in rows:
        command = r.name.startswith("RAID `")
        for key, peer in peers.items():
            for what, ours, theirs, done in (("fit", r.fit_s, peer.fit_s, peer.fit_done),
                                             ("score", r.score_s, peer.score_s, peer.score_done)):
                if theirs != theirs:  # never started (NaN)
                    continue
                label = ("`raid fit`" if what == "fit" else "`raid evaluate`") if command \
                    else f"{r.name} {what}"
                goal = GOALS.get((what, key)) if command else None
                note = f"  (goal >= {goal:g}x)" if goal else ""
                ratio = f"{_ratio(theirs / ours):>8s}" if done else f"> {_ratio(theirs / ours)}"
                print(f"  {what:5s} {label + ' vs ' + peer.name:78s} {ratio}{note}")
    ref = peers["sklearn"].accuracy
    for r in rows + [p for k, p in peers.items() if k != "sklearn"]:
        if r.accuracy is not None:
            print(f"  accuracy {r.name} - sklearn SVC: {100 * (r.accuracy - ref):+.2f} points")
