"""Reduce the learning rate when a metric has stopped improving: Keras's
``ReduceLROnPlateau``, as a control subscriber answering epoch ends."""

from __future__ import annotations

import logging
import sys
from typing import TextIO

from ..commands import SetLearningRate
from ..events import EpochEnd, TrainBegin
from ..subscriber import Subscriber
from ._monitor import Monitor, float32

__all__ = ["ReduceLROnPlateau"]

logger = logging.getLogger("eventbus")


class ReduceLROnPlateau(Subscriber):
    """Same arguments, defaults and decisions as ``keras.callbacks.ReduceLROnPlateau``.

    Args:
        monitor: quantity to be monitored.
        factor: ``new_lr = lr * factor``; must be < 1.
        patience: epochs with no improvement after which the rate is reduced.
        verbose: 1 prints each reduction.
        mode: ``"auto"``, ``"min"`` or ``"max"``.
        min_delta: a change smaller than this is no improvement.
        cooldown: epochs to wait after a reduction before counting again.
        min_lr: the rate never goes below this.
        file: where ``verbose`` messages go (standard output by default).
    """

    control = True

    def __init__(
        self,
        monitor: str = "val_loss",
        factor: float = 0.1,
        patience: int = 10,
        verbose: int = 0,
        mode: str = "auto",
        min_delta: float = 1e-4,
        cooldown: int = 0,
        min_lr: float = 0.0,
        *,
        file: TextIO | None = None,
    ) -> None:
        if factor >= 1.0:
            raise ValueError(f"ReduceLROnPlateau does not support a factor >= 1.0. Received factor={factor}")
        self._monitor = Monitor("ReduceLROnPlateau", monitor, mode, min_delta)
        self.monitor = monitor
        self.factor = factor
        self.patience = patience
        self.verbose = verbose
        self.cooldown = cooldown
        self.min_lr = min_lr
        self.file = file
        self._reset()

    def _reset(self) -> None:
        self.best: float | None = None
        self.cooldown_counter = 0
        self.wait = 0

    def in_cooldown(self) -> bool:
        return self.cooldown_counter > 0

    def on_train_begin(self, event: TrainBegin) -> None:
        self._reset()

    def on_epoch_end(self, event: EpochEnd) -> SetLearningRate | None:
        self._monitor.resolve(event.metric_directions)
        logs = dict(event.logs)
        if event.learning_rate is not None:
            logs["learning_rate"] = event.learning_rate  # Keras adds it before reading
        current = logs.get(self.monitor)
        if current is None:
            logger.warning(
                "Learning rate reduction is conditioned on metric `%s` which is not "
                "available. Available metrics are: %s.",
                self.monitor,
                ",".join(logs),
            )
            return None
        if self.in_cooldown():
            self.cooldown_counter -= 1
            self.wait = 0
        if self._monitor.is_improvement(current, self.best):
            self.best = current
            self.wait = 0
            return None
        if self.in_cooldown():
            return None
        self.wait += 1
        if self.wait < self.patience:
            return None
        old_lr = event.learning_rate
        if old_lr is None or not old_lr > float32(self.min_lr):
            return None
        new_lr = max(old_lr * self.factor, self.min_lr)
        if self.verbose > 0:
            print(
                f"\nEpoch {event.epoch + 1}: ReduceLROnPlateau reducing learning rate to {new_lr}.",
                file=self.file or sys.stdout,
            )
        self.cooldown_counter = self.cooldown
        self.wait = 0
        return SetLearningRate(learning_rate=new_lr)
