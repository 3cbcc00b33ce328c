"""`raid demo`: the whole RAID pipeline in one command.

Without a config it runs on material it makes itself, in a few tens of seconds on a laptop
CPU: synthetic "photos" (smooth gradients, soft shapes, grain), a benchmark-shaped tree of
a few "generators" whose fakes come from simple, different procedures (one with nested
subsets, one listed but missing), a tiny random-weight AIM (official two-file layout) and a
tiny random AutoencoderKL (diffusers `save_pretrained`). Its numbers come from untrained
smoke models and mean nothing; it shows that every step runs and what each one leaves.

With `--config raid.yaml` the same steps run on real checkpoints and folders (see
configs/raid.yaml for the keys).

Steps: reconstruct (PNGs to look at) -> build-train (features of the real photos and
their reconstructions) -> fit -> benchmark (clean + perturbed, the paper's tables) ->
detect. Every step reuses what an earlier run into the same folder left: images and
models are kept, feature stores are completed, the detector is refitted only when its
training store changed.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import yaml
from PIL import Image, ImageDraw, ImageFilter

from raid.primitives.errors import RaidError
from raid.primitives.fileio import write_bytes, write_text

log = logging.getLogger(__name__)

SMOKE_WARNING = ("These numbers come from untrained smoke models (a random-weight AIM, a "
                 "random-weight autoencoder and synthetic images) and mean NOTHING about "
                 "RAID's accuracy; the demo only shows that the pipeline runs end to end.")

TINY_AIM_YAML = """\
# A tiny AIM-shaped model for the demo (random weights): 16 tokens of width 32.
width: 32
depth: 3
heads: 2
probe_layers: [0, 1]
patch_size: 14
image_size: 56
"""

#: The synthetic benchmark: generator folder -> (fake procedure, subsets or None).
SYNTHETIC_GENERATORS: dict[str, tuple[str, tuple[str, ...] | None]] = {
    "upsampler": ("upsample", None),
    "smoother": ("blur", None),
    "gan": ("checkerboard", ("faces", "scenes")),
}
MISSING_GENERATOR = "diffusion"  # listed in the demo's benchmark config, no folder
N_TRAIN, N_PER_CLASS, N_PER_SUBSET_CLASS = 40, 6, 4


# --------------------------------------------------------------------------- plan / config

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
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RaidError("no such config file", path) from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise RaidError(f"not a readable YAML file ({type(exc).__name__})", path) from None
    data = _mapping(data, "", _TOP_KEYS, path)
    for required in ("aim", "vae", "real", "benchmark"):
        if required not in data:
            raise _fail(required, "is missing", path)

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


# --------------------------------------------------------------------------- synthetic data

def synthetic_photo(rng: np.random.Generator, h: int, w: int, grain: float = 5.0) -> np.ndarray:
    """A small "photo": a smooth colour gradient, a few soft shapes and film grain."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    c0, cx, cy = rng.uniform(20, 235, (3, 3))
    base = (c0 + (cx - c0) * (xx / w)[..., None] + (cy - c0) * (yy / h)[..., None] * 0.7)
    image = Image.fromarray(np.clip(base, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(3, 7))):
        x0, y0 = rng.uniform(-0.2, 0.9, 2) * (w, h)
        x1, y1 = x0 + rng.uniform(0.15, 0.6) * w, y0 + rng.uniform(0.15, 0.6) * h
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        box = [float(x0), float(y0), float(x1), float(y1)]
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)(box, fill=colour)
    image = image.filter(ImageFilter.GaussianBlur(0.8))  # soft edges, as a lens gives
    pixels = np.asarray(image, dtype=np.float64)
    texture = rng.normal(0, grain, (h, w, 1)) + rng.normal(0, grain / 2, (h, w, 3))
    return np.clip(np.rint(pixels + texture), 0, 255).astype(np.uint8)


