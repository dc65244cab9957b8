"""Stop training when the loss becomes NaN or infinite: Keras's ``TerminateOnNaN``.

Batch events are never waited on, so the stop lands at the bridge's next hook
(the next batch, at the latest the epoch's end, where this control subscriber
is waited for), not inside the very batch Keras would stop at.
"""

from __future__ import annotations

import math
import sys
from typing import TextIO

from ..commands import FailTraining, StopTraining
from ..events import TrainBatchEnd, TrainBegin
from ..subscriber import Subscriber

__all__ = ["TerminateOnNaN"]


class TerminateOnNaN(Subscriber):
    """Same arguments and decisions as ``keras.callbacks.TerminateOnNaN``.

    Args:
        raise_error: raise ``RuntimeError`` in the training thread instead of
            stopping gracefully.
        file: where the message goes (standard output by default).
    """

    control = True

    def __init__(self, raise_error: bool = False, *, file: TextIO | None = None) -> None:
        self.raise_error = raise_error
        self.file = file
        self._stopped_run: str | None = None

    def on_train_begin(self, event: TrainBegin) -> None:
        self._stopped_run = None

    def on_train_batch_end(self, event: TrainBatchEnd) -> StopTraining | FailTraining | None:
        loss = event.logs.get("loss")
        if loss is None or math.isfinite(loss) or self._stopped_run == event.run:
            return None
        self._stopped_run = event.run  # later NaN batches of this run: already asked
        if self.raise_error:
            return FailTraining(
                message=f"NaN or Inf loss encountered at batch {event.batch}. "
                f"Loss value: {loss}. Terminating training immediately."
            )
        print(f"Batch {event.batch}: Invalid loss, terminating training", file=self.file or sys.stdout)
        return StopTraining(reason=f"invalid loss {loss} at batch {event.batch}")
