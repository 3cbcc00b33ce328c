"""Progress and Ctrl-C in the one Lightning entry point (issue 11 items 3 and 5): the bar
goes to stderr, counts images, is named for the stage, is silent under -q; Ctrl-C inside
`trainer.predict` comes back as KeyboardInterrupt (Lightning turns it into exit 1)."""

import logging
import signal

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from raid.pipelines import predict
from raid.pipelines.predict import ImagesPerSecondBar, run_predict, stage_of


class Keys(Dataset):
    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return {"key": f"img{i}.png", "x": torch.tensor([float(i)])}


class KeysModule(L.LightningDataModule):
    def __init__(self, n, batch_size):
        super().__init__()
        self.dataset, self.batch_size = Keys(n), batch_size

    def predict_dataloader(self):
        return DataLoader(self.dataset, batch_size=self.batch_size)


class Doubler(L.LightningModule):
    stage = "reconstructing"

    def __init__(self, interrupt_at=None):
        super().__init__()
        self.interrupt_at = interrupt_at
        self.seen = []

    def predict_step(self, batch, batch_idx):
        if batch_idx == self.interrupt_at:
            raise KeyboardInterrupt  # what Ctrl-C raises in the main thread
        self.seen += list(batch["key"])
        return batch["x"] * 2


@pytest.fixture
def shown(monkeypatch):
    monkeypatch.setattr(ImagesPerSecondBar, "delay", 0.0)  # show even a short run


def test_progress_on_stderr_counts_images_named_for_the_stage(shown, capfd):
    logging.getLogger("raid").setLevel(logging.INFO)
    module = Doubler()
    run_predict(module, KeysModule(10, 4), accelerator="cpu", devices=1)
    out, err = capfd.readouterr()
    assert len(module.seen) == 10  # the first batch is not lost to the bar
    assert "reconstructing: 10/10 images" in err
    assert "reconstructing" not in out and "Predicting" not in out + err


def test_quiet_silences_the_bar(shown, capfd):
    raid_log = logging.getLogger("raid")
    raid_log.setLevel(logging.WARNING)
    try:
        run_predict(Doubler(), KeysModule(6, 4), accelerator="cpu", devices=1)
    finally:
        raid_log.setLevel(logging.NOTSET)
    out, err = capfd.readouterr()
    assert "images" not in err and "images" not in out


def test_stage_names():
    class FeatureExtractor(L.LightningModule):
        pass

    class Paired:
        reconstructors = {"sd": None}

    assert stage_of(FeatureExtractor(), None) == "extracting"
    assert stage_of(Doubler(), None) == "reconstructing"
    assert stage_of(FeatureExtractor(), Paired()) == "reconstructing + extracting"
    assert predict.STAGES["ReconstructionModule"] == "reconstructing"


def test_ctrl_c_in_predict_is_a_keyboard_interrupt_again():
    module = Doubler(interrupt_at=1)
    with pytest.raises(KeyboardInterrupt):
        run_predict(module, KeysModule(12, 4), accelerator="cpu", devices=1)
    assert module.seen == [f"img{i}.png" for i in range(4)]  # stopped at the next batch
    # Lightning ignores further Ctrl-C while shutting down; a second one works again
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
