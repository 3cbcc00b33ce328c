"""Does a detector fit these features? Comparing a model's recorded provenance (that of
the store it was fitted on) with the provenance of the features it is about to score.

Compared: extractor, AIM size and probe, checkpoint digests, patch policy, precision and
feature size. Not compared: what may rightly differ between fitting and use (the
perturbation under test, how training pairs were made, the patch seed, RAID's version,
which rows a model was trained on and how its threshold was chosen).
Imported `.npy` features carry no extractor provenance, so against them only the feature
size can be checked; models of the previous format record none at all. Both cases are
let through with a one-line warning.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from raid.primitives.errors import RaidError
from raid.store.store import provenance_differences

log = logging.getLogger(__name__)

#: Provenance entries (dotted names) that may differ between fitting and use.
NOT_COMPARED = ("perturbation", "training_pairs", "patch.seed", "raid_version", "created",
                "source", "training", "calibration")
#: Extractors whose stores say nothing about how their features were made.
UNKNOWN_EXTRACTORS = frozenset({"imported-npy"})


def _comparable(provenance: dict) -> dict:
    out: dict = {}
    for key, value in provenance.items():
        if key in NOT_COMPARED:
            continue
        if isinstance(value, dict):
            value = {k: v for k, v in value.items() if f"{key}.{k}" not in NOT_COMPARED}
        out[key] = value
    return out


def differences(model: dict, features: dict) -> list[str]:
    """Each compared entry where the model's provenance and the features' differ."""
    diffs = provenance_differences(_comparable(model), _comparable(features))
    return [d.replace(": store has ", ": model has ", 1).replace(", new rows have ",
                                                                   ", features have ", 1)
            for d in diffs]


def model_provenance(detector: Any) -> dict | None:
    """The provenance a loaded detector records (None for files of the previous format)."""
    return getattr(detector, "provenance_", None)


def check_provenance(detector: Any, features: dict, where: str | os.PathLike,
                     model: str | os.PathLike, allow_mismatch: bool = False) -> list[str]:
    """Refuse (one-line RaidError naming each difference, at `where`) features made
    otherwise than those `detector` (or a provenance dict: what a model records) was
    fitted on; with `allow_mismatch`, warn instead. Returns the differences found (empty
    when the check passes or cannot be made)."""
    recorded = detector if isinstance(detector, dict) else model_provenance(detector)
    if recorded is None:
        log.warning("%s: the model records no feature provenance (previous format): the "
                    "check that the features match it is skipped", model)
        return []
    unknown = [p.get("extractor") for p in (recorded, features)
               if p.get("extractor") in UNKNOWN_EXTRACTORS]
    if unknown:
        log.warning("%s: %s features carry no extractor provenance: only the feature size "
                    "is checked", where if features.get("extractor") in UNKNOWN_EXTRACTORS
                    else model, unknown[0])
        recorded = {"feature_dim": recorded.get("feature_dim")}
        features = {"feature_dim": features.get("feature_dim")}
    diffs = differences(recorded, features)
    if diffs and not allow_mismatch:
        raise RaidError(f"made otherwise than the features model {model} was fitted on: "
                        + "; ".join(diffs) + " (--allow-mismatch overrides)", where)
    if diffs:
        log.warning("%s: differs from what model %s was fitted on (allowed): %s", where, model,
                    "; ".join(diffs))
    return diffs
