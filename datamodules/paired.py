"""Whole images in batches of one size, and the paired (real, reconstructed) training data.

Two consumers share the size-grouped batches:

* `raid reconstruct` (`raid.pipelines.reconstruction`) feeds them to an autoencoder and writes PNGs.
* `PairedDataModule` (what `raid build-train` runs) reconstructs them on the device in
  `on_after_batch_transfer` with frozen autoencoders, then chooses the texture-rich patch
  of every real and reconstructed image, and hands `raid.pipelines.extraction.FeatureExtractor` the
  same flat batch that `ImageFolderDataModule` gives it (key, label, group, patch, error).

Keys: a real row keeps its image key (label 0, group "real"). The reconstruction of image
`sub/a.jpg` by autoencoder `V` gets the key `V/sub/a.png`: the path, relative to a folder
OUT, of the PNG that `raid reconstruct --output OUT/V` writes for it. Every random choice
is seeded by a key (latent noise by the *image* key, as `raid reconstruct` does; the patch
by the *row* key, as `raid extract --input OUT` does), so `raid build-train` gives the
features of `raid reconstruct --output OUT/V` followed by `raid extract --input OUT`, and of
`raid extract` on the real folder, without writing a single image. (Equal to float
rounding: run both with the same --batch-size, so the autoencoder sees the same batches.
Convolutions over other batch shapes, memory layouts or thread counts round differently,
which can move a reconstruction's floor(x * 255) by one level on a few pixels.)

Each dataset item is one whole batch (the loader runs with `batch_size=None`): the size
grouping then survives any sampler, including the distributed one Lightning puts in front
of every process's loader.
"""

from __future__ import annotations

import warnings
from pathlib import Path, PurePosixPath
from typing import Callable, Sequence

import lightning as L
import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from datamodules.images import ImageListing, make_loader, run_plan
from raid.models.autoencoders import Reconstructor
from raid.primitives.errors import RaidError
from raid.primitives.images import DEFAULT_MAX_PIXELS, load_rgb
from raid.primitives.layout import FAKE, REAL
from raid.primitives.patches import PATCH_SIZE, patch_rng, rich_patch, select_rich_patch
from raid.primitives.seeding import stable_seed

REAL_GROUP = "real"
Size = tuple[int, int]


# --------------------------------------------------------------------------- keys

def reconstruction_key(key: str) -> str:
    """Where `raid reconstruct` writes the reconstruction of `key`: same path, suffix .png."""
    return str(PurePosixPath(key).with_suffix(".png"))


def paired_key(autoencoder: str, key: str) -> str:
    """The row key of image `key` reconstructed by autoencoder `autoencoder`."""
    return f"{autoencoder}/{reconstruction_key(key)}"


def find_collisions(keys: Sequence[str]) -> dict[str, list[str]]:
    """Output key -> the inputs mapping to it, for outputs claimed by several inputs
    (`a.jpg` and `a.png` in one folder both become `a.png`)."""
    claims: dict[str, list[str]] = {}
    for key in keys:
        claims.setdefault(reconstruction_key(key), []).append(key)
    return {out: ins for out, ins in sorted(claims.items()) if len(ins) > 1}


