"""Stop training when a monitored metric has stopped improving: Keras's
``EarlyStopping``, as a pure function of the event stream.

It never touches the model: it asks the bridge for a weights snapshot on each
improvement and for a restore at the end, so its decisions can be replayed
from a log ("what would patience=5 have done?").
"""

from __future__ import annotations

import logging
import sys
from typing import TextIO

from ..commands import Command, RestoreWeights, SnapshotWeights, StopTraining
from ..events import EpochEnd, TrainBegin, TrainEnd
from ..subscriber import Subscriber
from ._monitor import Monitor

__all__ = ["EarlyStopping"]

logger = logging.getLogger("eventbus")


class EarlyStopping(Subscriber):
    """Same arguments, defaults and decisions as ``keras.callbacks.EarlyStopping``.

    Args:
        monitor: quantity to be monitored.
        min_delta: a change smaller than this is no improvement.
        patience: epochs with no improvement after which training stops.
        verbose: 1 prints a message when it acts.
        mode: ``"auto"``, ``"min"`` or ``"max"``.
        baseline: training stops unless the model improves on it.
        restore_best_weights: restore the weights of the best epoch at the end.
        start_from_epoch: epochs to wait before monitoring.
        file: where ``verbose`` messages go (standard output by default).

    After a run, ``stopped_epoch``, ``best``, ``best_epoch`` and ``wait`` hold
    what Keras's callback would hold.
    """

    control = True

    def __init__(
        self,
        monitor: str = "val_loss",
        min_delta: float = 0,
        patience: int = 0,
        verbose: int = 0,
        mode: str = "auto",
        baseline: float | None = None,
        restore_best_weights: bool = False,
        start_from_epoch: int = 0,
        *,
        file: TextIO | None = None,
    ) -> None:
        self._monitor = Monitor("EarlyStopping", monitor, mode, min_delta)
        self.monitor = monitor
        self.patience = patience
        self.verbose = verbose
        self.baseline = baseline
        self.restore_best_weights = restore_best_weights
        self.start_from_epoch = start_from_epoch
        self.file = file
        self.tag = f"early_stopping/{monitor}"
        self._reset()

    def _reset(self) -> None:
        self.wait = 0
        self.stopped_epoch = 0
        self.best: float | None = None
        self.best_epoch = 0
        self.has_best_weights = False

    def on_train_begin(self, event: TrainBegin) -> None:
        self._reset()  # instances are reused across fits, as in Keras

    def on_epoch_end(self, event: EpochEnd) -> list[Command]:
        self._monitor.resolve(event.metric_directions)
        current = event.logs.get(self.monitor)
        if current is None:
            logger.warning(
                "Early stopping conditioned on metric `%s` which is not available. Available metrics are: %s",
                self.monitor,
                ",".join(event.logs),
            )
            return []
        if event.epoch < self.start_from_epoch:
            return []
        commands: list[Command] = []
        if self.restore_best_weights and not self.has_best_weights:
            # Never improved yet: the current weights are the best so far.
            self.has_best_weights = True
            self.best_epoch = event.epoch
            commands.append(SnapshotWeights(tag=self.tag))
        self.wait += 1
        if self._monitor.is_improvement(current, self.best):
            self.best = current
            self.best_epoch = event.epoch
            if self.restore_best_weights and not commands:
                commands.append(SnapshotWeights(tag=self.tag))
            # Only restart the wait if we beat both the baseline and our best.
            if self.baseline is None or self._monitor.is_improvement(current, self.baseline):
                self.wait = 0
            return commands
        if self.wait >= self.patience and event.epoch > 0:
            self.stopped_epoch = event.epoch
            commands.append(StopTraining(reason=f"{self.monitor} did not improve for {self.wait} epochs"))
        return commands

    def on_train_end(self, event: TrainEnd) -> Command | None:
        if self.stopped_epoch > 0 and self.verbose > 0:
            print(f"Epoch {self.stopped_epoch + 1}: early stopping", file=self.file or sys.stdout)
        if self.restore_best_weights and self.has_best_weights:
            if self.verbose > 0:
                print(
                    f"Restoring model weights from the end of the best epoch: {self.best_epoch + 1}.",
                    file=self.file or sys.stdout,
                )
            return RestoreWeights(tag=self.tag)
        return None
