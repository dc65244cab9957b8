from __future__ import annotations

import io
import math

from eventbus import commands, events
from eventbus.subscribers import PrintLogger


async def feed(logger: PrintLogger, *stream: events.Event) -> None:
    for event in stream:
        if type(event) in logger.kinds:
            await logger(event)


async def test_one_readable_line_per_epoch_and_every_decision() -> None:
    out = io.StringIO()
    logger = PrintLogger(file=out)
    await feed(
        logger,
        events.TrainBegin(run="r", params={"epochs": 3, "steps": 2}),
        events.TrainBatchEnd(run="r", batch=0, logs={"loss": 9.0}),
        events.EpochEnd(run="r", epoch=0, logs={"loss": 1.23456, "val_loss": math.nan}, learning_rate=0.1),
        events.CommandApplied(run="r", command=commands.StopTraining(reason="plateau")),
        events.CommandRejected(run="r", command=commands.RestoreWeights(tag="x"), reason="no weights snapshot"),
        events.SubscriberFailed(run="r", subscriber="upload", cause=3, error="OSError: down"),
        events.EventsDropped(run="r", subscriber="slow", count=5, total=5),
        events.BarrierTimedOut(run="r", cause=4, subscribers=["a", "b"], timeout=2.0),
        events.TrainEnd(run="r", logs={"loss": 1.23456}),
        events.TestEnd(run="e", logs={"loss": 2.0}),
        events.TestEnd(run="r", logs={"loss": 2.0}, validation=True),
    )
    assert out.getvalue().splitlines() == [
        "Epoch 1/3 - loss: 1.2346 - val_loss: nan - learning_rate: 0.1",
        "  applied StopTraining(reason='plateau')",
        "  rejected RestoreWeights(tag='x'): no weights snapshot",
        "  subscriber upload failed: OSError: down",
        "  subscriber slow fell behind: dropped 5 batch events",
        "  no answer from a, b within 2s; training went on",
        "Training finished: loss: 1.2346",
        "Evaluation: loss: 2.0000",
    ]


async def test_batch_lines_are_opt_in_and_match_the_guide() -> None:
    quiet, loud = PrintLogger(file=io.StringIO()), PrintLogger(batches=True, file=io.StringIO())
    assert events.TrainBatchEnd not in quiet.kinds
    await feed(loud, events.TrainBatchEnd(run="r", batch=3, logs={"loss": 4.386}))
    assert loud.file.getvalue() == "Up to batch 3, the average loss is    4.39.\n"  # type: ignore[union-attr]
