"""`raid build-train`: the features of real photos and of their reconstructions by one or
more autoencoders, in one pass, straight into a training feature store.

`datamodules.paired.PairedDataModule` reconstructs on the device (with
`raid.pipelines.reconstruction.FrozenAutoencoder`), and the same `FeatureExtractor` and
shard writer as `raid extract` store the rows. Its rows equal those of `raid reconstruct
--output OUT/<name>` + `raid extract --input OUT` (same seeds, same batch size; keys as
`raid.primitives.keys` says).
"""

from __future__ import annotations

import os
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import torch

from datamodules.images import ImageListing, WorkPlan, discover_images
from datamodules.paired import PairedDataModule
from raid.models.aim import load_aim, load_config
from raid.models.autoencoders import (LATENTS, PRECISIONS, autoencoder_digest,
                                      autoencoder_name, load_autoencoder)
from raid.pipelines.extraction import (ExtractOptions, FeatureExtractor, aim_provenance,
                                       locked_plan, plan_work, run_prediction)
from raid.pipelines.reconstruction import FrozenAutoencoder, quiet_batch_indices
from raid.primitives.errors import RaidError
from raid.primitives.keys import REAL_GROUP, display_key, find_collisions, paired_key
from raid.primitives.layout import FAKE, REAL
from raid.store.store import FeatureStore


@dataclass
class BuildSummary:
    store: Path
    photos: int  # photos found (without collisions)
    done: int  # rows added by this run
    already: int  # photos whose rows were all in the store
    failed: dict[str, str]
    collisions: dict[str, list[str]]
    skipped: list[str]
    counts: dict[str, dict[int, int]] = field(default_factory=dict)
    dropped_shards: int = 0

    def lines(self) -> list[str]:
        colliding = sum(len(v) for v in self.collisions.values())
        out = [f"{self.store}: {self.done} rows added, {self.already} photos already complete, "
               f"{len(self.failed)} failed, {colliding} left out (reconstruction name "
               f"collisions), {len(self.skipped)} skipped (not images)"]
        kinds = {REAL: "real", FAKE: "reconstructed"}
        for group, by_label in self.counts.items():
            out.append(f"  {group}: " + ", ".join(
                f"{n} {kinds.get(label, 'unknown')}" for label, n in sorted(by_label.items())))
        out += [f"  failed {display_key(key)}: {reason}"
                for key, reason in sorted(self.failed.items())]
        out += [f"  collision {target}: {', '.join(inputs)} (left out)"
                for target, inputs in self.collisions.items()]
        if self.dropped_shards:
            out.append(f"  {self.dropped_shards} damaged shard(s) of an interrupted run "
                       "were dropped; their photos were done again")
        return out


def _autoencoder_names(vaes: Sequence[str | os.PathLike]) -> list[str]:
    """The group name of each autoencoder (its folder name), checked to be usable."""
    if not vaes:
        raise RaidError("at least one autoencoder (--vae) is needed")
    names = [autoencoder_name(v) for v in vaes]
    for name in set(names):
        if names.count(name) > 1:
            raise RaidError(f"two autoencoders are named {name!r} (the folder name names "
                            "the group); rename one folder")
    if REAL_GROUP in names:
        raise RaidError(f"an autoencoder may not be named {REAL_GROUP!r} (the real group)")
    return names


def build_train(real_dir: str | os.PathLike, vaes: Sequence[str | os.PathLike],
                store: str | os.PathLike, opts: ExtractOptions, *, latent: str = "sample",
                recon_seed: int | None = None, recon_precision: str = "fp32",
                same_position: bool = False) -> BuildSummary | None:
    """Features of every photo under `real_dir` (group "real", label 0) and of its
    reconstruction by each autoencoder in `vaes` (group = autoencoder name, label 1) into
    `store`, without writing images; resumable like `extract` (the work list is the photos
    with any row missing). `recon_seed` (default `opts.seed`) seeds the latent noise,
    `opts.seed` the patches. Returns the summary on global rank 0, else None."""
    names = _autoencoder_names(vaes)
    if latent not in LATENTS:
        raise RaidError(f"latent must be one of {', '.join(LATENTS)}, not {latent!r}")
    if recon_precision not in PRECISIONS:
        raise RaidError(f"autoencoder precision must be one of {', '.join(PRECISIONS)}")
    store = Path(store)
    recon_seed = opts.seed if recon_seed is None else recon_seed

    if Path(real_dir).is_file():
        raise RaidError("is a file: build-train takes a folder of real photos (to score "
                        "single images, use `raid detect`)", real_dir)
    found = discover_images(real_dir)
    if not found.keys:  # an error, before anything is loaded or created
        raise RaidError("no images found in this folder", real_dir)
    reconstructors = {name: FrozenAutoencoder(load_autoencoder(v), recon_precision, latent)
                      for name, v in zip(names, vaes)}
    collisions = find_collisions(found.keys)
    colliding = {k for ins in collisions.values() for k in ins}
    listing = found.subset([k for k in found.keys if k not in colliding])

    config = load_config(opts.arch, opts.probe)
    model = load_aim(config, opts.backbone, opts.head, truncate=True)
    store.parent.mkdir(parents=True, exist_ok=True)  # the store's lock lives beside it
    dim = config.width
    provenance = aim_provenance(config, opts)
    provenance["training_pairs"] = {
        "autoencoders": [{"name": n, "digest": autoencoder_digest(v)}
                         for n, v in zip(names, vaes)],
        "latent": latent, "seed": recon_seed, "precision": recon_precision,
        "output": "floor(x * 255), 8-bit, input size (padded to the factor, cropped back)",
        "patch_position": "same as real" if same_position else "own",
        "real_group": REAL_GROUP,
    }
    rows_of = {k: [k] + [paired_key(n, k) for n in names] for k in listing.keys}
    all_rows = [r for k in listing.keys for r in rows_of[k]]

    def plan(run: str) -> WorkPlan:
        """The photos with any row missing; `already` counts rows present before."""
        rows = plan_work(store, dim, provenance,
                         ImageListing(listing.root, all_rows, [REAL] * len(all_rows),
                                      [REAL_GROUP] * len(all_rows)), run)
        missing = set(rows.keys)
        return WorkPlan([k for k in listing.keys if any(r in missing for r in rows_of[k])],
                        already=rows.already, dropped=rows.dropped, run=run, notes=rows.notes)

    with ExitStack() as lock, quiet_batch_indices():
        datamodule = PairedDataModule(
            listing, reconstructors, batch_size=opts.batch_size, num_workers=opts.num_workers,
            seed=opts.seed, recon_seed=recon_seed, patch_size=config.image_size,
            max_pixels=opts.max_pixels, same_position=same_position,
            plan=locked_plan(lock, store, plan),
            pin_memory=opts.accelerator != "cpu" and torch.cuda.is_available())
        if not run_prediction(FeatureExtractor(model, opts.compile), datamodule, store, dim,
                              provenance, opts, root=listing):
            return None
    with FeatureStore(store) as fs:
        failures = fs.failures()
        present = set(fs.keys())
        counts = fs.counts()
    work = datamodule.work
    return BuildSummary(
        store=store, photos=len(listing.keys),
        done=len(set(all_rows) & present) - work.already,
        already=len(listing.keys) - len(work.keys),
        failed={k: v for k, v in failures.items() if k in rows_of},
        collisions=collisions, skipped=found.other_files, counts=counts,
        dropped_shards=work.dropped)
