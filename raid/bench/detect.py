"""`raid bench detect`: `raid detect` through the loaded pipeline against the previous path.

Previous path (kept here only, as the baseline): the files of each parent folder linked
into a temporary folder, a Lightning Trainer extracting them into a temporary feature
store (AIM loaded and its checkpoints hashed per folder), the store read back and scored.
New path: `raid.pipelines.detect.detect`, a `DetectorPipeline` with AIM loaded once and
features computed in memory. Both are timed end to end (model loading included) on the
same synthetic images, in one run, side by side; the probabilities must agree to 1e-6
(exit code 1 otherwise). A third figure: the new path with the pipeline already loaded,
as a service runs it.

Without `--backbone`, a random-weight AIM of `--arch` (default: the demo's tiny size) is
written to a temporary folder: its cost is then mostly the pipeline's own overhead.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

HELP = "raid detect: loaded pipeline (in memory) vs the previous temp-store + Trainer path"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--images", type=int, nargs="+", default=[1, 100],
                   help="numbers of images to score (one comparison each)")
    p.add_argument("--height", type=int, default=384)
    p.add_argument("--width", type=int, default=512)
    p.add_argument("--arch", default=None, help="AIM size (default: the demo's tiny size)")
    p.add_argument("--backbone", default=None, help="AIM checkpoint (default: random weights)")
    p.add_argument("--head", default=None)
    p.add_argument("--accelerator", default="cpu", choices=["cpu", "gpu", "auto"])
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--num-workers", type=int, default=0,
                   help="decoding workers (processes for the old path, threads for the new)")


def _old_detect(files: list[Path], model: Path, opts, tmp: Path) -> dict[str, float]:
    """The previous `raid detect` for files: stage per parent folder, extract, score."""
    from raid.pipelines.extraction import extract
    from raid.store.store import FeatureStore
    from raid.svm.detector import RaidDetector

    detector = RaidDetector.load(model)
    by_parent: dict[str, list[Path]] = {}
    for f in files:
        by_parent.setdefault(os.path.abspath(f.parent), []).append(f)
    probs: dict[str, float] = {}
    for n, group in enumerate(by_parent.values()):
        staged = tmp / f"images{n}"
        staged.mkdir(parents=True)
        for f in group:
            os.symlink(os.path.abspath(f), staged / f.name)
        summary = extract(staged, tmp / f"features{n}.h5", opts)
        with FeatureStore(summary.store) as fs:
            rows = fs.read()
        p = detector.predict_proba(rows.features)[:, 1]
        parent = group[0].parent
        probs.update({str(parent / k): float(v) for k, v in zip(rows.keys, p)})
    return probs


def _setup(args: argparse.Namespace, work: Path) -> tuple[dict, Path, int]:
    """AIM files (given, or random weights), and a detector fitted on random features."""
    import numpy as np

    from raid.models.aim import load_config, random_aim, save_official_checkpoint
    from raid.pipelines.demo_data import TINY_AIM_YAML
    from raid.pipelines.featurizer import FeaturizerSettings, aim_provenance
    from raid.svm.detector import RaidDetector

    arch = args.arch
    if arch is None:
        arch = str(work / "tiny.yaml")
        Path(arch).write_text(TINY_AIM_YAML)
    config = load_config(arch)
    aim = {"arch": arch, "backbone": args.backbone, "head": args.head}
    if args.backbone is None:
        save_official_checkpoint(random_aim(config), work / "backbone.pth", work / "head.pth")
        aim.update(backbone=str(work / "backbone.pth"), head=str(work / "head.pth"))
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, config.width)).astype(np.float32)
    y = np.repeat([0, 1], 100)
    X[y == 1] += 0.2
    model = work / "detector.safetensors"
    provenance = aim_provenance(config, FeaturizerSettings(arch, aim["backbone"], aim["head"]))
    RaidDetector(backend="sklearn", progress=False).fit(X, y).save(
        model, provenance={**provenance, "feature_dim": config.width})
    return aim, model, config.image_size


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from raid.pipelines.detect import detect, load_pipeline
    from raid.pipelines.extraction import ExtractOptions
    from raid.primitives.synthetic import photo, rng_for, write_image

    worst = 0.0
    with tempfile.TemporaryDirectory(prefix="raid-bench-detect-") as tmp:
        work = Path(tmp)
        aim, model, _ = _setup(args, work)
        opts = ExtractOptions(**aim, batch_size=args.batch_size, num_workers=args.num_workers,
                              accelerator=args.accelerator, devices=1)
        print(f"raid detect, {args.height} x {args.width} PNGs, AIM {Path(aim['arch']).stem}, "
              f"{args.accelerator}, batch {args.batch_size}")
        for n, count in enumerate(args.images):
            folder = work / f"in{n}"
            files = [folder / f"{i:05d}.png" for i in range(count)]
            for f in files:
                write_image(f, photo(rng_for(0, f.name), args.height, args.width))
            t0 = time.perf_counter()
            old = _old_detect(files, model, opts, work / f"old{n}")
            t_old = time.perf_counter() - t0
            t0 = time.perf_counter()
            new = detect(files, model, opts)
            t_new = time.perf_counter() - t0
            pipe = load_pipeline(model, opts)
            t0 = time.perf_counter()
            detect(files, model, pipeline=pipe)
            t_loaded = time.perf_counter() - t0
            dp = max(abs(d.p_generated - old[d.path]) for d in new.detections)
            worst = max(worst, dp)
            print(f"{count:5d} image(s): previous {t_old:7.3f} s, pipeline {t_new:7.3f} s "
                  f"(x{t_old / t_new:.1f}), pipeline already loaded {t_loaded:7.3f} s "
                  f"(x{t_old / t_loaded:.1f}); max |dp| {dp:.1e}")
    ok = worst <= 1e-6
    print(f"probabilities {'agree' if ok else 'DIFFER'} (max |dp| {worst:.1e}, limit 1e-6)")
    return 0 if ok else 1
