"""`raid fit`: an RBF SVM detector on the real and generated rows of a feature store,
optionally written as a bundle folder that `raid detect --model` runs on its own."""

from __future__ import annotations

import argparse

from raid.cli.commands.extract import add_model_arguments
from raid.primitives.errors import RaidError

NAME = "fit"
HELP = ("fit the detector (RBF SVM with Platt probabilities; the seed's recipe by default) "
        "on the real and generated rows of a feature store; the model records the store's "
        "provenance")


def _gamma(text: str) -> str | float:
    return text if text in ("auto", "scale") else float(text)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("store", help="feature store (.h5)")
    p.add_argument("--out", default=None,
                   help="model file to write (.safetensors); optional with --bundle")
    p.add_argument("--backend", choices=["auto", "sklearn", "cuml"], default="auto",
                   help="auto = cuML when it imports and a CUDA device is present")
    p.add_argument("--C", type=float, default=1.0, help="SVM regularisation")
    p.add_argument("--gamma", type=_gamma, default="auto",
                   help="RBF gamma: auto (1/n_features, the seed's), scale, or a number")
    p.add_argument("--indices", default=None,
                   help=".npy of feature dimensions to use (e.g. important_indices.npy)")
    p.add_argument("--groups", nargs="+", default=None, help="train on these groups only")
    p.add_argument("--seed", type=int, default=0, help="seed of the calibration folds")
    b = p.add_argument_group(
        "bundle", "also write a bundle folder (model + bundle.json naming the AIM size and "
        "checkpoints); probe, patch seed and precision come from the store")
    b.add_argument("--bundle", default=None, metavar="DIR", help="bundle folder to write")
    b.add_argument("--copy-checkpoints", action="store_true",
                   help="copy the AIM checkpoints into the bundle (else it names their paths)")
    b.add_argument("--allow-mismatch", action="store_true",
                   help="write the bundle even when its checkpoints differ from those of the "
                        "store's features (warns)")
    add_model_arguments(p, required=False)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from raid.pipelines.train import fit_store, load_indices

    if args.out is None and args.bundle is None:
        raise RaidError("give --out MODEL.safetensors and/or --bundle DIR")
    if args.bundle is not None and (not args.arch or not args.backbone):
        raise RaidError("--bundle needs the AIM options --arch and --backbone (and --head)")
    if args.bundle is None and (args.arch or args.backbone or args.head):
        raise RaidError("--arch, --backbone and --head go with --bundle")
    indices = load_indices(args.indices) if args.indices else None
    out = args.out
    if args.bundle is not None:  # checked before fitting: a refused bundle writes nothing
        from raid.pipelines.bundle import MODEL, check_bundle, settings_of, write_bundle
        from raid.store.store import FeatureStore

        with FeatureStore(args.store) as fs:
            provenance, dim = fs.provenance, fs.dim
        bundle = dict(arch=args.arch, backbone=args.backbone, head=args.head,
                      allow_mismatch=args.allow_mismatch, **settings_of(provenance, args.probe))
        check_bundle(provenance, dim, args.store, **bundle)
        out = out or Path(args.bundle) / MODEL
    s = fit_store(args.store, out, groups=args.groups, C=args.C, gamma=args.gamma,
                  indices=indices, backend=args.backend, random_state=args.seed)
    print(f"fitted on {s.n_real} real + {s.n_fake} generated rows with {s.backend} "
          f"in {s.seconds:.1f} s: {s.n_support} support vectors -> {s.model}")
    if args.bundle is not None:
        folder = write_bundle(args.bundle, s.model, copy_checkpoints=args.copy_checkpoints,
                              **bundle)
        print(f"bundle -> {folder} (raid detect --model {folder} PHOTO...)")
    return 0
