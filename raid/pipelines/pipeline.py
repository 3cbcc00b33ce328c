"""A detector pipeline: a `Featurizer` (AIM, loaded once) and a fitted `RaidDetector`.

    pipe = DetectorPipeline.from_bundle("detector-bundle/", accelerator="cpu")
    preds = pipe.predict(["photo.jpg", png_bytes], keys=[None, "upload.png"])
    probs = pipe.predict_proba([pil_image])          # (n, 2): P(real), P(generated)

Keys seed the patch choice: a path's key is its file name (as `raid detect FILE` gives
it), other inputs take the key given (default "image"). The same bytes under the same key
give the probability `raid detect` gives, to 1e-6.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from raid import __version__
from raid.metrics.evaluation import THRESHOLD, predict_labels
from raid.pipelines.featurizer import ImageInput, Featurizer
from raid.pipelines.provenance import check_provenance
from raid.primitives.errors import RaidError
from raid.primitives.images import DEFAULT_MAX_PIXELS

VERDICTS = ("real", "generated")


@dataclass
class Prediction:
    """One image's outcome. `patch` is (top, left, size) of the scored patch in the decoded
    image; None on error, or when the image was smaller than the patch and used whole."""

    key: str
    p_generated: float | None
    verdict: str | None  # "generated" when p_generated > 0.5, else "real"; None on error
    patch: tuple[int, int, int] | None
    error: str = ""


def check_feature_size(detector: Any, config: Any, model: str | os.PathLike) -> None:
    """One line, before AIM is loaded, when the model's feature size is not the AIM width."""
    if detector.n_features_in_ != config.width:
        raise RaidError(f"feature size differs: the model expects {detector.n_features_in_} "
                        f"features, AIM {config.name} gives {config.width}", model)


class DetectorPipeline:
    """Images in, P(generated) out, with the model loaded once."""

    def __init__(self, featurizer: Featurizer, detector: Any, *, model: str | os.PathLike = "",
                 bundle: str | os.PathLike | None = None, allow_mismatch: bool = False):
        check_feature_size(detector, featurizer.config, model)
        self.featurizer, self.detector = featurizer, detector
        self.model, self.bundle = str(model), None if bundle is None else str(bundle)
        self.mismatches = check_provenance(detector, featurizer.provenance,
                                           featurizer.settings.backbone, model, allow_mismatch)

    @classmethod
    def from_bundle(cls, path: str | os.PathLike, accelerator: str = "cpu",
                    batch_size: int = 32, max_pixels: int | None = DEFAULT_MAX_PIXELS,
                    workers: int = 0, allow_mismatch: bool = False) -> "DetectorPipeline":
        """Load a bundle folder (`raid.pipelines.bundle`): its model file, its AIM size and
        checkpoints (digests verified)."""
        from raid.pipelines.bundle import load_bundle

        b = load_bundle(path)
        return cls.from_files(b.model, b.arch, b.backbone, b.head, probe=b.probe, seed=b.seed,
                              precision=b.precision, accelerator=accelerator,
                              batch_size=batch_size, max_pixels=max_pixels, workers=workers,
                              allow_mismatch=allow_mismatch, bundle=b.path)

    @classmethod
    def from_files(cls, model: str | os.PathLike, arch: str | os.PathLike,
                   backbone: str | os.PathLike, head: str | os.PathLike | None = None, *,
                   probe: str = "best", seed: int = 0, precision: str = "32",
                   accelerator: str = "cpu", batch_size: int = 32,
                   max_pixels: int | None = DEFAULT_MAX_PIXELS, workers: int = 0,
                   allow_mismatch: bool = False,
                   bundle: str | os.PathLike | None = None) -> "DetectorPipeline":
        """A model file and the AIM files given one by one (`raid detect MODEL --arch ...`).
        The model is read first, so a wrong feature size fails before AIM is loaded."""
        from raid.models.aim import load_config
        from raid.svm.detector import RaidDetector

        detector = RaidDetector.load(model)
        check_feature_size(detector, load_config(arch, probe), model)
        featurizer = Featurizer.load(arch, backbone, head, probe=probe, seed=seed,
                                     precision=precision, device=accelerator,
                                     batch_size=batch_size, max_pixels=max_pixels,
                                     workers=workers)
        return cls(featurizer, detector, model=model, bundle=bundle,
                   allow_mismatch=allow_mismatch)

    @property
    def info(self) -> dict:
        """What this pipeline is: AIM size, checkpoint digests, SVM settings, RAID version."""
        f, d = self.featurizer, self.detector
        prov = f.provenance
        return {
            "raid_version": __version__,
            "bundle": self.bundle,
            "model": self.model,
            "aim": dict(prov["aim"]),
            "checkpoints": dict(prov["checkpoints"]),
            "patch": dict(prov["patch"]),
            "precision": prov["precision"],
            "feature_dim": f.dim,
            "device": str(f.device),
            "svm": {"C": d.C, "gamma": float(d.gamma_), "n_support": int(len(d.dual_coef_)),
                    "n_features_in": int(d.n_features_in_), "backend": d.backend_,
                    "indices": None if d.indices_ is None else int(len(d.indices_))},
            "fitted_on": getattr(d, "provenance_", None),
            "threshold": THRESHOLD,
        }

    def predict(self, images: Sequence[ImageInput],
                keys: Sequence[str | None] | None = None) -> list[Prediction]:
        """One `Prediction` per image, in order; a bad image gets its error, never raises."""
        feats = self.featurizer.featurize(images, keys)
        probs = np.full(len(feats.keys), np.nan)
        ok = feats.ok
        if ok.any():
            probs[ok] = self.detector.predict_proba(feats.features[ok])[:, 1]
        labels = predict_labels(np.nan_to_num(probs))
        out = []
        for key, p, label, patch, error in zip(feats.keys, probs, labels, feats.patches,
                                               feats.errors):
            if error:
                out.append(Prediction(key, None, None, None, error))
            else:
                out.append(Prediction(key, float(p), VERDICTS[int(label)], patch))
        return out

    def predict_proba(self, images: Sequence[ImageInput],
                      keys: Sequence[str | None] | None = None) -> np.ndarray:
        """(n, 2) [P(real), P(generated)] per image; RaidError naming the first bad image."""
        feats = self.featurizer.featurize(images, keys)
        for key, error in zip(feats.keys, feats.errors):
            if error:
                raise RaidError(error, key)
        if not feats.keys:
            return np.zeros((0, 2))
        return self.detector.predict_proba(feats.features)
