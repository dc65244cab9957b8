"""Replay: feed a recorded run through subscribers, as if live, and collect what
they would have decided. Nothing is applied; nothing is trained.

Subscribers are pure functions of the stream, so a log answers "what if":
``await replay("run.log", EarlyStopping(patience=5))`` tells at which epoch a
patience of 5 would have stopped, and which epoch it would have kept. When a
subscriber asks to stop, the rest of that run is skipped the way ``fit``
would have skipped it (to the end of the epoch, then the end of training).
Metrics are the recorded ones: a replayed ``SetLearningRate`` cannot change
what the run measured after it.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import msgspec

from .bus import _as_commands, _name_of
from .commands import Command, StopTraining
from .events import KERAS_EVENTS, EpochEnd, Event, TrainBegin, TrainEnd
from .log import EventLog
from .subscription import expand_kinds

__all__ = ["ReplayResult", "ReplayedCommand", "replay"]

_KERAS = frozenset(KERAS_EVENTS)


class ReplayedCommand(msgspec.Struct, frozen=True, kw_only=True):
    """A command a subscriber returned during a replay."""

    subscriber: str
    run: str
    cause: int
    """The ``seq`` of the recorded event it answered."""
    epoch: int | None
    """The epoch it came in, if any."""
    command: Command


class ReplayResult(msgspec.Struct, kw_only=True):
    """What the subscribers decided."""

    events: int = 0
    """Recorded events fed to the subscribers."""
    commands: list[ReplayedCommand] = []
    stopped_at: dict[str, int] = {}
    """Per run, the epoch in which a subscriber asked training to stop."""


async def replay(
    source: str | os.PathLike[str] | Iterable[Event],
    *subscribers: Callable[[Any], Awaitable[object]],
) -> ReplayResult:
    """Feed the Keras events of ``source`` (an event log's path, or events)
    through ``subscribers``, in order; collect the commands they return.

    The bus's own records in a log (commands issued and applied, failures,
    drops) are history, not input: they are not replayed.
    """
    stream: Iterable[Event] = EventLog.read(source) if isinstance(source, (str, os.PathLike)) else source
    plan = [
        (s, _name_of(s), expand_kinds(getattr(s, "kinds", None)), bool(getattr(s, "batched", False)))
        for s in subscribers
    ]
    result = ReplayResult()
    epoch_of: dict[str, int | None] = {}
    stopping: dict[str, int | None] = {}  # run -> epoch in which a stop was asked
    for event in stream:
        kind = type(event)
        if kind not in _KERAS:
            continue
        run = event.run
        if kind is TrainBegin:
            stopping.pop(run, None)
        elif run in stopping and not _still_happens(event, stopping[run]):
            continue
        epoch = getattr(event, "epoch", None)
        if epoch is not None:
            epoch_of[run] = epoch
        result.events += 1
        for subscriber, name, kinds, batched in plan:
            if kinds is not None and kind not in kinds:
                continue
            answer = await subscriber([event] if batched else event)
            if answer is None:
                continue
            epoch = epoch_of.get(run)
            for command in _as_commands(answer):
                result.commands.append(
                    ReplayedCommand(subscriber=name, run=run, cause=event.seq, epoch=epoch, command=command)
                )
                if isinstance(command, StopTraining) and run not in stopping and kind is not TrainEnd:
                    stopping[run] = epoch
                    if epoch is not None:
                        result.stopped_at[run] = epoch
    return result


def _still_happens(event: Event, epoch: int | None) -> bool:
    """After a stop in ``epoch``, ``fit`` still ends that epoch, then training."""
    if isinstance(event, TrainEnd):
        return True
    return isinstance(event, EpochEnd) and event.epoch == epoch
