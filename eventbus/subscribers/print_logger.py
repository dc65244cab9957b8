"""Readable progress, one line per epoch: what the guide's printing callbacks
show, and what the bus decided."""

from __future__ import annotations

import sys
from typing import TextIO

from ..events import (
    BarrierTimedOut,
    CommandApplied,
    CommandRejected,
    EpochEnd,
    EventsDropped,
    SubscriberFailed,
    TestBatchEnd,
    TestEnd,
    TrainBatchEnd,
    TrainBegin,
    TrainEnd,
)
from ..subscriber import Subscriber

__all__ = ["PrintLogger"]


class PrintLogger(Subscriber):
    """Print each epoch's metrics on one line, and each command, failure or drop.

    Args:
        batches: also print the guide's per-batch line
            ("Up to batch 3, the average loss is    4.39.").
        file: where to print (standard output by default).
        precision: digits after the point for metrics.
    """

    def __init__(self, *, batches: bool = False, file: TextIO | None = None, precision: int = 4) -> None:
        self.batches = batches
        self.file = file
        self.precision = precision
        self._epochs: int | None = None
        if not batches:  # do not even receive batch events
            self._methods = {k: v for k, v in self._methods.items() if k not in (TrainBatchEnd, TestBatchEnd)}

    def _print(self, line: str) -> None:
        print(line, file=self.file or sys.stdout)

    def _metrics(self, logs: dict[str, float]) -> str:
        return " - ".join(f"{key}: {value:.{self.precision}f}" for key, value in logs.items())

    def on_train_begin(self, event: TrainBegin) -> None:
        epochs = event.params.get("epochs")
        self._epochs = epochs if isinstance(epochs, int) else None

    def on_epoch_end(self, event: EpochEnd) -> None:
        total = f"/{self._epochs}" if self._epochs else ""
        parts = [f"Epoch {event.epoch + 1}{total}", self._metrics(event.logs)]
        if event.learning_rate is not None:
            parts.append(f"learning_rate: {event.learning_rate:.{self.precision}g}")
        self._print(" - ".join(p for p in parts if p))

    def on_train_end(self, event: TrainEnd) -> None:
        self._print("Training finished" + (f": {self._metrics(event.logs)}" if event.logs else ""))

    def on_test_end(self, event: TestEnd) -> None:
        if not event.validation:
            self._print(f"Evaluation: {self._metrics(event.logs)}")

    def on_train_batch_end(self, event: TrainBatchEnd) -> None:
        self._batch_line(event.batch, event.logs)

    def on_test_batch_end(self, event: TestBatchEnd) -> None:
        self._batch_line(event.batch, event.logs)

    def _batch_line(self, batch: int, logs: dict[str, float]) -> None:
        if "loss" in logs:
            self._print(f"Up to batch {batch}, the average loss is {logs['loss']:7.2f}.")

    def on_command_applied(self, event: CommandApplied) -> None:
        self._print(f"  applied {_describe(event.command)}")

    def on_command_rejected(self, event: CommandRejected) -> None:
        self._print(f"  rejected {_describe(event.command)}: {event.reason}")

    def on_subscriber_failed(self, event: SubscriberFailed) -> None:
        self._print(f"  subscriber {event.subscriber} failed: {event.error}")

    def on_events_dropped(self, event: EventsDropped) -> None:
        self._print(f"  subscriber {event.subscriber} fell behind: dropped {event.count} batch events")

    def on_barrier_timed_out(self, event: BarrierTimedOut) -> None:
        self._print(f"  no answer from {', '.join(event.subscribers)} within {event.timeout:g}s; training went on")


def _describe(command: object) -> str:
    fields = getattr(command, "__struct_fields__", ())
    args = ", ".join(f"{name}={getattr(command, name)!r}" for name in fields if getattr(command, name) != "")
    return f"{type(command).__name__}({args})"
