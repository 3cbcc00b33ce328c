"""A detector bundle: one folder that `raid detect --model BUNDLE` runs with no other flag.

    BUNDLE/
      bundle.json            what to load, and the digests to check it against
      detector.safetensors   the fitted detector (`raid fit`)
      <name>.yaml            the AIM size, when it came from a YAML file (else a built-in name)
      [checkpoints]          only when copied in (`copy_checkpoints`)

bundle.json holds the AIM size (built-in name, or the YAML file kept in the bundle with
its contents), the probe, precision and patch seed, and each checkpoint file (a path
relative to the bundle when inside it, else absolute) with its sha256. Loading checks that
every file is there and unchanged; any damage is one line naming the file.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from raid import __version__
from raid.primitives.errors import RaidError
from raid.primitives.fileio import atomic_path, write_text
from raid.primitives.hashing import file_sha256

FORMAT = "raid-detector-bundle"
FORMAT_VERSION = 1
INDEX = "bundle.json"
MODEL = "detector.safetensors"
_ROLES = ("backbone", "head")


@dataclass(frozen=True)
class Bundle:
    """A loaded bundle, every path resolved (absolute) and every digest verified."""

    path: Path
    model: Path
    arch: str  # a built-in size name, or the path of the YAML file in the bundle
    probe: str
    precision: str
    seed: int
    backbone: Path
    head: Path | None
    digests: dict[str, str | None]


def _is_file_arch(arch: str) -> bool:
    """An AIM size given as a YAML file rather than a built-in name (as `load_config`)."""
    return (Path(arch).suffix.lower() in (".yaml", ".yml") or os.sep in arch
            or Path(arch).exists())


def _copy(src: Path, dst: Path) -> None:
    if dst.exists() and src.resolve() == dst.resolve():
        return
    try:
        with atomic_path(dst) as tmp:
            shutil.copyfile(src, tmp)
    except OSError as exc:
        raise RaidError(f"cannot copy into the bundle: {exc.strerror or exc}", dst) from None


def _place(path: Path, out: Path, copy: bool) -> str:
    """Where bundle.json points to a file: relative inside the bundle, else absolute."""
    if not path.is_file():
        raise RaidError("no such checkpoint file", path)
    if copy and not path.resolve().is_relative_to(out.resolve()):
        target = out / path.name
        _copy(path, target)
        path = target
    resolved = path.resolve()
    if resolved.is_relative_to(out.resolve()):
        return resolved.relative_to(out.resolve()).as_posix()
    return str(resolved)


def settings_of(provenance: dict | None, probe: str = "best") -> dict:
    """probe, seed and precision of the features a model was fitted on (from the store's
    provenance), defaults where it does not say (e.g. imported .npy features)."""
    from raid.pipelines.featurizer import PRECISIONS

    prov = provenance or {}
    by_lightning = {v: k for k, v in PRECISIONS.items() if k != "bf16"}
    return {"probe": (prov.get("aim") or {}).get("probe", probe),
            "seed": int((prov.get("patch") or {}).get("seed", 0)),
            "precision": by_lightning.get(prov.get("precision", "32-true"), "32")}


def check_bundle(recorded: Any, n_features: int, model: str | os.PathLike, *,
                 arch: str | os.PathLike, backbone: str | os.PathLike,
                 head: str | os.PathLike | None = None, probe: str = "best",
                 precision: str = "32", seed: int = 0, allow_mismatch: bool = False) -> Any:
    """Before anything is written: the AIM size must give `n_features`, and the features
    of these checkpoints and settings must be those the model (`recorded`: a detector or
    its provenance) was fitted on. Returns the AIM config."""
    from raid.models.aim import load_config
    from raid.pipelines.featurizer import PRECISIONS, FeaturizerSettings, aim_provenance
    from raid.pipelines.provenance import check_provenance

    if precision not in PRECISIONS:
        raise RaidError(f"precision must be one of {', '.join(sorted(PRECISIONS))}")
    config = load_config(arch, probe)
    if n_features != config.width:
        raise RaidError(f"feature size differs: the model expects {n_features} features, "
                        f"AIM {config.name} gives {config.width}", model)
    for path in (backbone, head):
        if path is not None and not Path(path).is_file():
            raise RaidError("no such checkpoint file", path)
    settings = FeaturizerSettings(os.fspath(arch), os.fspath(backbone),
                                  None if head is None else os.fspath(head), probe, seed,
                                  precision)
    provenance = {**aim_provenance(config, settings), "feature_dim": config.width}
    check_provenance(recorded, provenance, backbone, model, allow_mismatch)
    return config


def write_bundle(out: str | os.PathLike, model: str | os.PathLike, *, arch: str | os.PathLike,
                 backbone: str | os.PathLike, head: str | os.PathLike | None = None,
                 probe: str = "best", precision: str = "32", seed: int = 0,
                 copy_checkpoints: bool = False, allow_mismatch: bool = False) -> Path:
    """Write (or refresh) bundle folder `out` around the model file `model`; returns the
    folder. Checked first (`check_bundle`), so a refused bundle writes nothing."""
    from raid.svm.detector import RaidDetector

    out, arch = Path(out), os.fspath(arch)
    if out.exists() and not out.is_dir():
        raise RaidError("exists and is not a folder (a bundle is a folder)", out)
    detector = RaidDetector.load(model)
    config = check_bundle(detector, detector.n_features_in_, model, arch=arch,
                          backbone=backbone, head=head, probe=probe, precision=precision,
                          seed=seed, allow_mismatch=allow_mismatch)
    out.mkdir(parents=True, exist_ok=True)
    _copy(Path(model), out / MODEL)
    aim: dict = {"probe": probe}
    if _is_file_arch(arch):
        name = Path(config.source).name
        _copy(Path(config.source), out / name)
        aim.update(file=name, sha256=file_sha256(out / name),
                   contents=(out / name).read_text(encoding="utf-8"))
    else:
        aim["size"] = arch
    checkpoints = {}
    for role, path in (("backbone", backbone), ("head", head)):
        if path is None:
            checkpoints[role] = None
            continue
        where = _place(Path(path), out, copy_checkpoints)
        checkpoints[role] = {"path": where, "sha256": file_sha256(out / where)}
    doc = {"format": FORMAT, "format_version": FORMAT_VERSION, "raid_version": __version__,
           "model": MODEL, "model_sha256": file_sha256(out / MODEL), "aim": aim,
           "precision": precision, "seed": int(seed), "checkpoints": checkpoints}
    write_text(out / INDEX, json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
    return out


def _entry(doc: dict, dotted: str, kind: type | tuple, where: Path):
    value: object = doc
    for part in dotted.split("."):
        if not isinstance(value, dict) or part not in value:
            raise RaidError(f"missing entry {dotted!r}", where)
        value = value[part]
    if not isinstance(value, kind) or isinstance(value, bool) and kind is int:
        raise RaidError(f"entry {dotted!r} has the wrong type ({type(value).__name__})", where)
    return value


def _checked(root: Path, rel: str, digest: str, what: str, index: Path) -> Path:
    path = Path(rel) if Path(rel).is_absolute() else root / rel
    if not path.is_file():
        raise RaidError(f"{what} named in {index} is missing", path)
    if file_sha256(path) != digest:
        raise RaidError(f"{what} changed since the bundle was written (sha256 differs from "
                        f"{index})", path)
    return path


def load_bundle(path: str | os.PathLike) -> Bundle:
    """Read and verify a bundle folder (or its bundle.json): one-line RaidErrors for a
    missing folder or file, bad JSON, a foreign or newer format, a changed file."""
    path = Path(path)
    index = path if path.name == INDEX and path.is_file() else path / INDEX
    root = index.parent
    if not root.exists():
        raise RaidError("no such bundle folder", root)
    if not index.is_file():
        if path.is_file():
            raise RaidError("is a file, not a bundle folder (a model file goes with --arch, "
                            "--backbone, --head)", path)
        raise RaidError(f"not a detector bundle (no {INDEX})", root)
    try:
        doc = json.loads(index.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise RaidError(f"cannot read ({type(exc).__name__})", index) from None
    except json.JSONDecodeError as exc:
        raise RaidError(f"not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})",
                        index) from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise RaidError("not a RAID detector bundle index (format is not "
                        f"{FORMAT!r})", index)
    version = _entry(doc, "format_version", int, index)
    if version > FORMAT_VERSION:
        raise RaidError(f"bundle format {version} is newer than this RAID reads "
                        f"({FORMAT_VERSION}); upgrade RAID", index)
    model = _checked(root, _entry(doc, "model", str, index),
                     _entry(doc, "model_sha256", str, index), "model file", index)
    aim = _entry(doc, "aim", dict, index)
    if "file" in aim:
        arch = str(_checked(root, _entry(doc, "aim.file", str, index),
                            _entry(doc, "aim.sha256", str, index), "AIM config", index))
    else:
        arch = _entry(doc, "aim.size", str, index)
    checkpoints = _entry(doc, "checkpoints", dict, index)
    files: dict[str, Path | None] = {}
    digests: dict[str, str | None] = {}
    for role in _ROLES:
        if checkpoints.get(role) is None:
            if role == "backbone":
                raise RaidError("missing entry 'checkpoints.backbone'", index)
            files[role] = digests[role] = None
            continue
        digests[role] = _entry(doc, f"checkpoints.{role}.sha256", str, index)
        files[role] = _checked(root, _entry(doc, f"checkpoints.{role}.path", str, index),
                               digests[role], f"{role} checkpoint", index)
    return Bundle(path=root.resolve(), model=model.resolve(), arch=arch,
                  probe=_entry(doc, "aim.probe", str, index),
                  precision=_entry(doc, "precision", str, index),
                  seed=_entry(doc, "seed", int, index), backbone=files["backbone"],
                  head=files["head"], digests=digests)
