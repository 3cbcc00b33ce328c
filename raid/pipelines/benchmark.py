"""A benchmark run: a saved detector on every generator of a benchmark (clean and perturbed),
reported per generator in the paper's form, plus a robustness sweep.

Data: `<root>/<generator>/[<subset>/]{0_real,1_fake}/<image>` (the AIGCDetectBenchmark
layout). A store key is the image's path relative to the root, so its group is the generator
folder and nested subsets count in their generator (`raid.primitives.layout.group_of`). Features come
either from images (extracted once per perturbation setting into a cached store, completed
and reused on the next run) or from one ready store, e.g. the seed's published test
features imported with `raid import-npy`.

Outputs in OUT (all written atomically):
    <setting>/metrics.json, metrics.csv, report.md, roc.png   (`raid evaluate`'s report)
    <setting>/benchmark.md, benchmark.csv                     (the paper's table)
    robustness.csv, robustness.png                            (only with perturbations)
    features/<root>-<hash>/<setting>.h5                       (the cache, unless --cache)
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Sequence

import numpy as np
import yaml

from raid.primitives.errors import RaidError
from raid.metrics.evaluation import (HEADERS, METRICS, EvaluationResult, evaluate, plot_sweep,
                                     write_report)
from raid.pipelines.evaluate import overlap_warning, score_store
from raid.primitives.fileio import write_text
from raid.primitives.perturb import CLEAN, Perturbation
from raid.store.store import FeatureStore
from raid.svm.detector import RaidDetector

log = logging.getLogger(__name__)

#: Columns of the paper-form table: the metrics in the one order and naming of every
#: report (`raid.metrics`), after the row count as in report.md.
TABLE_COLUMNS: tuple[tuple[str, str], ...] = tuple((k, HEADERS[k]) for k in METRICS)
_FOLDER = re.compile(r"^[^/\\]+$")


# --------------------------------------------------------------------------- config

@dataclass(frozen=True)
class Generator:
    folder: str  # folder under the root, and the group name in stores and metrics.json
    name: str  # display name in the table


@dataclass(frozen=True)
class BenchmarkConfig:
    name: str
    generators: tuple[Generator, ...]
    source: Path | None = None

    @property
    def folders(self) -> list[str]:
        return [g.folder for g in self.generators]


def load_benchmark_config(path: str | os.PathLike) -> BenchmarkConfig:
    """Read a benchmark YAML: ``name`` and ``generators`` (folder names, or mappings
    ``{folder, name}``), in table order. Mistakes raise a one-line RaidError naming the key."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RaidError("no such benchmark config", path) from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise RaidError(f"not a readable YAML file ({type(exc).__name__})", path) from None
    if not isinstance(data, dict):
        raise RaidError("a benchmark config must be a YAML mapping with 'generators'", path)
    unknown = sorted(set(map(str, data)) - {"name", "generators"})
    if unknown:
        raise RaidError(f"unknown key(s): {', '.join(unknown)}", path)
    entries = data.get("generators")
    if not isinstance(entries, list) or not entries:
        raise RaidError("'generators' must be a non-empty list of folder names", path)
    generators: list[Generator] = []
    for i, entry in enumerate(entries):
        if isinstance(entry, dict):
            extra = sorted(set(map(str, entry)) - {"folder", "name"})
            if extra or "folder" not in entry:
                raise RaidError(f"generators[{i}]: expected {{folder, name}}, got "
                                f"{sorted(map(str, entry))}", path)
            folder, name = entry["folder"], entry.get("name", entry["folder"])
        else:
            folder = name = entry
        if not isinstance(folder, str) or not _FOLDER.match(folder) or folder in (".", ".."):
            raise RaidError(f"generators[{i}]: {folder!r} is not a folder name", path)
        generators.append(Generator(folder, str(name)))
    dupes = sorted({g.folder for g in generators if [h.folder for h in generators].count(g.folder) > 1})
    if dupes:
        raise RaidError(f"generators: {', '.join(dupes)} listed twice", path)
    name = data.get("name", path.stem)
    if not isinstance(name, str) or not name.strip():
        raise RaidError("'name' must be a non-empty string", path)
    return BenchmarkConfig(name, tuple(generators), path)


# --------------------------------------------------------------------------- results

