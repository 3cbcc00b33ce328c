"""The demo's plan: what one `raid demo` run uses, read and checked from a config file
(see configs/raid.yaml) or made by `raid.pipelines.demo_data.synthetic_plan`."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from raid.primitives.config import load_yaml
from raid.primitives.errors import RaidError


@dataclass
class DemoPlan:
    """Everything one demo run uses; made by `synthetic_plan` or `load_demo_config`."""

    out: Path
    aim: dict[str, Any]  # arch, backbone, head, probe
    vaes: list[Path]
    real: Path
    benchmark_config: Path
    benchmark_root: Path
    perturb: list[str] = field(default_factory=lambda: ["jpeg=75"])
    detect: list[Path] = field(default_factory=list)
    run: dict[str, Any] = field(default_factory=dict)  # ExtractOptions fields
    fit: dict[str, Any] = field(default_factory=dict)  # RaidDetector parameters
    save_reconstructions: bool = True
    synthetic: bool = False


# The demo runs in one process (one device): its steps hand files to each other, which a
# multi-process run would have to synchronise; the single commands scale out instead.
_RUN_KEYS = {"batch_size": int, "num_workers": int, "precision": str, "seed": int,
             "accelerator": str, "max_pixels": (int, type(None)), "compile": bool}
_FIT_KEYS = {"backend": str, "C": (int, float), "gamma": (str, int, float), "cv_folds": int}
_TOP_KEYS = {"aim", "vae", "real", "benchmark", "detect", "out", "run", "fit", "perturb",
             "save_reconstructions"}


def _fail(key: str, message: str, path: Path) -> RaidError:
    return RaidError(f"key '{key}': {message}", path)


def _mapping(data: Any, key: str, allowed: set[str], path: Path) -> dict:
    if not isinstance(data, dict):
        raise _fail(key, "must be a mapping", path)
    unknown = sorted(set(map(str, data)) - allowed)
    if unknown:
        raise _fail(f"{key}.{unknown[0]}" if key else unknown[0],
                    f"unknown key (known: {', '.join(sorted(allowed))})", path)
    return data


def _path(value: Any, key: str, path: Path, kind: str) -> Path:
    """A path value that must exist as `kind` ("file", "folder" or "any")."""
    if not isinstance(value, str) or not value.strip():
        raise _fail(key, "must be a path (a non-empty string)", path)
    p = Path(os.path.expanduser(value))
    if kind == "file" and not p.is_file():
        raise _fail(key, f"no such file: {p}", path)
    if kind == "folder" and not p.is_dir():
        raise _fail(key, f"no such folder: {p}", path)
    if kind == "any" and not p.exists():
        raise _fail(key, f"no such file or folder: {p}", path)
    return p


def _typed(section: dict, types: dict, key: str, path: Path) -> dict:
    out = {}
    for name, value in section.items():
        want = types[name]
        if isinstance(value, bool) and want is not bool and bool not in (
                want if isinstance(want, tuple) else (want,)):
            raise _fail(f"{key}.{name}", f"must not be a boolean, got {value!r}", path)
        if not isinstance(value, want):
            raise _fail(f"{key}.{name}", f"has the wrong type ({type(value).__name__})", path)
        out[name] = value
    return out


def load_demo_config(path: str | os.PathLike, out: str | os.PathLike | None = None) -> DemoPlan:
    """Read and check a demo config (see configs/raid.yaml). Relative paths are taken from
    the current folder, like command-line paths. Every mistake is one line naming the key."""
    from raid.pipelines.extraction import PRECISIONS
    from raid.primitives.perturb import parse_sweep

    path = Path(path)
    data = load_yaml(path, known=_TOP_KEYS, required=("aim", "vae", "real", "benchmark"))

    aim = _mapping(data["aim"], "aim", {"arch", "backbone", "head", "probe"}, path)
    if "arch" not in aim or not isinstance(aim["arch"], str):
        raise _fail("aim.arch", "is missing (600m, 1b, 3b, 7b or a YAML file)", path)
    if "backbone" not in aim:
        raise _fail("aim.backbone", "is missing", path)
    probe = aim.get("probe", "best")
    if probe not in ("best", "last"):
        raise _fail("aim.probe", f"must be best or last, got {probe!r}", path)
    aim_opts = {"arch": aim["arch"], "probe": probe,
                "backbone": str(_path(aim["backbone"], "aim.backbone", path, "file")),
                "head": str(_path(aim["head"], "aim.head", path, "file"))
                if aim.get("head") is not None else None}

    vaes = data["vae"] if isinstance(data["vae"], list) else [data["vae"]]
    if not vaes:
        raise _fail("vae", "must list at least one autoencoder folder", path)
    vae_paths = [_path(v, f"vae[{i}]", path, "folder") for i, v in enumerate(vaes)]
    real = _path(data["real"], "real", path, "folder")

    bench = _mapping(data["benchmark"], "benchmark", {"config", "root"}, path)
    for k in ("config", "root"):
        if k not in bench:
            raise _fail(f"benchmark.{k}", "is missing", path)
    bench_config = _path(bench["config"], "benchmark.config", path, "file")
    bench_root = _path(bench["root"], "benchmark.root", path, "folder")

    detect = data.get("detect") or []
    if not isinstance(detect, list):
        detect = [detect]
    detect_paths = [_path(d, f"detect[{i}]", path, "any") for i, d in enumerate(detect)]

    perturb = data.get("perturb", [])
    if isinstance(perturb, str):
        perturb = [perturb]
    if not isinstance(perturb, list) or not all(isinstance(p, str) for p in perturb):
        raise _fail("perturb", "must be a list of specs such as jpeg=75", path)
    try:
        parse_sweep(perturb)
    except RaidError as exc:
        raise _fail("perturb", str(exc), path) from None

    run = _typed(_mapping(data.get("run") or {}, "run", set(_RUN_KEYS), path), _RUN_KEYS,
                 "run", path)
    if "precision" in run and run["precision"] not in PRECISIONS:
        raise _fail("run.precision", f"must be one of {', '.join(sorted(PRECISIONS))}", path)
    run["devices"] = 1
    fit = _typed(_mapping(data.get("fit") or {}, "fit", set(_FIT_KEYS), path), _FIT_KEYS,
                 "fit", path)
    out_dir = out if out is not None else data.get("out", "raid-demo")
    if not isinstance(out_dir, (str, os.PathLike)):
        raise _fail("out", "must be a folder path", path)
    save = data.get("save_reconstructions", False)
    if not isinstance(save, bool):
        raise _fail("save_reconstructions", "must be true or false", path)
    return DemoPlan(Path(out_dir), aim_opts, vae_paths, real, bench_config, bench_root,
                    perturb, detect_paths, run, fit, save, synthetic=False)
