"""The one place RAID builds a Lightning Trainer and runs a prediction.

    trainer = run_predict(module, datamodule, accelerator="auto", devices="auto",
                          strategy="auto", num_nodes=1, precision="32",
                          callbacks=[writer])

`module` is a LightningModule whose `predict_step` returns what the `callbacks` (e.g. a
`BasePredictionWriter`) consume; nothing is collected in memory. `precision` is a RAID
name ("32", "bf16-mixed", "bf16") or a Lightning one ("32-true"). Returns the trainer once
every process has finished (`trainer.is_global_zero` says which process merges results).
An images-per-second progress bar is added.
"""

from __future__ import annotations

from typing import Any, Sequence

import lightning as L
from lightning.pytorch.callbacks import Callback, TQDMProgressBar

from raid.pipelines.featurizer import PRECISIONS


class ImagesPerSecondBar(TQDMProgressBar):
    """Lightning's bar, counting images (a batch's "key" entries) rather than batches."""

    def on_predict_batch_end(self, trainer, pl_module, outputs, batch, batch_idx,
                             dataloader_idx=0) -> None:
        super().on_predict_batch_end(trainer, pl_module, outputs, batch, batch_idx,
                                     dataloader_idx)
        bar = self.predict_progress_bar
        self._images = getattr(self, "_images", 0) + len(batch["key"])
        elapsed = bar.format_dict.get("elapsed") or 0.0
        if elapsed > 0:
            bar.set_postfix_str(f"{self._images / elapsed:.1f} images/s", refresh=False)


def make_trainer(*, accelerator: str = "auto", devices: Any = "auto", strategy: str = "auto",
                 num_nodes: int = 1, precision: str = "32",
                 callbacks: Sequence[Callback] = ()) -> L.Trainer:
    """A prediction-only Trainer: no logger, no checkpoints, no summary, inference mode."""
    return L.Trainer(
        accelerator=accelerator, devices=devices, strategy=strategy, num_nodes=num_nodes,
        precision=PRECISIONS.get(precision, precision), logger=False,
        callbacks=[*callbacks, ImagesPerSecondBar()], enable_checkpointing=False,
        enable_model_summary=False, inference_mode=True)


def run_predict(module: L.LightningModule, datamodule: L.LightningDataModule, *,
                accelerator: str = "auto", devices: Any = "auto", strategy: str = "auto",
                num_nodes: int = 1, precision: str = "32",
                callbacks: Sequence[Callback] = ()) -> L.Trainer:
    """Run `module` over `datamodule` (see the module docstring); returns the trainer."""
    trainer = make_trainer(accelerator=accelerator, devices=devices, strategy=strategy,
                           num_nodes=num_nodes, precision=precision, callbacks=callbacks)
    trainer.predict(module, datamodule=datamodule, return_predictions=False)
    trainer.strategy.barrier()  # every process has finished writing
    return trainer