@dataclass
class SettingResult:
    """One perturbation setting: where its features are, what it found, its report."""

    setting: str
    store: Path
    result: EvaluationResult
    present: list[str]  # generator folders evaluated, config order
    missing: dict[str, str]  # generator folder -> why it is not in the table
    extracted: int | None = None  # rows this run added (None: features given)
    reused: int | None = None  # rows found in the cache
    failed: dict[str, str] = field(default_factory=dict)
    files: dict[str, Path] = field(default_factory=dict)

    @property
    def mean(self) -> dict:
        return self.result.metrics["mean"]


@dataclass
class BenchmarkSummary:
    config: BenchmarkConfig
    out: Path
    settings: list[SettingResult]
    extra_groups: list[str] = field(default_factory=list)  # groups found but not listed
    robustness: dict[str, Path] = field(default_factory=dict)

    def lines(self) -> list[str]:
        out: list[str] = []
        for s in self.settings:
            if s.extracted is not None:
                out.append(f"{s.setting}: features {s.store}: {s.extracted} extracted, "
                           f"{s.reused} reused from the cache, {len(s.failed)} failed")
            m = s.mean
            out.append(f"{s.setting}: mean over {len(s.present)} of "
                       f"{len(self.config.generators)} generators: accuracy {_pct(m['accuracy'])}, "
                       f"AP {_pct(m['ap'])}, AUROC {_pct(m['auroc'])} -> "
                       f"{s.files.get('benchmark_md', '')}")
        if self.settings and self.settings[0].missing:
            out.append("missing generators: " + "; ".join(
                f"{g} ({why})" for g, why in self.settings[0].missing.items()))
        if self.extra_groups:
            out.append("not in the config (left out): " + ", ".join(self.extra_groups))
        for kind, path in self.robustness.items():
            out.append(f"robustness {kind}: {path}")
        return out


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.2f} %"


# --------------------------------------------------------------------------- evaluation

def evaluate_benchmark_store(model: str | os.PathLike, store: str | os.PathLike,
                             config: BenchmarkConfig, setting: str, out_dir: str | os.PathLike,
                             *, root: Path | None = None, notes: Sequence[str] = (),
                             extracted: int | None = None, reused: int | None = None,
                             failed: dict[str, str] | None = None,
                             allow_mismatch: bool = False) -> tuple[SettingResult, list[str]]:
    """Score the config's generators in `store`, write the report and the paper's table
    into `out_dir`; returns the setting's result and the store's groups not in the config.
    A store of features (no `root`) is checked against the model's provenance here; from
    images, `run_benchmark` checked the extractor once for every setting."""
    store, out_dir = Path(store), Path(out_dir)
    with FeatureStore(store) as fs:
        groups = fs.group_names()
    present = [g for g in config.folders if g in groups]
    missing: dict[str, str] = {}
    for g in config.folders:
        if g in groups:
            continue
        if root is not None and (root / g).is_dir():
            missing[g] = "no readable images"
        else:
            missing[g] = "folder not found" if root is not None else "not in the feature store"
    extra = [g for g in groups if g not in config.folders]
    if root is not None:  # folders under the root that the config does not list
        extra = sorted(set(extra) | {d.name for d in root.iterdir()
                                     if d.is_dir() and d.name not in config.folders})
    if not present:
        where = root if root is not None else store
        raise RaidError(f"none of the {len(config.generators)} generators of "
                        f"{config.source or config.name} found (groups here: "
                        f"{', '.join(groups) or 'none'})", where)
    detector = RaidDetector.load(model)
    detector.path_ = str(model)  # named in messages
    probs, rows = score_store(detector, store, groups=present, allow_mismatch=allow_mismatch,
                              check=root is None)
    overlap = overlap_warning(detector, store, rows.keys)
    # config order, so metrics.json, the ROC legend and the table all read alike
    rank = {g: i for i, g in enumerate(present)}
    order = np.argsort([rank[g] for g in rows.groups], kind="stable")
    result = evaluate(probs[order], rows.labels[order], list(rows.groups[order]),
                      threshold=float(detector.threshold_))

    lines = [f"Benchmark: {config.name} ({len(present)} of {len(config.generators)} generators), "
             f"perturbation: {setting}", f"Model: `{model}`", f"Features: `{store}`"]
    if missing:
        lines.append("Missing generators (not in the mean): " + "; ".join(
            f"{g} ({why})" for g, why in missing.items()))
    if extra:
        lines.append("Groups not in the config (left out): " + ", ".join(extra))
    if failed:
        lines.append(f"{len(failed)} unreadable image(s) left out, e.g. "
                     + "; ".join(f"`{k}`: {v}" for k, v in sorted(failed.items())[:5]))
    if overlap:
        lines.append(f"**Warning: {overlap}.**")
    lines += list(notes)
    # one list item per line: markdown would join plain lines into one paragraph
    files = write_report(result, out_dir, title=f"{config.name}: {setting}",
                         extra_lines=[f"- {line}" for line in lines])
    md, csv_bytes = _paper_table(config, result, setting, missing, lines)
    files["benchmark_md"], files["benchmark_csv"] = out_dir / "benchmark.md", out_dir / "benchmark.csv"
    write_text(files["benchmark_md"], md)
    write_text(files["benchmark_csv"], csv_bytes)
    return SettingResult(setting, store, result, present, missing, extracted, reused,
                         dict(failed or {}), files), extra


