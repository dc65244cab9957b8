"""Keras's ``History``, as a projection of the event stream."""

from __future__ import annotations

from ..events import EpochEnd, TrainBegin
from ..subscriber import Subscriber

__all__ = ["History"]


class History(Subscriber):
    """Per-epoch logs of the latest ``fit``: ``history.history`` equals the
    ``History.history`` Keras returns from the same ``fit``.

    Attributes:
        history: metric name -> one value per epoch.
        epoch: the epoch indices recorded.
        params: Keras's params for the run (``epochs``, ``steps``, ...).
        run: the run recorded.
    """

    lossless = True  # a projection must see every epoch (epoch events are never dropped anyway)

    def __init__(self) -> None:
        self.history: dict[str, list[float]] = {}
        self.epoch: list[int] = []
        self.params: dict[str, int | float | str | None] = {}
        self.run = ""

    def on_train_begin(self, event: TrainBegin) -> None:
        self.history = {}
        self.epoch = []
        self.params = dict(event.params)
        self.run = event.run

    def on_epoch_end(self, event: EpochEnd) -> None:
        self.epoch.append(event.epoch)
        for key, value in event.logs.items():
            self.history.setdefault(key, []).append(value)
