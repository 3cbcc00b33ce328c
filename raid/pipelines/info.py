"""What is inside a feature store, a model file or a detector bundle, without writing code.

`describe(path)` returns a JSON-ready dict whose `kind` is "store", "model" or "bundle";
`render(info)` turns it into short aligned text. A damaged or foreign file is one
RaidError naming the file and the reason.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from raid.primitives.errors import RaidError

LABEL_NAMES = {0: "real", 1: "generated", -1: "unknown"}
FIRST_FAILURES = 5
_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
_STORE_SUFFIXES = (".h5", ".hdf5")


def describe(path: str | os.PathLike) -> dict[str, Any]:
    """Describe a store (.h5), a model file (.safetensors) or a bundle folder."""
    path = Path(path)
    if not path.exists():
        raise RaidError("no such file or folder", path)
    if path.is_dir() or path.name == "bundle.json":
        return describe_bundle(path)
    try:
        with open(path, "rb") as fh:
            head = fh.read(8)
    except OSError as exc:
        raise RaidError(f"cannot read ({exc.strerror or exc})", path) from None
    if head == _HDF5_MAGIC or path.suffix.lower() in _STORE_SUFFIXES:
        return describe_store(path)
    if path.suffix.lower() == ".safetensors" or _looks_like_safetensors(head, path):
        return describe_model(path)
    raise RaidError("not a RAID feature store (.h5), model file (.safetensors) or bundle "
                    "folder", path)


def _looks_like_safetensors(head: bytes, path: Path) -> bool:
    """A safetensors file starts with the length of its JSON header, which opens with '{'."""
    if len(head) < 8:
        return False
    size = int.from_bytes(head, "little")
    try:
        with open(path, "rb") as fh:
            fh.seek(8)
            return 0 < size <= path.stat().st_size - 8 and fh.read(1) == b"{"
    except OSError:
        return False


def describe_store(path: Path) -> dict[str, Any]:
    from raid.store.store import FeatureStore

    with FeatureStore(path) as fs:
        counts = fs.counts()
        failures = fs.failures()
        info = {"kind": "store", "path": str(path), "rows": len(fs),
                "feature_size": fs.dim, "labels": {}, "groups": {},
                "failures": {"count": len(failures),
                             "first": [{"key": k, "reason": r} for k, r in
                                       sorted(failures.items())[:FIRST_FAILURES]]},
                "provenance": fs.provenance}
    totals: dict[str, int] = {}
    for group, by_label in counts.items():
        named = {LABEL_NAMES.get(l, str(l)): n for l, n in sorted(by_label.items())}
        info["groups"][group] = named
        for name, n in named.items():
            totals[name] = totals.get(name, 0) + n
    info["labels"] = {name: totals[name] for name in LABEL_NAMES.values() if name in totals}
    return info


def describe_model(path: Path) -> dict[str, Any]:
    from raid.svm.detector import RaidDetector

    det = RaidDetector.load(path)
    indices = getattr(det, "indices_", None)
    provenance = getattr(det, "provenance_", None)
    return {
        "kind": "model", "path": str(path),
        "settings": {"C": _plain(det.C), "gamma": _plain(det.gamma),
                     "gamma_value": _plain(getattr(det, "gamma_", None)),
                     "backend": getattr(det, "backend_", None),
                     "solver": getattr(det, "solver_", None),
                     "calibration_folds": _plain(det.cv_folds)},
        "n_features": int(det.n_features_in_),
        "n_features_used": int(len(indices)) if indices is not None else int(det.n_features_in_),
        "support_vectors": int(len(det.dual_coef_)),
        "platt": {"a": _plain(det.platt_a_), "b": _plain(det.platt_b_)},
        "threshold": _plain(getattr(det, "threshold_", 0.5)),
        "training": _training(det, provenance),
        "provenance": {k: v for k, v in provenance.items() if k != "training"}
        if isinstance(provenance, dict) else provenance,
    }


def _training(det: Any, provenance: dict | None) -> dict | None:
    """What the model records of its training rows (None: not recorded in this file)."""
    for value in (getattr(det, "training_", None), (provenance or {}).get("training")):
        if isinstance(value, dict):  # the per-key hashes are counted, not listed
            return {k: (len(v) if k == "key_hashes" and isinstance(v, list) else v)
                    for k, v in value.items()}
    return None


def describe_bundle(path: Path) -> dict[str, Any]:
    """A bundle folder (checked by `load_bundle`) and the model inside it."""
    from raid.pipelines.bundle import INDEX, load_bundle

    bundle = load_bundle(path)
    index = json.loads((bundle.path / INDEX).read_text(encoding="utf-8"))
    return {"kind": "bundle", "path": str(bundle.path), "index": index,
            "aim": {"arch": bundle.arch, "probe": bundle.probe},
            "precision": bundle.precision, "seed": bundle.seed,
            "checkpoints": {"backbone": str(bundle.backbone),
                            "head": None if bundle.head is None else str(bundle.head)},
            "model": describe_model(bundle.model)}


def _plain(value: Any) -> Any:
    """numpy scalars -> Python numbers (for JSON)."""
    return value.item() if hasattr(value, "item") and not isinstance(value, (list, dict)) \
        else value


# -- text ---------------------------------------------------------------------------------

def render(info: dict[str, Any]) -> str:
    """Short aligned text for people."""
    kind = info["kind"]
    if kind == "store":
        return "\n".join(_store_lines(info))
    if kind == "model":
        return "\n".join(_model_lines(info))
    return "\n".join(_bundle_lines(info))


def _field(name: str, value: Any, width: int = 14) -> str:
    return f"  {name:<{width}}{value}"


def _store_lines(info: dict) -> list[str]:
    labels = ", ".join(f"{name} {n}" for name, n in info["labels"].items())
    out = [f"{info['path']}: RAID feature store",
           _field("rows", f"{info['rows']}" + (f" ({labels})" if labels else "")),
           _field("feature size", info["feature_size"]),
           _field("groups", len(info["groups"]))]
    out += _table(info["groups"])
    fail = info["failures"]
    out.append(_field("failures", fail["count"]))
    out += [f"    {f['key']}: {f['reason']}" for f in fail["first"]]
    if fail["count"] > len(fail["first"]):
        out.append(f"    ... and {fail['count'] - len(fail['first'])} more")
    out += _provenance_lines(info["provenance"])
    return out


def _table(groups: dict[str, dict[str, int]]) -> list[str]:
    if not groups:
        return []
    cols = [c for c in ("real", "generated", "unknown")
            if any(c in by_label for by_label in groups.values())]
    gw = max(len("group"), *(len(g) for g in groups))
    widths = [max(len(c), *(len(str(b.get(c, 0))) for b in groups.values())) for c in cols]
    head = "    " + "group".ljust(gw) + "".join(f"  {c:>{w}}" for c, w in zip(cols, widths))
    rows = ["    " + g.ljust(gw) + "".join(f"  {b.get(c, 0):>{w}}" for c, w in zip(cols, widths))
            for g, b in groups.items()]
    return [head] + rows


def _provenance_lines(provenance: dict | None) -> list[str]:
    if not provenance:
        return [_field("provenance", "not recorded")]
    flat = _flatten(provenance)
    width = max(len(k) for k in flat)
    return [_field("provenance", "").rstrip()] + [f"    {k:<{width}}  {_short(v)}"
                                           for k, v in flat.items()]


def _model_lines(info: dict) -> list[str]:
    s = info["settings"]
    gamma = s["gamma"] if s["gamma_value"] is None or s["gamma"] == s["gamma_value"] \
        else f"{s['gamma']} (= {s['gamma_value']:.6g})"
    used = info["n_features_used"]
    feats = f"{info['n_features']}" + (f" ({used} used)" if used != info["n_features"] else "")
    train = info["training"]
    out = [f"{info['path']}: RAID detector (RBF SVM)",
           _field("C", s["C"]), _field("gamma", gamma),
           _field("backend", f"{s['backend']} ({s['solver']} solver)"),
           _field("features", feats),
           _field("support vec.", info["support_vectors"]),
           _field("platt", f"A={info['platt']['a']:.6g}, B={info['platt']['b']:.6g}"),
           _field("threshold", f"{info['threshold']:g}"),
           _field("training", "not recorded in this file" if train is None else
                  ", ".join(f"{k} {_short(v)}" for k, v in _flatten(train).items()))]
    return out + _provenance_lines(info["provenance"])


def _bundle_lines(info: dict) -> list[str]:
    out = [f"{info['path']}: RAID detector bundle"]
    out += [_field("AIM", f"{info['aim']['arch']} (probe {info['aim']['probe']})"),
            _field("precision", info["precision"]), _field("patch seed", info["seed"]),
            _field("backbone", info["checkpoints"]["backbone"]),
            _field("head", info["checkpoints"]["head"] or "none")]
    model = _model_lines(info["model"])
    return out + ["  model " + model[0]] + ["  " + line for line in model[1:]]


def _flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _short(value: Any, limit: int = 72) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    text = text.replace("\n", "\\n")
    return text if len(text) <= limit else text[:limit - 3] + "..."