def _paper_table(config: BenchmarkConfig, result: EvaluationResult, setting: str,
                 missing: dict[str, str], lines: Sequence[str]) -> tuple[str, str]:
    """The table of the paper: one row per generator in config order, then the mean."""
    groups = result.metrics["groups"]
    md = [f"# {config.name}: {setting}", "",
          f"Percent, threshold P(generated) > {result.threshold:g}. Mean = average over the "
          "generators present.",
          "", "| Generator | n | " + " | ".join(h for _, h in TABLE_COLUMNS) + " |",
          "|---|---:|" + "---:|" * len(TABLE_COLUMNS)]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["generator", "folder", "status", "n"] + [k for k, _ in TABLE_COLUMNS])

    def cell(v: float | None) -> str:
        return "–" if v is None else f"{100 * v:.2f}"

    for g in config.generators:
        m = groups.get(g.folder)
        if m is None:
            md.append(f"| {g.name} | {missing.get(g.folder, 'missing')} | "
                      + " | ".join("–" for _ in TABLE_COLUMNS) + " |")
            writer.writerow([g.name, g.folder, "missing", ""] + [""] * len(TABLE_COLUMNS))
            continue
        md.append(f"| {g.name} | {m['n']} | " + " | ".join(cell(m[k]) for k, _ in TABLE_COLUMNS)
                  + " |")
        writer.writerow([g.name, g.folder, "ok", m["n"]]
                        + ["" if m[k] is None else repr(float(m[k])) for k, _ in TABLE_COLUMNS])
    mean = result.metrics["mean"]
    n_total = sum(m["n"] for m in groups.values())
    md.append(f"| **Mean ({len(groups)}/{len(config.generators)})** | {n_total} | "
              + " | ".join(f"**{cell(mean[k])}**" for k, _ in TABLE_COLUMNS) + " |")
    writer.writerow(["mean", "", f"{len(groups)}/{len(config.generators)}", n_total]
                    + ["" if mean[k] is None else repr(float(mean[k])) for k, _ in TABLE_COLUMNS])
    md += [""] + [f"- {line}" for line in lines] + [""]
    return "\n".join(md), buffer.getvalue()


# --------------------------------------------------------------------------- robustness

def _sweep_point(p: Perturbation) -> tuple[str, float | None]:
    """(kind, strength) of a setting: "clean", one kind with its value, or a combination."""
    if p.is_clean:
        return "clean", None
    if len(p.steps) == 1:
        kind, value = p.steps[0]
        return kind, float(value)
    return "+".join(k for k, _ in p.steps), None


def write_robustness(settings: Sequence[tuple[Perturbation, SettingResult]],
                     out: Path) -> dict[str, Path]:
    """robustness.csv (every setting's means) and robustness.png (mean accuracy against
    strength per kind; combined settings are in the CSV only)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["setting", "kind", "strength", "generators", "accuracy", "ap",
                     "real_accuracy", "fake_accuracy", "auroc"])
    points = []
    for p, s in settings:
        kind, strength = _sweep_point(p)
        m = s.mean
        writer.writerow([s.setting, kind, "" if strength is None else _num(strength),
                         len(s.present)] + ["" if m[k] is None else repr(float(m[k]))
                                            for k in ("accuracy", "ap", "real_accuracy",
                                                      "fake_accuracy", "auroc")])
        if kind == "clean" or strength is not None:
            points.append((kind, 0.0 if strength is None else strength, m["accuracy"]))
    files = {"csv": out / "robustness.csv"}
    write_text(files["csv"], buffer.getvalue())
    if any(k != "clean" for k, _, _ in points):
        files["png"] = plot_sweep(points, out / "robustness.png",
                                  title="Mean accuracy under perturbations")
    return files


def _num(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else repr(float(v))


# --------------------------------------------------------------------------- runs

def cache_folder(cache: Path, root: Path, opts) -> Path:
    """The cache folder of one (root, AIM model, patch seed) combination: a root or model
    change never reuses rows whose keys merely look alike. (Changed weights under the same
    file name are caught by the store's provenance check.)"""
    ident = json.dumps({"root": os.path.abspath(root), "arch": os.path.abspath(opts.arch)
                        if os.path.exists(opts.arch) else opts.arch,
                        "backbone": os.path.abspath(opts.backbone),
                        "head": os.path.abspath(opts.head) if opts.head else None,
                        "probe": opts.probe, "seed": opts.seed, "precision": opts.precision,
                        "max_pixels": opts.max_pixels}, sort_keys=True)
    tag = hashlib.sha256(ident.encode()).hexdigest()[:10]
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(os.path.abspath(root)).name) or "root"
    return cache / f"{safe}-{tag}"


