"""The four example callbacks of the Keras guide "Writing your own callbacks", as bus subscribers.

Each class here mirrors one ``keras.callbacks.Callback`` from the guide and
prints the same lines. None of them sees the model: they read what the
:class:`~eventbus.adapters.keras.KerasBridge` put in each event, and they
answer with commands (:mod:`eventbus.commands`) where the guide's callbacks
write to ``self.model``. The bridge applies those commands on the training
thread.

Use them like any subscriber::

    with EventBus() as bus:
        bus.subscribe(LossAndErrorPrintingCallback())
        bus.subscribe(EarlyStoppingAtMinLoss())
        model.fit(x, y, callbacks=[KerasBridge(bus)])

This module does not import Keras. Every class takes ``file=``, the text
stream it prints to (``sys.stdout`` by default, looked up at print time).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TextIO

from eventbus import events
from eventbus.commands import Command, RestoreWeights, SetLearningRate, SnapshotWeights, StopTraining

__all__ = [
    "LR_SCHEDULE",
    "CustomCallback",
    "CustomLearningRateScheduler",
    "EarlyStoppingAtMinLoss",
    "LossAndErrorPrintingCallback",
    "lr_schedule",
]


# --- A basic example -----------------------------------------------------------

_CUSTOM_LINES: dict[type[events.Event], str] = {
    events.TrainBegin: "Starting training; got log keys: {keys}",
    events.TrainEnd: "Stop training; got log keys: {keys}",
    events.EpochBegin: "Start epoch {epoch} of training; got log keys: {keys}",
    events.EpochEnd: "End epoch {epoch} of training; got log keys: {keys}",
    events.TestBegin: "Start testing; got log keys: {keys}",
    events.TestEnd: "Stop testing; got log keys: {keys}",
    events.PredictBegin: "Start predicting; got log keys: {keys}",
    events.PredictEnd: "Stop predicting; got log keys: {keys}",
    events.TrainBatchBegin: "...Training: start of batch {batch}; got log keys: {keys}",
    events.TrainBatchEnd: "...Training: end of batch {batch}; got log keys: {keys}",
    events.TestBatchBegin: "...Evaluating: start of batch {batch}; got log keys: {keys}",
    events.TestBatchEnd: "...Evaluating: end of batch {batch}; got log keys: {keys}",
    events.PredictBatchBegin: "...Predicting: start of batch {batch}; got log keys: {keys}",
    events.PredictBatchEnd: "...Predicting: end of batch {batch}; got log keys: {keys}",
}


class CustomCallback:
    """Mirrors the guide's ``CustomCallback``: one line per Keras hook, with its log keys.

    The guide overrides all 14 hook methods. Here one handler receives all 14
    hook events (``kinds = events.KERAS_EVENTS``, so none of the bus's own
    records) and looks up the guide's line for each event type. The keys come
    from ``event.log_keys``, which lists what Keras put in ``logs``: for
    ``PredictBatchEnd`` that is ``['outputs']``, even though the event itself
    carries only the number of output rows.

    It is ``lossless``: a transcript with gaps would not be the guide's
    transcript, so the bus keeps every batch event for it rather than
    dropping the oldest when it falls behind.
    """

    kinds = events.KERAS_EVENTS
    lossless = True

    def __init__(self, *, file: TextIO | None = None) -> None:
        self.file = file

    async def __call__(self, event: events.Event) -> None:
        template = _CUSTOM_LINES[type(event)]
        line = template.format(
            epoch=getattr(event, "epoch", None),
            batch=getattr(event, "batch", None),
            keys=event.log_keys,
        )
        print(line, file=self.file)


# --- Usage of the logs dict ----------------------------------------------------


class LossAndErrorPrintingCallback:
    """Mirrors the guide's ``LossAndErrorPrintingCallback``: running loss per batch, loss and MAE per epoch.

    The guide's three hooks (``on_train_batch_end``, ``on_test_batch_end``,
    ``on_epoch_end``) become three event kinds, read from ``event.logs`` with
    the guide's format strings. Like the guide's callback, it prints for
    validation batches inside ``fit`` too. It only prints and returns no
    command, so it is not a control subscriber: training never waits for it.
    It is ``lossless`` so that no batch line goes missing.
    """

    kinds = (events.TrainBatchEnd, events.TestBatchEnd, events.EpochEnd)
    lossless = True

    def __init__(self, *, file: TextIO | None = None) -> None:
        self.file = file

    async def __call__(self, event: events.Event) -> None:
        if isinstance(event, (events.TrainBatchEnd, events.TestBatchEnd)):
            print(
                "Up to batch {}, the average loss is {:7.2f}.".format(event.batch, event.logs["loss"]),
                file=self.file,
            )
        elif isinstance(event, events.EpochEnd):
            print(
                "The average loss for epoch {} is {:7.2f} and mean absolute error is {:7.2f}.".format(
                    event.epoch, event.logs["loss"], event.logs["mean_absolute_error"]
                ),
                file=self.file,
            )


# --- Early stopping at minimum loss ----------------------------------------------


class EarlyStoppingAtMinLoss:
    """Mirrors the guide's ``EarlyStoppingAtMinLoss``: stop when the loss stops decreasing.

    Args:
        patience: epochs to wait after the minimum was hit; after this many
            epochs without improvement, training stops.
        file: where to print (``sys.stdout`` by default).
        tag: the name of the weights snapshot kept on the bridge.

    The guide's callback keeps ``self.model.get_weights()`` of the best epoch
    and calls ``set_weights`` and ``stop_training`` itself. A subscriber has
    no model, so it asks: on a new minimum it answers ``SnapshotWeights(tag)``
    (the bridge keeps the copy), and when patience runs out it answers
    ``[StopTraining(...), RestoreWeights(tag)]``.

    It is a control subscriber (``control = True``): at every epoch end the
    bridge waits for it and applies its commands before Keras goes on, which
    is exactly where the guide's callback acts, so the same epochs run and the
    same weights are kept.
    """

    kinds = (events.TrainBegin, events.EpochEnd, events.TrainEnd)
    control = True

    def __init__(
        self,
        patience: int = 0,
        *,
        file: TextIO | None = None,
        tag: str = "EarlyStoppingAtMinLoss/best",
    ) -> None:
        self.patience = patience
        self.file = file
        self.tag = tag
        # The number of epochs it has waited while the loss is no longer at its minimum.
        self.wait = 0
        # The epoch training stops at.
        self.stopped_epoch = 0
        self.best = math.inf

    async def __call__(self, event: events.Event) -> Command | list[Command] | None:
        if isinstance(event, events.TrainBegin):
            self.wait = 0
            self.stopped_epoch = 0
            self.best = math.inf
        elif isinstance(event, events.EpochEnd):
            current = event.logs.get("loss")
            if current < self.best:  # type: ignore[operator]
                self.best = current  # type: ignore[assignment]
                self.wait = 0
                # Keep the best weights: the current results are better (less).
                return SnapshotWeights(tag=self.tag)
            self.wait += 1
            if self.wait >= self.patience:
                self.stopped_epoch = event.epoch
                print("Restoring model weights from the end of the best epoch.", file=self.file)
                reason = f"loss has not improved on {self.best:.6g} for {self.wait} epoch(s)"
                return [StopTraining(reason=reason), RestoreWeights(tag=self.tag)]
        elif isinstance(event, events.TrainEnd):
            if self.stopped_epoch > 0:
                print("Epoch %05d: early stopping" % (self.stopped_epoch + 1), file=self.file)
        return None


# --- Learning rate scheduling ------------------------------------------------------


class CustomLearningRateScheduler:
    """Mirrors the guide's ``CustomLearningRateScheduler``: set the learning rate at each epoch's start.

    Args:
        schedule: a function of the epoch index (from 0) and the current
            learning rate that returns the new learning rate (a float).
        file: where to print (``sys.stdout`` by default).

    The guide's callback reads the rate from ``self.model.optimizer`` and
    writes it back. Here ``EpochBegin`` already carries the optimizer's rate
    (``event.learning_rate``), and the new rate goes back as
    ``SetLearningRate``. It is a control subscriber (``control = True``): the
    bridge waits for it at the start of each epoch and sets the rate before
    the epoch's first batch, as the guide's callback does.
    """

    kinds = (events.EpochBegin,)
    control = True

    def __init__(self, schedule: Callable[[int, float], float], *, file: TextIO | None = None) -> None:
        self.schedule = schedule
        self.file = file

    async def __call__(self, event: events.Event) -> SetLearningRate | None:
        if not isinstance(event, events.EpochBegin):
            return None
        if event.learning_rate is None:
            raise ValueError('Optimizer must have a "learning_rate" attribute.')
        # Call the schedule function to get the scheduled learning rate.
        scheduled_lr = float(self.schedule(event.epoch, event.learning_rate))
        print("\nEpoch %05d: Learning rate is %6.4f." % (event.epoch, scheduled_lr), file=self.file)
        # Set the value back to the optimizer before this epoch starts.
        return SetLearningRate(learning_rate=scheduled_lr)


LR_SCHEDULE = [
    # (epoch to start, learning rate) tuples
    (3, 0.05),
    (6, 0.01),
    (9, 0.005),
    (12, 0.001),
]


def lr_schedule(epoch: int, lr: float) -> float:
    """Helper function to retrieve the scheduled learning rate based on epoch."""
    if epoch < LR_SCHEDULE[0][0] or epoch > LR_SCHEDULE[-1][0]:
        return lr
    for i in range(len(LR_SCHEDULE)):
        if epoch == LR_SCHEDULE[i][0]:
            return LR_SCHEDULE[i][1]
    return lr
