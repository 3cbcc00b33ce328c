"""`raid fit`: an RBF SVM detector on the real and generated rows of a feature store."""

from __future__ import annotations

import argparse

from raid.pipelines.train import fit_store, load_indices

NAME = "fit"
HELP = ("fit the detector (RBF SVM with Platt probabilities; the seed's recipe by default) "
        "on the real and generated rows of a feature store")


def _gamma(text: str) -> str | float:
    return text if text in ("auto", "scale") else float(text)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("store", help="feature store (.h5)")
    p.add_argument("--out", required=True, help="model file to write (.safetensors)")
    p.add_argument("--backend", choices=["auto", "sklearn", "cuml"], default="auto",
                   help="auto = cuML when it imports and a CUDA device is present")
    p.add_argument("--C", type=float, default=1.0, help="SVM regularisation")
    p.add_argument("--gamma", type=_gamma, default="auto",
                   help="RBF gamma: auto (1/n_features, the seed's), scale, or a number")
    p.add_argument("--indices", default=None,
                   help=".npy of feature dimensions to use (e.g. important_indices.npy)")
    p.add_argument("--groups", nargs="+", default=None, help="train on these groups only")
    p.add_argument("--seed", type=int, default=0, help="seed of the calibration folds")


def run(args: argparse.Namespace) -> int:
    indices = load_indices(args.indices) if args.indices else None
    s = fit_store(args.store, args.out, groups=args.groups, C=args.C, gamma=args.gamma,
                  indices=indices, backend=args.backend, random_state=args.seed)
    print(f"fitted on {s.n_real} real + {s.n_fake} generated rows with {s.backend} "
          f"in {s.seconds:.1f} s: {s.n_support} support vectors -> {s.model}")
    return 0