def split_by_photo(keys: Sequence[str], fraction: float, seed: int = 0,
                   autoencoders: Sequence[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Split row keys into (kept indices, held-out indices) so that a photo and all its
    reconstructions always fall on the same side.

    A row's photo is its key without suffix and, for a reconstructed row, without the
    autoencoder prefix: `V/sub/a.png` and `sub/a.jpg` are both photo `sub/a`. With
    `autoencoders` (the group names of a store) the prefix is recognised exactly; without,
    a `.png` key whose path after its first folder is another key's photo counts as a
    reconstruction. Each photo is held out with probability ~`fraction`, decided by a hash
    of (seed, photo), so its side does not depend on which other rows exist.
    """
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must be in [0, 1], not {fraction}")
    keys = list(keys)
    photo_of = (photo_of_rows(autoencoders) if autoencoders is not None
                else _guess_photo_of(keys))
    threshold = int(fraction * (1 << 63))
    held = np.array([stable_seed(seed, photo_of(k), "split") < threshold for k in keys], bool)
    return np.flatnonzero(~held), np.flatnonzero(held)


def photo_of_rows(autoencoders: Sequence[str]) -> Callable[[str], str]:
    """Row key -> photo, for rows of the named autoencoders (and real rows)."""
    prefixes = tuple(f"{name}/" for name in autoencoders)

    def photo_of(key: str) -> str:
        for prefix in prefixes:
            if key.startswith(prefix):
                key = key[len(prefix):]
                break
        return str(PurePosixPath(key).with_suffix(""))

    return photo_of


def _guess_photo_of(keys: Sequence[str]) -> Callable[[str], str]:
    stems = {str(PurePosixPath(k).with_suffix("")) for k in keys}

    def photo_of(key: str) -> str:
        path = PurePosixPath(key)
        stem = str(path.with_suffix(""))
        if path.suffix == ".png" and len(path.parts) > 1:
            rest = str(PurePosixPath(*path.parts[1:]).with_suffix(""))
            if rest in stems:
                return rest
        return stem

    return photo_of


# --------------------------------------------------------------------------- size batches

def header_size(path: str | Path, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> Size | None:
    """(height, width) from the file's header (Pillow's lazy open: no pixel is decoded), or
    None when the header does not read (the file then fails, with its reason, at decoding)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(path) as image:
                width, height = image.size
    except Exception:  # any header problem: load_rgb will name it
        return None
    if width <= 0 or height <= 0 or (max_pixels is not None and width * height > max_pixels):
        return None
    return int(height), int(width)


def size_batches(sizes: Sequence[Size | None], batch_size: int) -> list[list[int]]:
    """Indices grouped into batches whose images share one size: sizes in sorted order,
    items of one size in their given order, files of unknown size in batches of their own."""
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    by_size: dict[Size | None, list[int]] = {}
    for i, size in enumerate(sizes):
        by_size.setdefault(None if size is None else tuple(size), []).append(i)
    order = sorted((s for s in by_size if s is not None)) + ([None] if None in by_size else [])
    return [idx[j:j + batch_size] for s in order for idx in [by_size[s]]
            for j in range(0, len(idx), batch_size)]


def plan_sizes(root: Path, keys: Sequence[str],
               max_pixels: int | None = DEFAULT_MAX_PIXELS) -> list[list]:
    """[[key, height, width], ...] (None for an unreadable header): what planning sends to
    every process."""
    out = []
    for key in keys:
        size = header_size(root / key, max_pixels)
        out.append([key, *(size if size is not None else (None, None))])
    return out


class ImageBatches(Dataset):
    """Item b = batch b of whole images: keys, labels, groups, errors, and the decoded
    images stacked per shape as uint8 (n, 3, H, W) tensors with the row indices they hold.

    Files are decoded with `raid.primitives.images.load_rgb` (extraction's policies); a file that
    fails is a row with its reason and no image. A file whose decoded size differs from
    its header still works: stacking is by decoded shape.
    """

    def __init__(self, root: Path, keys: Sequence[str], batches: Sequence[Sequence[int]],
                 labels: Sequence[int] | None = None, groups: Sequence[str] | None = None,
                 max_pixels: int | None = DEFAULT_MAX_PIXELS):
        self.root, self.keys, self.batches = Path(root), list(keys), [list(b) for b in batches]
        self.labels = list(labels) if labels is not None else [REAL] * len(self.keys)
        self.groups = list(groups) if groups is not None else [REAL_GROUP] * len(self.keys)
        self.max_pixels = max_pixels

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, b: int) -> dict:
        idx = self.batches[b]
        keys = [self.keys[i] for i in idx]
        errors, arrays = [], []
        for key in keys:
            try:
                arrays.append(load_rgb(self.root / key, self.max_pixels))
                errors.append("")
            except RaidError as exc:  # a broken file is recorded, not fatal
                arrays.append(None)
                errors.append(str(exc).removeprefix(f"{self.root / key}: "))
        by_shape: dict[tuple, list[int]] = {}
        for j, a in enumerate(arrays):
            if a is not None:
                by_shape.setdefault(a.shape, []).append(j)
        images, rows = [], []
        for shape, js in by_shape.items():
            stacked = torch.from_numpy(np.stack([arrays[j] for j in js]))
            images.append(stacked.permute(0, 3, 1, 2).contiguous())
            rows.append(js)
        return {"key": keys, "label": [self.labels[i] for i in idx],
                "group": [self.groups[i] for i in idx], "error": errors,
                "images": images, "rows": rows}


def batch_loader(dataset: Dataset, num_workers: int, pin_memory: bool) -> DataLoader:
    """RAID's prediction loader over a dataset whose items are whole batches."""
    return make_loader(dataset, None, num_workers, pin_memory)  # type: ignore[arg-type]


def reconstruct_rows(reconstructor: Reconstructor, batch: dict, seed: int,
                     latent: str) -> list[tuple[int, torch.Tensor]]:
    """Reconstruct every decoded image of an `ImageBatches` batch: [(row, uint8 (3, H, W))]
    in row order; each image's latent noise is seeded from (seed, its key, "noise")."""
    out: list[tuple[int, torch.Tensor]] = []
    keys = batch["key"]
    for images, rows in zip(batch["images"], batch["rows"]):
        seeds = [stable_seed(seed, keys[i], "noise") for i in rows]
        device = images.device
        # Lightning's mixed precision must not touch the autoencoder: the Reconstructor
        # runs in its own precision (float32 by default, like the seed).
        with torch.autocast(device_type=device.type, enabled=False):
            recon = reconstructor.reconstruct(images.to(reconstructor.device), seeds, latent)
        out += list(zip(rows, recon))
    return sorted(out, key=lambda t: t[0])


