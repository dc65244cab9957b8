"""Deciding "better" the way Keras's ``MonitorCallback`` does, from events alone.

Keras compares with ``keras.ops.less``/``greater`` on float32 tensors, so a
difference smaller than float32 can resolve is no improvement. We round to
float32 as well, or early stopping would disagree with Keras on ties.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from .._logs import float32

__all__ = ["Monitor", "float32"]


def _less(a: float, b: float) -> bool:
    return float32(a) < float32(b)


def _greater(a: float, b: float) -> bool:
    return float32(a) > float32(b)


class Monitor:
    """The quantity a subscriber watches, and which way is better."""

    def __init__(self, owner: str, monitor: str, mode: str, min_delta: float) -> None:
        if mode not in ("auto", "min", "max"):
            raise ValueError(f"{owner}: mode must be 'auto', 'min' or 'max', got {mode!r}")
        self.owner = owner
        self.monitor = monitor
        self.mode = mode
        self.base_delta = abs(min_delta)
        self.min_delta = self.base_delta
        self.op: Callable[[float, float], bool] | None = None

    def resolve(self, directions: Mapping[str, str]) -> None:
        """Pick the comparison, once, as Keras does on the first epoch end."""
        if self.op is not None:
            return
        op: Callable[[float, float], bool]
        if self.mode == "min":
            op = _less
        elif self.mode == "max":
            op = _greater
        else:
            name = self.monitor.removeprefix("val_")
            found: Callable[[float, float], bool] | None = _less if name == "loss" else None
            direction = directions.get(name)
            if direction == "up":
                found = _greater
            elif direction == "down":
                found = _less
            if found is None:
                raise ValueError(
                    f"{self.owner} received monitor={self.monitor}, but cannot tell "
                    "whether that metric should be maximized or minimized. Pass "
                    "`mode='max'` in order to monitor based on the highest metric value, "
                    "or pass `mode='min'` in order to use the lowest value."
                )
            op = found
        self.min_delta = -self.base_delta if op is _less else self.base_delta
        self.op = op

    def is_improvement(self, value: float, reference: float | None) -> bool:
        if reference is None:
            return True
        assert self.op is not None, "call resolve() first"
        return self.op(value - self.min_delta, reference)
