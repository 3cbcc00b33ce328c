"""`raid demo`: the whole RAID pipeline in one command.

Without a config it runs on material it makes itself, in a few tens of seconds on a laptop
CPU: synthetic "photos" (smooth gradients, soft shapes, grain), a benchmark-shaped tree of
a few "generators" whose fakes come from simple, different procedures (one with nested
subsets, one listed but missing), a tiny random-weight AIM (official two-file layout) and a
tiny random AutoencoderKL (diffusers `save_pretrained`). Its numbers come from untrained
smoke models and mean nothing; it shows that every step runs and what each one leaves.

With `--config raid.yaml` the same steps run on real checkpoints and folders (see
configs/raid.yaml for the keys; `raid.pipelines.demo_config` reads it). The synthetic
material is made by `raid.pipelines.demo_data`.

Steps: reconstruct (PNGs to look at) -> build-train (features of the real photos and
their reconstructions) -> fit -> bundle (the detector with its AIM model named, for `raid
detect --model BUNDLE` and the service; the smoke checkpoints are copied in) -> benchmark
(clean + perturbed, the paper's tables) -> detect (with the bundle). Every step reuses what an earlier run into the same folder left: images and
models are kept, feature stores are completed, the detector is refitted only when its
training store changed.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

from raid.pipelines.demo_config import DemoPlan
from raid.pipelines.demo_data import INTENTIONAL
from raid.primitives.fileio import write_text
from raid.primitives.hashing import file_sha256

log = logging.getLogger(__name__)

#: What each step does, said as it starts.
STEPS = {
    "reconstruct": "autoencoder reconstructions of the real photos, as PNGs to look at",
    "build-train": "features of the real photos and of their reconstructions (training store)",
    "fit": "the SVM detector on the training store",
    "bundle": "the detector and its AIM model in one folder, for detect and the service",
    "benchmark": "the detector on every generator folder, clean and perturbed",
    "detect": "P(generated) for the images of the detect folder, with the bundle",
}

SMOKE_WARNING = ("These numbers come from untrained smoke models (a random-weight AIM, a "
                 "random-weight autoencoder and synthetic images) and mean NOTHING about "
                 "RAID's accuracy; the demo only shows that the pipeline runs end to end.")


@dataclass
class DemoSummary:
    out: Path
    report: Path
    steps: list[tuple[str, float, str]]  # (step, seconds, outcome)
    synthetic: bool
    benchmark: Any = None
    detections: Any = None
    bundle: Path | None = None  # the detector bundle folder (`raid detect --model` takes it)

    def lines(self) -> list[str]:
        out = [f"{name:<12} {seconds:6.1f} s  {what}" for name, seconds, what in self.steps]
        total = sum(s for _, s, _ in self.steps)
        out.append(f"{'steps total':<12} {total:6.1f} s")
        if self.benchmark is not None:
            table = self.benchmark.settings[0].files.get("benchmark_md")
            if table is not None:
                out += ["", *_table_lines(Path(table))]
        if self.synthetic:
            out += ["", "NOTE: " + SMOKE_WARNING,
                    *(f"Failure on purpose: {why}." for why in INTENTIONAL.values())]
        out += ["", f"report: {self.report / 'report.md'}  (folder {self.report})"]
        if self.bundle is not None:
            out.append(f"detector bundle: {self.bundle}  (raid detect --model {self.bundle} "
                       "IMAGE ...)")
        return out


def _table_lines(path: Path) -> list[str]:
    return [line for line in path.read_text(encoding="utf-8").splitlines()
            if line.startswith("|")]


def _fit(store: Path, model: Path, params: dict, seed: int) -> str:
    """Fit unless the saved model was fitted on this very store with these parameters."""
    from raid.pipelines.train import fit_store

    stamp = model.with_name(model.name + ".fitted-on.json")
    ident = {"store_sha256": file_sha256(store), "params": params, "seed": seed}
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
    from raid.pipelines.build_train import build_train
    from raid.pipelines.bundle import write_bundle
    from raid.pipelines.detect import detect, write_detections
    from raid.pipelines.extraction import ExtractOptions
    from raid.pipelines.reconstruction import ReconstructOptions, reconstruct_folder
    from raid.primitives.perturb import parse_sweep

    out = plan.out
    report = out / "report"
    opts = ExtractOptions(**plan.aim, **plan.run)
    steps: list[tuple[str, float, str]] = []
    notes = [f"**{SMOKE_WARNING}**"] if plan.synthetic else []

    def step(name: str, fn: Callable[[], Any], describe: Callable[[Any], str]) -> Any:
        log.info("== %s: %s", name, STEPS[name])
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
    bundle = step("bundle", lambda: write_bundle(
        out / "bundle", model, arch=opts.arch, backbone=opts.backbone, head=opts.head,
        probe=opts.probe, precision=opts.precision, seed=opts.seed,
        copy_checkpoints=plan.synthetic),
        lambda b: f"{b} (raid detect --model {b} IMAGE ...)")
    if plan.synthetic:
        log.info("note: a failure on purpose: %s", INTENTIONAL["missing"])
    bench = step("benchmark", lambda: run_benchmark(
        load_benchmark_config(plan.benchmark_config), model, report,
        root=plan.benchmark_root, opts=opts, perturbations=parse_sweep(plan.perturb)
        if plan.perturb else [], cache=out / "features" / "benchmark", notes=notes),
        _describe_benchmark)
    if bench is None:
        return None
    detections = None
    if plan.detect:
        # the bundle names its AIM model: only how to run comes from the options
        run_only = replace(opts, arch=None, backbone=None, head=None)
        if plan.synthetic:
            log.info("note: a failure on purpose: %s", INTENTIONAL["broken"])
        detections = step("detect", lambda: detect(plan.detect, bundle, run_only),
                          lambda d: d.table().splitlines()[-1])
        if detections is None:
            return None
        write_detections(detections, report / "detections.csv")
    summary = DemoSummary(out, report, steps, plan.synthetic, bench, detections, bundle)
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
        lines += [f"> **{SMOKE_WARNING}**", "", "Failures on purpose:", ""]
        lines += [f"- {why}." for why in INTENTIONAL.values()] + [""]
    lines += ["## Steps", "", "| Step | Seconds | Outcome |", "|---|---:|---|"]
    lines += [f"| {n} | {s:.1f} | {w.replace('|', '/')} |" for n, s, w in summary.steps]
    lines += ["", f"Detector: `{model}`; bundle: `{summary.bundle}` (`raid detect --model "
                  f"{summary.bundle} IMAGE ...` runs it with no other flag)", ""]
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
           "model": str(model), "bundle": str(summary.bundle),
           "benchmark": {s.setting: s.result.metrics["mean"] for s in bench.settings},
           "missing_generators": list(bench.settings[0].missing) if bench.settings else []}
    write_text(report / "summary.json", json.dumps(doc, indent=2) + "\n")
