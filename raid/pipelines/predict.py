"""The one place RAID builds a Lightning Trainer and runs a prediction.

    trainer = run_predict(module, datamodule, accelerator="auto", devices="auto",
                          strategy="auto", num_nodes=1, precision="32",
                          callbacks=[writer])

`module` is a LightningModule whose `predict_step` returns what the `callbacks` (e.g. a
`BasePredictionWriter`) consume; nothing is collected in memory. `precision` is a RAID
name ("32", "bf16-mixed", "bf16") or a Lightning one ("32-true"). Returns the trainer once
every process has finished (`trainer.is_global_zero` says which process merges results).

Progress goes to stderr (stdout is for tables and CSV), counts images, is named for the
stage ("extracting", "reconstructing"), moves inside a slow reconstruction batch too, and
is silent when the "raid" logger is above INFO (`raid -q`). Ctrl-C comes back as
KeyboardInterrupt (Lightning turns it into `sys.exit(1)` and ignores further Ctrl-C), so
callers and `raid` treat it as one.
"""

from __future__ import annotations

import logging
from typing import Any, Sequence

import lightning as L
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.callbacks.progress.progress_bar import ProgressBar

from raid.pipelines.featurizer import PRECISIONS
from raid.primitives import interrupts
from raid.primitives.keys import REAL_GROUP
from raid.primitives.progress import Progress

#: The stage a module's class stands for, when the module does not say (`stage`).
STAGES = {"FeatureExtractor": "extracting", "ReconstructionModule": "reconstructing"}


def stage_of(module: Any, datamodule: Any) -> str:
    """What a run is doing, for its progress line."""
    if getattr(module, "stage", None):
        return module.stage
    if getattr(datamodule, "reconstructors", None):  # build-train: photos in, rows out
        return "reconstructing + extracting"
    return STAGES.get(type(module).__name__, "predicting")


class ImagesPerSecondBar(ProgressBar):
    """A progress line on stderr counting images (a batch's "key" entries; for paired
    batches, its real rows: one per photo), with images/s, on global rank 0 only.

    Inside a batch it also moves as the run's autoencoders finish their coarse stages (a
    batch of SD VAE reconstructions on a CPU takes minutes): by whole images crossed,
    each photo counting once over all autoencoders; the batch's end sets the exact count.
    """

    delay = 2.0  # seconds before the bar shows (short runs stay quiet)

    def __init__(self, stage: str = "predicting"):
        super().__init__()
        self.stage = stage
        self._enabled = True
        self._progress: Progress | None = None
        self._watched: list = []  # the autoencoders whose stages move the line
        self._partial = 0.0  # images of this batch done, by autoencoder stages
        self._advanced = 0  # whole images of this batch already on the line

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    @property
    def images(self) -> int:
        return self._progress.count if self._progress is not None else 0

    def on_predict_start(self, trainer, pl_module) -> None:
        if (self._enabled and trainer.is_global_zero
                and logging.getLogger("raid").isEnabledFor(logging.INFO)):
            self._progress = Progress(self.stage, _total_images(trainer), "images",
                                      delay=self.delay)
            self._watched = _autoencoders(trainer, pl_module)
            for autoencoder in self._watched:
                autoencoder.on_stage = self._stage_done

    def _stage_done(self, images: float) -> None:
        """An autoencoder stage ended on `images` images' worth (negative: taken back)."""
        self._partial += images / len(self._watched)
        whole = int(self._partial + 1e-9)  # 10 stages of 0.6 image: 6, not 5.999...
        if whole != self._advanced and self._progress is not None:
            self._progress.update(whole - self._advanced)
            self._advanced = whole

    def on_predict_batch_end(self, trainer, pl_module, outputs, batch, batch_idx,
                             dataloader_idx=0) -> None:
        interrupts.check()  # a Ctrl-C that garbage collection swallowed
        if self._progress is None:
            return
        if getattr(trainer.datamodule, "reconstructors", None) and "group" in batch:
            n = sum(g == REAL_GROUP for g in batch["group"])
        else:
            n = len(batch["key"])
        self._progress.update(n - self._advanced)
        self._partial, self._advanced = 0.0, 0

    def _close(self) -> None:
        for autoencoder in self._watched:
            autoencoder.on_stage = None
        self._watched = []
        if self._progress is not None:
            self._progress.close()
            self._progress = None

    def on_predict_end(self, trainer, pl_module) -> None:
        self._close()

    def on_exception(self, trainer, pl_module, exception) -> None:
        self._close()


def _autoencoders(trainer, pl_module) -> list:
    """What reconstructs in this run and can report its stages (`on_stage`): the module's
    autoencoder (`raid reconstruct`) or the data module's (`raid build-train`)."""
    found = [getattr(pl_module, "reconstruct", None),
             *(getattr(trainer.datamodule, "reconstructors", None) or {}).values()]
    return [a for a in found if hasattr(a, "on_stage")]


def _total_images(trainer) -> int | None:
    """The images this run will see, from the datamodule's dataset (not from
    `trainer.predict_dataloaders`: touching it here loses the prefetched first batch)."""
    dm = trainer.datamodule
    work = getattr(getattr(dm, "work", None), "keys", None)  # the images still to do
    if work is not None:
        return len(work) or None
    try:
        return len(dm.dataset) or None
    except (TypeError, AttributeError):
        return None


def quiet_lightning() -> None:
    """Keep Lightning's start-up lines (devices found, tips) out of RAID's output unless
    the log level is debug. Done as each Trainer is built: importing Lightning sets its
    loggers to INFO and gives "lightning" a console handler (each line showed twice)."""
    root = logging.getLogger()
    debug = root.isEnabledFor(logging.DEBUG)
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.DEBUG if debug else logging.WARNING)
    if root.handlers:  # the root's handler shows them, once
        lightning_log = logging.getLogger("lightning")
        for handler in list(lightning_log.handlers):
            lightning_log.removeHandler(handler)


def make_trainer(*, accelerator: str = "auto", devices: Any = "auto", strategy: str = "auto",
                 num_nodes: int = 1, precision: str = "32",
                 callbacks: Sequence[Callback] = (), stage: str = "predicting") -> L.Trainer:
    """A prediction-only Trainer: no logger, no checkpoints, no summary, inference mode."""
    quiet_lightning()
    return L.Trainer(
        accelerator=accelerator, devices=devices, strategy=strategy, num_nodes=num_nodes,
        precision=PRECISIONS.get(precision, precision), logger=False,
        callbacks=[*callbacks, ImagesPerSecondBar(stage)], enable_checkpointing=False,
        enable_model_summary=False, inference_mode=True)


def run_predict(module: L.LightningModule, datamodule: L.LightningDataModule, *,
                accelerator: str = "auto", devices: Any = "auto", strategy: str = "auto",
                num_nodes: int = 1, precision: str = "32",
                callbacks: Sequence[Callback] = (), stage: str | None = None) -> L.Trainer:
    """Run `module` over `datamodule` (see the module docstring); returns the trainer."""
    trainer = make_trainer(accelerator=accelerator, devices=devices, strategy=strategy,
                           num_nodes=num_nodes, precision=precision, callbacks=callbacks,
                           stage=stage or stage_of(module, datamodule))
    try:
        trainer.predict(module, datamodule=datamodule, return_predictions=False)
    except SystemExit:
        if trainer.interrupted:  # Lightning's answer to Ctrl-C: make it one again
            interrupts.restore()  # Lightning ignores further Ctrl-C
            raise KeyboardInterrupt from None
        raise
    interrupts.check()  # one that came during the last batch and was swallowed
    trainer.strategy.barrier()  # every process has finished writing
    return trainer
