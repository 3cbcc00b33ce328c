"""The paired (real, reconstructed) training data of `raid build-train`.

`PairedDataModule` reconstructs each batch of whole images (`datamodules.batches`) on the
device in `on_after_batch_transfer` with frozen autoencoders (injected as callables), then
chooses the texture-rich patch of every real and reconstructed image, and hands
`raid.pipelines.extraction.FeatureExtractor` the same flat batch that
`ImageFolderDataModule` gives it (key, label, group, patch, error).

Keys follow `raid.primitives.keys`: a real row keeps its image key (label 0, group
"real"); the reconstruction of `sub/a.jpg` by autoencoder `V` is row `V/sub/a.png`. Every
random choice is seeded by a key (latent noise by the *image* key, as `raid reconstruct`
does; the patch by the *row* key, as `raid extract --input OUT` does), so `raid
build-train` gives the features of `raid reconstruct --output OUT/V` followed by `raid
extract --input OUT`, and of `raid extract` on the real folder, without writing a single
image. (Equal to float rounding: run both with the same --batch-size, so the autoencoder
sees the same batches. Convolutions over other batch shapes, memory layouts or thread
counts round differently, which can move a reconstruction's floor(x * 255) by one level on
a few pixels.)
"""

from __future__ import annotations

from typing import Callable

import torch

from datamodules.batches import ImageBatchesDataModule, ReconstructFn, reconstruct_rows
from datamodules.images import ImageListing
from raid.primitives.images import DEFAULT_MAX_PIXELS
from raid.primitives.keys import REAL_GROUP, paired_key
from raid.primitives.layout import FAKE, REAL
from raid.primitives.patches import PATCH_SIZE, patch_rng, rich_patch, select_rich_patch


def _patch_of(image_chw: torch.Tensor, key: str, seed: int, size: int,
              position: tuple[int, int] | None = None) -> tuple[torch.Tensor, tuple[int, int] | None]:
    """The texture-rich (size, size, 3) uint8 patch of a (3, H, W) uint8 image on any
    device, seeded by `key` exactly as `raid extract` does, or the patch at `position`."""
    image = image_chw.permute(1, 2, 0)
    h, w = image.shape[:2]
    if h < size or w < size:  # resized whole (Pillow bilinear, on the CPU, as extraction)
        patch = rich_patch(image.cpu().numpy(), patch_rng(seed, key), size)
        return torch.from_numpy(patch).to(image.device), None
    if position is None:
        position = select_rich_patch(image, patch_rng(seed, key), size)
    top, left = position
    return image[top:top + size, left:left + size], position


class PairedDataModule(ImageBatchesDataModule):
    """Real photos and, made on the device, their reconstructions by frozen autoencoders,
    as rows for `FeatureExtractor` (see the module docstring).

    `reconstructors` maps a name (the row group and key prefix) to a `ReconstructFn`; it
    gets the batch's images on the batch's device and runs the autoencoder in its own
    precision and latent mode (`raid.pipelines.reconstruction.FrozenAutoencoder`).
    `recon_seed` (default `seed`) seeds the latent noise, `seed` the patches. `plan` (run
    on global rank 0, answer broadcast) returns the image keys to do; by default all of
    `listing`. `same_position=True` crops each reconstruction at its real image's patch
    position instead of choosing its own (then features differ from the offline path).
    """

    def __init__(self, listing: ImageListing, reconstructors: dict[str, ReconstructFn], *,
                 batch_size: int = 64, num_workers: int = 0, seed: int = 0,
                 recon_seed: int | None = None, patch_size: int = PATCH_SIZE,
                 max_pixels: int | None = DEFAULT_MAX_PIXELS, same_position: bool = False,
                 pin_memory: bool = False, plan: Callable[[], list[str]] | None = None):
        super().__init__(listing.root, plan or (lambda: list(listing.keys)),
                         batch_size=batch_size, num_workers=num_workers,
                         max_pixels=max_pixels, pin_memory=pin_memory)
        if not reconstructors:
            raise ValueError("at least one autoencoder is needed")
        self.listing, self.reconstructors = listing, dict(reconstructors)
        self.seed = seed
        self.recon_seed = seed if recon_seed is None else recon_seed
        self.patch_size, self.same_position = patch_size, same_position

    def on_after_batch_transfer(self, batch: dict, dataloader_idx: int) -> dict:
        return self.pair(batch)

    @torch.inference_mode()
    def pair(self, batch: dict) -> dict:
        """An `ImageBatches` batch (on its device) -> the flat rows FeatureExtractor takes:
        per image its real row, then one row per autoencoder; a failed image gives its real
        row only, with the reason."""
        keys, errors = batch["key"], batch["error"]
        if batch["images"]:
            device = batch["images"][0].device
        elif self.trainer is not None:
            device = self.trainer.strategy.root_device
        else:
            device = torch.device("cpu")
        real = {}
        for images, rows in zip(batch["images"], batch["rows"]):
            real.update(zip(rows, images))
        errors = list(errors)
        oom: dict[int, str] = {}  # an image out of memory alone fails alone, all its rows
        recon = {name: dict(reconstruct_rows(fn, batch, self.recon_seed, failed=oom))
                 for name, fn in self.reconstructors.items()}
        for i, reason in oom.items():
            errors[i] = errors[i] or reason
        out_keys, labels, groups, patches, out_errors = [], [], [], [], []
        blank = torch.zeros((self.patch_size, self.patch_size, 3), dtype=torch.uint8,
                            device=device)

        def add(key: str, label: int, group: str, patch: torch.Tensor, error: str) -> None:
            out_keys.append(key), labels.append(label), groups.append(group)
            patches.append(patch), out_errors.append(error)

        for i, key in enumerate(keys):
            if errors[i]:
                add(key, REAL, REAL_GROUP, blank, errors[i])
                continue
            patch, position = _patch_of(real[i], key, self.seed, self.patch_size)
            add(key, REAL, REAL_GROUP, patch, "")
            for name in self.reconstructors:
                row_key = paired_key(name, key)
                rpatch, _ = _patch_of(recon[name][i].to(device), row_key, self.seed,
                                      self.patch_size,
                                      position if self.same_position else None)
                add(row_key, FAKE, name, rpatch, "")
        return {"key": out_keys, "label": labels, "group": groups, "error": out_errors,
                "patch": torch.stack(patches) if patches else blank[None][:0]}
