"""Set the learning rate at the start of every epoch from a schedule: Keras's
``LearningRateScheduler``, as a control subscriber.

It reads the current rate from the :class:`~eventbus.events.EpochBegin` event
and answers with :class:`~eventbus.commands.SetLearningRate`; the bridge waits
for it at the epoch boundary, so the rate is in force before the first batch.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, TextIO

from ..commands import SetLearningRate
from ..events import EpochBegin
from ..subscriber import Subscriber

__all__ = ["LearningRateScheduler"]


class LearningRateScheduler(Subscriber):
    """Same arguments and decisions as ``keras.callbacks.LearningRateScheduler``.

    Args:
        schedule: ``schedule(epoch, lr) -> new_lr`` (``schedule(epoch)`` also works).
        verbose: 1 prints each update.
        file: where ``verbose`` messages go (standard output by default).
    """

    control = True

    def __init__(self, schedule: Callable[..., Any], verbose: int = 0, *, file: TextIO | None = None) -> None:
        if not callable(schedule):
            raise TypeError(f"schedule must be a function (epoch, lr) -> lr, got {schedule!r}")
        self.schedule = schedule
        self.verbose = verbose
        self.file = file

    def on_epoch_begin(self, event: EpochBegin) -> SetLearningRate:
        if event.learning_rate is None:
            raise ValueError('Optimizer must have a "learning_rate" attribute.')
        try:
            learning_rate = self.schedule(event.epoch, event.learning_rate)
        except TypeError:  # the old API: schedule(epoch)
            learning_rate = self.schedule(event.epoch)
        if not _is_float(learning_rate):
            raise ValueError(f"The output of the `schedule` function should be a float. Got: {learning_rate}")
        if self.verbose > 0:
            print(
                f"\nEpoch {event.epoch + 1}: LearningRateScheduler setting learning rate to {learning_rate}.",
                file=self.file or sys.stdout,
            )
        return SetLearningRate(learning_rate=float(learning_rate))


def _is_float(value: object) -> bool:
    """Keras accepts Python and NumPy floats, and nothing else (not ints)."""
    if isinstance(value, float):
        return True
    kind = type(value)
    return kind.__module__ == "numpy" and kind.__name__ in ("float32", "float64")
