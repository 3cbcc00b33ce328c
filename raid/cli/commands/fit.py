"""`raid fit`: the detector on the real and generated rows of a feature store,
optionally written as a bundle folder that `raid detect --model` runs on its own."""

from __future__ import annotations

import argparse

from raid.cli import args as a
from raid.primitives.errors import RaidError

NAME = "fit"
HELP = ("fit the detector (RBF SVM with Platt probabilities; the seed's recipe by default) "
        "on the real and generated rows of a feature store; the model records the store's "
        "provenance and which rows it was trained on, and optionally a threshold chosen for "
        "a target false-positive rate on held-out rows")


def add_arguments(p: argparse.ArgumentParser) -> None:
    a.use_formatter(p)
    a.add_input_arguments(p, "STORE", "feature store (.h5) to train on")
    a.add_out_argument(p, "model file to write (.safetensors); optional with --bundle",
                       metavar="MODEL", old=["--output"])
    s = p.add_argument_group("SVM")
    s.add_argument("--backend", choices=["auto", "sklearn", "cuml"], default="auto",
                   help="auto = cuML when it imports and a CUDA device is present, "
                        "else scikit-learn")
    s.add_argument("--C", type=float, default=1.0, help="SVM regularisation")
    s.add_argument("--gamma", type=a.gamma, default="auto",
                   help="RBF gamma: auto (1/n_features, the seed's; default), scale, or a "
                        "positive number")
    s.add_argument("--indices", default=None, metavar="FILE.npy",
                   help=".npy of feature dimensions to use (e.g. important_indices.npy)")
    s.add_argument("--groups", nargs="+", default=None, metavar="GROUP",
                   help="train on these groups only (default: all)")
    s.add_argument("--cv-folds", type=int, default=5, metavar="K",
                   help="stratified folds of the Platt calibration (at least 2; each class "
                        "needs at least K rows)")
    a.add_seed_argument(s, help="seed of the calibration folds")
    t = p.add_argument_group(
        "threshold", "choose the decision threshold on held-out rows instead of 0.5")
    t.add_argument("--target-fpr", type=a.fraction, default=None, metavar="F",
                   help="the highest share of real images called generated, e.g. 0.01; "
                        "needs --calibration-store")
    t.add_argument("--calibration-store", default=None, metavar="HELDOUT.h5",
                   help="held-out feature store (e.g. the test side of `raid split`) whose "
                        "real rows set the threshold")
    b = p.add_argument_group(
        "bundle", "also write a bundle folder (model + bundle.json naming the AIM size and "
        "checkpoints); probe, patch seed and precision come from the store")
    b.add_argument("--bundle", default=None, metavar="DIR", help="bundle folder to write")
    b.add_argument("--copy-checkpoints", action="store_true",
                   help="copy the AIM checkpoints into the bundle (else it names their paths)")
    b.add_argument("--allow-mismatch", action="store_true",
                   help="write the bundle even when its checkpoints differ from those of the "
                        "store's features (warns)")
    a.add_aim_arguments(p, required=False)
    a.add_logging_arguments(p)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    a.apply_logging(args)
    store = a.one_input(args, "feature store")
    if args.out is None and args.bundle is None:
        raise RaidError("give --out MODEL.safetensors and/or --bundle DIR")
    if (args.target_fpr is None) != (args.calibration_store is None):
        raise RaidError("--target-fpr and --calibration-store go together")
    if args.bundle is not None and (not args.arch or not args.backbone):
        raise RaidError("--bundle needs the AIM options --arch and --backbone (and --head)")
    if args.bundle is None and (args.arch or args.backbone or args.head):
        raise RaidError("--arch, --backbone and --head go with --bundle")
    from raid.pipelines.train import fit_store, load_indices

    indices = load_indices(args.indices) if args.indices else None
    out = args.out
    if args.bundle is not None:  # checked before fitting: a refused bundle writes nothing
        from raid.pipelines.bundle import MODEL, check_bundle, settings_of, write_bundle
        from raid.store.store import FeatureStore

        with FeatureStore(store) as fs:
            provenance, dim = fs.provenance, fs.dim
        bundle = dict(arch=args.arch, backbone=args.backbone, head=args.head,
                      allow_mismatch=args.allow_mismatch, **settings_of(provenance, args.probe))
        check_bundle(provenance, dim, store, **bundle)
        out = out or Path(args.bundle) / MODEL
    s = fit_store(store, out, groups=args.groups, C=args.C, gamma=args.gamma,
                  indices=indices, backend=args.backend, random_state=args.seed,
                  cv_folds=args.cv_folds,
                  target_fpr=args.target_fpr, calibration_store=args.calibration_store)
    print(f"fitted on {s.n_real} real + {s.n_fake} generated rows with {s.backend} "
          f"in {s.seconds:.1f} s: {s.n_support} support vectors -> {s.model}")
    if s.calibration is not None:
        c = s.calibration
        print(f"threshold {c['threshold']:.6g} for target FPR {c['target_fpr']:g}: FPR "
              f"{c['fpr']:.4f} on {c['real']} held-out real rows, TPR "
              + ("n/a" if c['tpr'] is None else f"{c['tpr']:.4f}")
              + f" on {c['generated']} generated rows")
    if args.bundle is not None:
        folder = write_bundle(args.bundle, s.model, copy_checkpoints=args.copy_checkpoints,
                              **bundle)
        print(f"bundle -> {folder} (raid detect --model {folder} PHOTO...)")
    return 0
