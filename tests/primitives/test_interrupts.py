"""A Ctrl-C that lands in a garbage-collection callback is not lost (`interrupts`)."""

from __future__ import annotations

import os
import signal
import time
import weakref

import pytest

from raid.primitives import interrupts


class _Thing:
    pass


def swallowed_ctrl_c() -> None:
    """SIGINT delivered while a weakref callback runs: Python prints its KeyboardInterrupt
    as "Exception ignored" and goes on."""
    def callback(_):
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)  # the handler runs here, inside the callback
    thing = _Thing()
    ref = weakref.ref(thing, callback)  # noqa: F841 (kept alive until the callback runs)
    del thing


def test_a_swallowed_ctrl_c_is_raised_at_the_next_check():
    # The bug: with Python's own handler the interrupt vanishes without a trace.
    swallowed_ctrl_c()
    interrupts.check()  # nothing recorded outside `recording()`
    with interrupts.recording():
        swallowed_ctrl_c()
        with pytest.raises(KeyboardInterrupt):
            interrupts.check()
        interrupts.check()  # raised once only
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_recording_in_a_run_stops_at_the_next_batch():
    """The Lightning path checks at each batch end: a run whose Ctrl-C was swallowed in
    batch 1 stops after it instead of running to the end."""
    import lightning as L
    import torch

    from raid.pipelines.predict import run_predict

    class Module(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.seen = []

        def predict_step(self, batch, batch_idx):
            if batch_idx == 1:
                swallowed_ctrl_c()
            self.seen.append(batch_idx)
            return batch

    class Data(L.LightningDataModule):
        def predict_dataloader(self):
            rows = [{"key": f"img{i}.png", "x": torch.tensor(float(i))} for i in range(12)]
            return torch.utils.data.DataLoader(rows, batch_size=2)

    module = Module()
    with interrupts.recording(), pytest.raises(KeyboardInterrupt):
        run_predict(module, Data(), accelerator="cpu", devices=1)
    assert module.seen == [0, 1]
