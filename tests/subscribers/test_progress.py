from __future__ import annotations

import io

from eventbus import events
from eventbus.subscribers import ProgressBar


async def test_progress_shows_epochs_batches_and_metrics() -> None:
    out = io.StringIO()
    bar = ProgressBar(file=out)
    await bar(events.TrainBegin(run="r", params={"epochs": 3, "steps": 4}))
    for epoch in range(2):
        await bar(events.EpochBegin(run="r", epoch=epoch))
        for batch in range(4):
            await bar(events.TrainBatchEnd(run="r", batch=batch, logs={"loss": 1.0 / (batch + 1)}))
        await bar(events.EpochEnd(run="r", epoch=epoch, logs={"loss": 0.25, "val_loss": 0.5}))
    await bar(events.TrainEnd(run="r"))
    epochs, batches = out.getvalue().splitlines()
    assert epochs.startswith("epochs") and "2/3" in epochs and "loss 0.25  val_loss 0.5" in epochs
    assert batches.startswith("batches") and "4/4" in batches and "loss 0.25" in batches


async def test_progress_listens_only_to_training_events() -> None:
    assert set(ProgressBar(file=io.StringIO()).kinds) == {
        events.TrainBegin,
        events.EpochBegin,
        events.TrainBatchEnd,
        events.EpochEnd,
        events.TrainEnd,
    }