class ImageBatchesDataModule(L.LightningDataModule):
    """Prediction data: the images `plan` returns (called on global rank 0 once the
    processes are up; every process gets its answer), in batches of one size. The image
    sizes are read from the headers during planning, so every process batches alike."""

    def __init__(self, root: str | Path, plan: Callable[[], list[str]], *,
                 batch_size: int = 16, num_workers: int = 0,
                 max_pixels: int | None = DEFAULT_MAX_PIXELS, pin_memory: bool = False):
        super().__init__()
        self.root, self.plan = Path(root), plan
        self.batch_size, self.num_workers, self.pin_memory = batch_size, num_workers, pin_memory
        self.max_pixels = max_pixels
        self.dataset: ImageBatches | None = None

    def planned_keys(self) -> list[str]:
        """The keys to do (on rank 0). Subclasses narrow them."""
        return self.plan()

    def setup(self, stage: str) -> None:
        planned = run_plan(getattr(self, "trainer", None),
                           lambda: plan_sizes(self.root, self.planned_keys(), self.max_pixels))
        keys = [k for k, _, _ in planned]
        sizes = [None if h is None else (h, w) for _, h, w in planned]
        self.dataset = ImageBatches(self.root, keys, size_batches(sizes, self.batch_size),
                                    max_pixels=self.max_pixels)

    def predict_dataloader(self) -> DataLoader:
        return batch_loader(self.dataset, self.num_workers, self.pin_memory)


# --------------------------------------------------------------------------- paired data

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

    `autoencoders` maps a name (the row group and key prefix) to a loaded autoencoder; it
    is moved to the batch's device on first use. `plan` (run on global rank 0, answer
    broadcast) returns the image keys to do; by default all of `listing`.
    `same_position=True` crops each reconstruction at its real image's patch position
    instead of choosing its own (then features differ from the offline path).
    `part="kept"` / `"held-out"` keeps one side of `split_by_photo(keys, holdout,
    split_seed)`: a photo's real and reconstructed rows always come together.
    """

    def __init__(self, listing: ImageListing, autoencoders: dict[str, torch.nn.Module], *,
                 batch_size: int = 64, num_workers: int = 0, seed: int = 0,
                 recon_seed: int | None = None, latent: str = "sample",
                 precision: str = "fp32", patch_size: int = PATCH_SIZE,
                 max_pixels: int | None = DEFAULT_MAX_PIXELS, same_position: bool = False,
                 pin_memory: bool = False, plan: Callable[[], list[str]] | None = None,
                 holdout: float = 0.0, part: str = "all", split_seed: int = 0):
        super().__init__(listing.root, plan or (lambda: list(listing.keys)),
                         batch_size=batch_size, num_workers=num_workers,
                         max_pixels=max_pixels, pin_memory=pin_memory)
        if part not in ("all", "kept", "held-out"):
            raise ValueError(f"part must be all, kept or held-out, not {part!r}")
        if not autoencoders:
            raise ValueError("at least one autoencoder is needed")
        self.listing, self.autoencoders = listing, dict(autoencoders)
        self.seed = seed
        self.recon_seed = seed if recon_seed is None else recon_seed
        self.latent, self.precision, self.patch_size = latent, precision, patch_size
        self.same_position = same_position
        self.holdout, self.part, self.split_seed = holdout, part, split_seed
        self._reconstructors: dict[str, Reconstructor] = {}

    def planned_keys(self) -> list[str]:
        keys = self.plan()
        if self.part != "all":  # whole photos: their reconstructions follow them
            kept, held = split_by_photo(keys, self.holdout, self.split_seed, ())
            keys = [keys[i] for i in (kept if self.part == "kept" else held)]
        return keys

    def reconstructor(self, name: str, device: torch.device) -> Reconstructor:
        rec = self._reconstructors.get(name)
        if rec is None or rec.device != device:
            model = self.autoencoders[name].to(device)
            rec = self._reconstructors[name] = Reconstructor(model, precision=self.precision)
        return rec

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
        recon = {name: dict(reconstruct_rows(self.reconstructor(name, device), batch,
                                             self.recon_seed, self.latent))
                 for name in self.autoencoders}
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
            for name in self.autoencoders:
                row_key = paired_key(name, key)
                rpatch, _ = _patch_of(recon[name][i].to(device), row_key, self.seed,
                                      self.patch_size,
                                      position if self.same_position else None)
                add(row_key, FAKE, name, rpatch, "")
        return {"key": out_keys, "label": labels, "group": groups, "error": out_errors,
                "patch": torch.stack(patches) if patches else blank[None][:0]}