def fake_image(procedure: str, rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A "generated" image: a synthetic photo changed by one simple procedure."""
    if procedure == "upsample":  # low-resolution synthesis, nearest-neighbour upsampling
        small = synthetic_photo(rng, max(8, h // 3), max(8, w // 3))
        return np.asarray(Image.fromarray(small).resize((w, h), Image.NEAREST))
    if procedure == "blur":  # over-smooth content, no grain
        photo = synthetic_photo(rng, h, w, grain=1.0)
        return np.asarray(Image.fromarray(photo).filter(ImageFilter.GaussianBlur(1.5)))
    if procedure == "checkerboard":  # transposed-convolution style periodic artefact
        photo = synthetic_photo(rng, h, w).astype(np.int16)
        yy, xx = np.mgrid[0:h, 0:w]
        pattern = np.where((yy // 2 + xx // 2) % 2 == 0, 10, -10)[..., None]
        return np.clip(photo + pattern, 0, 255).astype(np.uint8)
    raise ValueError(f"unknown procedure {procedure!r}")


def _png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def _write_image(target: Path, make: Callable[[], np.ndarray]) -> bool:
    """Write an image once: a rerun keeps it (each is seeded by its name anyway)."""
    if target.exists():
        return False
    write_bytes(target, _png(make()))
    return True


def _rng(*parts: object) -> np.random.Generator:
    digest = hashlib.blake2b("\0".join(map(str, parts)).encode(), digest_size=8).digest()
    return np.random.default_rng(int.from_bytes(digest, "little"))


def _size(rng: np.random.Generator) -> tuple[int, int]:
    # A few sizes only: reconstruction batches images of one size together.
    h, w = rng.choice(_SIDES, size=2)
    return int(h), int(w)


_SIDES = (64, 80, 96)


def make_synthetic_data(data: Path) -> dict[str, Path]:
    """Training photos, the benchmark tree, its config and a detect folder under `data`."""
    real = data / "real"
    for i in range(N_TRAIN):
        rng = _rng("train", i)
        _write_image(real / f"photo_{i:03d}.png", lambda: synthetic_photo(rng, *_size(rng)))
    root = data / "benchmark"
    for gen, (procedure, subsets) in SYNTHETIC_GENERATORS.items():
        for sub in subsets or (None,):
            folder = root / gen / sub if sub else root / gen
            n = N_PER_SUBSET_CLASS if sub else N_PER_CLASS
            for i in range(n):
                rng_r, rng_f = _rng(gen, sub, "real", i), _rng(gen, sub, "fake", i)
                _write_image(folder / "0_real" / f"{i:03d}.png",
                             lambda: synthetic_photo(rng_r, *_size(rng_r)))
                _write_image(folder / "1_fake" / f"{i:03d}.png",
                             lambda: fake_image(procedure, rng_f, *_size(rng_f)))
    detect = data / "detect"
    for i in range(3):
        rng_r, rng_f = _rng("detect", "real", i), _rng("detect", "fake", i)
        _write_image(detect / f"real_{i}.png", lambda: synthetic_photo(rng_r, *_size(rng_r)))
        _write_image(detect / f"fake_{i}.png",
                     lambda: fake_image("upsample", rng_f, *_size(rng_f)))
    broken = detect / "broken.jpg"
    if not broken.exists():  # an unreadable file, to show how detect reports one
        write_bytes(broken, b"<html><body>404 Not Found</body></html>\n")
    config = data / "benchmark.yaml"
    lines = ["# The demo's synthetic benchmark (smoke test; numbers mean nothing).",
             "name: RAID demo (synthetic)", "generators:"]
    lines += [f"  - {{folder: {g}, name: {g}}}" for g in SYNTHETIC_GENERATORS]
    lines.append(f"  - {{folder: {MISSING_GENERATOR}, name: {MISSING_GENERATOR}}}  # no folder")
    write_text(config, "\n".join(lines) + "\n")
    return {"real": real, "root": root, "config": config, "detect": detect}


def make_smoke_models(models: Path) -> dict[str, Any]:
    """A tiny random AIM (config + official two-file checkpoint) and a tiny random
    AutoencoderKL folder; kept when a previous run made them."""
    from raid.models.aim import load_config, random_aim, save_official_checkpoint
    from raid.models.autoencoders import tiny_autoencoder_kl

    arch, backbone, head = models / "aim-tiny.yaml", models / "aim-tiny_backbone.pth", \
        models / "aim-tiny_head.pth"
    if not arch.exists():
        write_text(arch, TINY_AIM_YAML)
    if not (backbone.exists() and head.exists()):
        save_official_checkpoint(random_aim(load_config(arch), seed=0), backbone, head)
    vae = models / "vae-tiny"
    if not (vae / "config.json").exists():
        # save_pretrained writes several files: build them in a temporary folder, then
        # rename it into place, so an interrupted run never leaves half a model
        tmp = Path(tempfile.mkdtemp(prefix=".vae-tiny.", dir=models))
        try:
            tiny_autoencoder_kl(seed=0).save_pretrained(tmp, safe_serialization=True)
            shutil.rmtree(vae, ignore_errors=True)
            os.replace(tmp, vae)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return {"arch": str(arch), "backbone": str(backbone), "head": str(head), "probe": "best",
            "vae": vae}


def synthetic_plan(out: str | os.PathLike) -> DemoPlan:
    """Make (or find) the demo's own images and smoke models under `out`."""
    out = Path(out)
    data = make_synthetic_data(out / "data")
    models = make_smoke_models(out / "models")
    vae = models.pop("vae")
    return DemoPlan(out, models, [vae], data["real"], data["config"], data["root"],
                    ["jpeg=75"], [data["detect"]],
                    run={"batch_size": 32, "num_workers": 0, "accelerator": "cpu",
                         "devices": 1, "seed": 0},
                    fit={"backend": "sklearn"}, save_reconstructions=True, synthetic=True)


# --------------------------------------------------------------------------- the run

@dataclass
class DemoSummary:
    out: Path
    report: Path
    steps: list[tuple[str, float, str]]  # (step, seconds, outcome)
    synthetic: bool
    benchmark: Any = None
    detections: Any = None

    def lines(self) -> list[str]:
        out = [f"{name:<12} {seconds:6.1f} s  {what}" for name, seconds, what in self.steps]
        total = sum(s for _, s, _ in self.steps)
        out.append(f"{'steps total':<12} {total:6.1f} s")
        if self.benchmark is not None:
            table = self.benchmark.settings[0].files.get("benchmark_md")
            if table is not None:
                out += ["", *_table_lines(Path(table))]
        if self.synthetic:
            out += ["", "NOTE: " + SMOKE_WARNING]
        out += ["", f"report: {self.report / 'report.md'}  (folder {self.report})"]
        return out


def _table_lines(path: Path) -> list[str]:
    return [line for line in path.read_text(encoding="utf-8").splitlines()
            if line.startswith("|")]


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def _fit(store: Path, model: Path, params: dict, seed: int) -> str:
    """Fit unless the saved model was fitted on this very store with these parameters."""
    from raid.pipelines.train import fit_store

    stamp = model.with_name(model.name + ".fitted-on.json")
    ident = {"store_sha256": _file_digest(store), "params": params, "seed": seed}
    if model.exists() and stamp.exists():
        try:
            if json.loads(stamp.read_text(encoding="utf-8")) == ident:
                return f"reused {model} (its training store is unchanged)"
        except (OSError, json.JSONDecodeError):
            pass
    s = fit_store(store, model, random_state=seed, **params)
    write_text(stamp, json.dumps(ident, indent=2) + "\n")
    return (f"fitted on {s.n_real} real + {s.n_fake} reconstructed rows in {s.seconds:.1f} s "
            f"({s.n_support} support vectors) -> {model}")


def run_demo(plan: DemoPlan) -> DemoSummary | None:
    """Run every step of the plan into `plan.out`; returns None on the non-zero ranks of a
    multi-process run."""
    from raid.models.autoencoders import autoencoder_name
    from raid.pipelines.benchmark import load_benchmark_config, run_benchmark
    from raid.pipelines.detect import detect, write_detections
    from raid.pipelines.extraction import ExtractOptions
    from raid.primitives.perturb import parse_sweep
    from raid.pipelines.reconstruction import ReconstructOptions, build_train, reconstruct_folder

    out = plan.out
    report = out / "report"
    opts = ExtractOptions(**plan.aim, **plan.run)
    steps: list[tuple[str, float, str]] = []
    notes = [f"**{SMOKE_WARNING}**"] if plan.synthetic else []

    def step(name: str, fn: Callable[[], Any], describe: Callable[[Any], str]) -> Any:
        log.info("== %s", name)
        t0 = time.perf_counter()
        result = fn()
        steps.append((name, time.perf_counter() - t0, describe(result) if result is not None
                      else "done"))
        return result

    if plan.save_reconstructions:
        recon_opts = ReconstructOptions(
            seed=opts.seed, batch_size=min(opts.batch_size, 16), num_workers=opts.num_workers,
            accelerator=opts.accelerator, devices=opts.devices, strategy=opts.strategy,
            num_nodes=opts.num_nodes, max_pixels=opts.max_pixels)
        for vae in plan.vaes:
            r = step("reconstruct", lambda: reconstruct_folder(
                plan.real, out / "reconstructed" / autoencoder_name(vae), vae, recon_opts),
                lambda s: s.lines()[0])
            if r is None:
                return None
    train_store = out / "features" / "train.h5"
    b = step("build-train", lambda: build_train(plan.real, plan.vaes, train_store, opts),
             lambda s: s.lines()[0])
    if b is None:
        return None
    model = out / "models" / "detector.safetensors"
    step("fit", lambda: _fit(train_store, model, plan.fit, opts.seed), lambda s: s)
    bench = step("benchmark", lambda: run_benchmark(
        load_benchmark_config(plan.benchmark_config), model, report,
        root=plan.benchmark_root, opts=opts, perturbations=parse_sweep(plan.perturb)
        if plan.perturb else [], cache=out / "features" / "benchmark", notes=notes),
        _describe_benchmark)
    if bench is None:
        return None
    detections = None
    if plan.detect:
        detections = step("detect", lambda: detect(plan.detect, model, opts),
                          lambda d: d.table().splitlines()[-1])
        if detections is None:
            return None
        write_detections(detections, report / "detections.csv")
    summary = DemoSummary(out, report, steps, plan.synthetic, bench, detections)
    _write_report(summary, plan, model)
    return summary


def _describe_benchmark(summary) -> str:
    for line in summary.lines():
        log.info("%s", line)
    parts = [f"{s.setting}: mean accuracy {100 * s.mean['accuracy']:.2f} % over "
             f"{len(s.present)} generators ({s.extracted} extracted, {s.reused} reused)"
             for s in summary.settings]
    if summary.settings and summary.settings[0].missing:
        parts.append("missing: " + ", ".join(summary.settings[0].missing))
    return "; ".join(parts)


def _write_report(summary: DemoSummary, plan: DemoPlan, model: Path) -> None:
    """report/report.md (the page to read first) and report/summary.json."""
    report = summary.report
    bench = summary.benchmark
    lines = ["# RAID demo", ""]
    if plan.synthetic:
        lines += [f"> **{SMOKE_WARNING}**", ""]
    lines += ["## Steps", "", "| Step | Seconds | Outcome |", "|---|---:|---|"]
    lines += [f"| {n} | {s:.1f} | {w.replace('|', '/')} |" for n, s, w in summary.steps]
    lines += ["", f"Detector: `{model}`", ""]
    for s in bench.settings:
        lines += [f"## Benchmark: {s.setting}", ""]
        lines += _table_lines(Path(s.files["benchmark_md"]))
        lines += ["", f"Files: `{Path(s.files['benchmark_md']).relative_to(report)}`, "
                      f"`{Path(s.files['benchmark_csv']).relative_to(report)}`, "
                      f"`{Path(s.files['markdown']).relative_to(report)}`, "
                      f"`{Path(s.files['json']).relative_to(report)}`, "
                      f"`{Path(s.files['roc']).relative_to(report)}`", ""]
    if bench.settings and bench.settings[0].missing:
        lines += ["Missing generators: " + ", ".join(bench.settings[0].missing), ""]
    if bench.robustness:
        lines += ["## Robustness", "", "Mean accuracy per perturbation setting: "
                  + ", ".join(f"`{p.name}`" for p in bench.robustness.values()), ""]
        if "png" in bench.robustness:
            lines += ["![robustness](robustness.png)", ""]
    if summary.detections is not None:
        lines += ["## Detection", "", "```", summary.detections.table(), "```", "",
                  "Also in `detections.csv`.", ""]
    write_text(report / "report.md", "\n".join(lines))
    doc = {"synthetic": plan.synthetic, "warning": SMOKE_WARNING if plan.synthetic else None,
           "steps": [{"step": n, "seconds": round(s, 3), "outcome": w}
                     for n, s, w in summary.steps],
           "model": str(model),
           "benchmark": {s.setting: s.result.metrics["mean"] for s in bench.settings},
           "missing_generators": list(bench.settings[0].missing) if bench.settings else []}
    write_text(report / "summary.json", json.dumps(doc, indent=2) + "\n")