def run_benchmark(config: BenchmarkConfig, model: str | os.PathLike, out: str | os.PathLike, *,
                  root: str | os.PathLike | None = None, opts=None,
                  perturbations: Sequence[Perturbation] = (),
                  features: str | os.PathLike | None = None,
                  cache: str | os.PathLike | None = None,
                  notes: Sequence[str] = (),
                  allow_mismatch: bool = False) -> BenchmarkSummary | None:
    """Evaluate `model` on the benchmark: from images under `root` (extracting with the
    `raid.pipelines.extraction.ExtractOptions` `opts`, clean and under each perturbation,
    AIM loaded once for all), or from the ready store `features` (no images, no AIM).
    Features made otherwise than the model's training features are refused unless
    `allow_mismatch`. Returns None on the non-zero ranks of a multi-process extraction."""
    from raid.pipelines.provenance import check_provenance
    from raid.svm.detector import RaidDetector

    out = Path(out)
    if (root is None) == (features is None):
        raise RaidError("give either --root (images) or --features (a feature store)")
    if features is not None:
        if perturbations:
            raise RaidError("--perturb needs images (--root): a feature store is fixed")
        with FeatureStore(features) as fs:
            setting = str(fs.provenance.get("perturbation", CLEAN.name))
        s, extra = evaluate_benchmark_store(model, features, config, setting, out / setting,
                                            notes=notes, allow_mismatch=allow_mismatch)
        return BenchmarkSummary(config, out, [s], extra)

    # Lightning and AIM: imported only when images are used
    from raid.models.aim import load_config
    from raid.pipelines.extraction import extract
    from raid.pipelines.featurizer import Featurizer
    from raid.pipelines.pipeline import check_feature_size

    root = Path(root)
    if not root.is_dir():
        raise RaidError("no such benchmark folder", root)
    if opts is None:
        raise RaidError("extracting features needs the AIM options (--arch, --backbone)")
    detector = RaidDetector.load(model)
    check_feature_size(detector, load_config(opts.arch, opts.probe), model)
    featurizer = Featurizer.from_options(opts, device="cpu")  # once for every setting
    check_provenance(detector, featurizer.provenance, opts.backbone, model, allow_mismatch)
    folder = cache_folder(Path(cache) if cache is not None else out / "features", root, opts)
    folder.mkdir(parents=True, exist_ok=True)  # the stores' planning expects their folder
    sweep = [CLEAN] + [p for p in perturbations if not p.is_clean]
    wanted = set(config.folders)  # folders under the root that the config does not list stay untouched
    done: list[tuple[Perturbation, SettingResult]] = []
    extra: list[str] = []
    rank_zero = True
    for p in sweep:
        store = folder / f"{p.name}.h5"
        log.info("%s: features of %s -> %s", p.name, root, store)
        summary = extract(root, store, replace(opts, perturbation=p),
                          only=lambda key: key.split("/", 1)[0] in wanted,
                          featurizer=featurizer)
        if summary is None:  # another process of a multi-process run: extract, no report
            rank_zero = False
            continue
        s, extra = evaluate_benchmark_store(
            model, store, config, p.name, out / p.name, root=root, notes=notes,
            extracted=summary.done, reused=summary.already, failed=summary.failed)
        done.append((p, s))
    if not rank_zero:
        return None
    robustness = write_robustness(done, out) if len(done) > 1 else {}
    return BenchmarkSummary(config, out, [s for _, s in done], extra, robustness)
