"""Fakes for testing subscribers without Keras.

- :class:`Recorder` keeps every event it receives.
- :func:`simulate_fit` plays a training run from per-epoch logs through
  subscribers, applying their commands the way the Keras bridge would (learning
  rate, stop, weight snapshots), so a subscriber's decisions can be tested, or
  replayed, with no model at all.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence

import msgspec

from ._logs import float32
from .bus import _as_commands
from .commands import Command, FailTraining, RestoreWeights, SetLearningRate, SnapshotWeights, StopTraining
from .events import EpochBegin, EpochEnd, Event, TrainBatchBegin, TrainBatchEnd, TrainBegin, TrainEnd
from .subscription import expand_kinds

__all__ = ["FitResult", "Recorder", "simulate_fit"]


class Recorder:
    """A subscriber that keeps what it receives, for assertions."""

    def __init__(
        self,
        kinds: Iterable[type[Event] | str] | None = None,
        *,
        lossless: bool = False,
        name: str = "Recorder",
    ) -> None:
        self.kinds = kinds
        self.lossless = lossless
        self.name = name
        self.events: list[Event] = []

    async def __call__(self, event: Event) -> None:
        self.events.append(event)

    def of(self, *kinds: type[Event]) -> list[Event]:
        """The recorded events of these classes, in order."""
        return [e for e in self.events if isinstance(e, kinds)]


class FitResult(msgspec.Struct, kw_only=True):
    """What a simulated fit did."""

    epochs: list[int]
    """The epochs that ran."""
    learning_rates: list[float]
    """The learning rate in force during each epoch that ran."""
    commands: list[Command]
    """Every command the subscribers returned, in order."""
    stopped: bool
    """Whether a subscriber stopped training before the last epoch."""
    weights_epoch: int
    """The epoch whose weights the "model" holds at the end (after restores)."""


Handler = Callable[[Event], Awaitable[object]]


async def simulate_fit(
    subscribers: Sequence[Handler],
    epoch_logs: Sequence[Mapping[str, float]],
    *,
    learning_rate: float = 0.01,
    steps: int = 1,
    metric_directions: Mapping[str, str] | None = None,
) -> FitResult:
    """Play a fit with one epoch per entry of ``epoch_logs`` through ``subscribers``.

    Handlers are called directly and in order, as control subscribers at a
    barrier would be; their commands are applied before the next event. The
    "weights" are the index of the epoch they were last trained in.
    """
    directions = dict(metric_directions or {})
    state = _Simulated(learning_rate)
    run = "simulated"

    async def emit(event: Event) -> None:
        for subscriber in subscribers:
            kinds = expand_kinds(getattr(subscriber, "kinds", None))
            if kinds is not None and type(event) not in kinds:
                continue
            result: object = await subscriber(event)
            if result is not None:
                for command in _as_commands(result):
                    state.apply(command)

    epochs: list[int] = []
    rates: list[float] = []
    await emit(TrainBegin(run=run, params={"epochs": len(epoch_logs), "steps": steps}, learning_rate=state.lr))
    for epoch, logs in enumerate(epoch_logs):
        await emit(EpochBegin(run=run, epoch=epoch, learning_rate=state.lr))
        epochs.append(epoch)
        rates.append(state.lr)
        for step in range(steps):
            await emit(TrainBatchBegin(run=run, batch=step))
            await emit(TrainBatchEnd(run=run, batch=step, logs=dict(logs)))
        state.weights = epoch
        await emit(
            EpochEnd(run=run, epoch=epoch, logs=dict(logs), learning_rate=state.lr, metric_directions=directions)  # type: ignore[arg-type]
        )
        if state.stop:
            break
    await emit(TrainEnd(run=run, logs=dict(epoch_logs[epochs[-1]]) if epochs else {}))
    return FitResult(
        epochs=epochs,
        learning_rates=rates,
        commands=state.commands,
        stopped=state.stop and len(epochs) < len(epoch_logs),
        weights_epoch=state.weights,
    )


class _Simulated:
    def __init__(self, lr: float) -> None:
        self.lr = lr
        self.stop = False
        self.weights = -1
        self.snapshots: dict[str, int] = {}
        self.commands: list[Command] = []

    def apply(self, command: Command) -> None:
        self.commands.append(command)
        if isinstance(command, StopTraining):
            self.stop = True
        elif isinstance(command, SetLearningRate):
            self.lr = float32(command.learning_rate)
        elif isinstance(command, SnapshotWeights):
            self.snapshots[command.tag] = self.weights
        elif isinstance(command, RestoreWeights):
            self.weights = self.snapshots[command.tag]
        elif isinstance(command, FailTraining):
            raise RuntimeError(command.message)
