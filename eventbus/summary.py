"""What a recorded run did, read back from its events: a projection, like History."""

from __future__ import annotations

import math
from collections.abc import Iterable

import msgspec

from .commands import StopTraining
from .events import (
    CommandApplied,
    CommandIssued,
    CommandRejected,
    EpochEnd,
    Event,
    EventsDropped,
    PredictBegin,
    PredictEnd,
    SubscriberFailed,
    TestBegin,
    TestEnd,
    TrainBegin,
    TrainEnd,
)

__all__ = ["Best", "RunSummary", "summarize"]


class Best(msgspec.Struct, frozen=True):
    value: float
    epoch: int
    direction: str
    """``"min"`` or ``"max"``: which way was better."""


class RunSummary(msgspec.Struct, kw_only=True):
    run: str
    kind: str
    """``fit``, ``evaluate`` or ``predict``."""
    epochs: int = 0
    planned_epochs: int | None = None
    finished: bool = False
    stopped_by: str | None = None
    """Who stopped training early, and why."""
    best: dict[str, Best] = {}
    applied: dict[str, int] = {}
    """Commands applied, by kind."""
    rejected: list[str] = []
    dropped: dict[str, int] = {}
    """Batch events each subscriber lost."""
    failures: dict[str, int] = {}
    last_logs: dict[str, float] = {}


def summarize(events: Iterable[Event]) -> list[RunSummary]:
    """One summary per run, in the order the runs began."""
    runs: dict[str, RunSummary] = {}
    issuers: dict[int, str] = {}
    directions: dict[str, str] = {}
    for event in events:
        summary = runs.get(event.run)
        if summary is None:
            kind = (
                "fit"
                if isinstance(event, TrainBegin)
                else "evaluate"
                if isinstance(event, TestBegin)
                else "predict"
                if isinstance(event, PredictBegin)
                else "unknown"
            )
            summary = runs[event.run] = RunSummary(run=event.run, kind=kind)
        if isinstance(event, TrainBegin):
            epochs = event.params.get("epochs")
            summary.planned_epochs = epochs if isinstance(epochs, int) else None
        elif isinstance(event, EpochEnd):
            summary.epochs += 1
            summary.last_logs = dict(event.logs)
            directions.update(event.metric_directions)
            for name, value in event.logs.items():
                _track_best(summary, name, value, event.epoch, directions)
        elif isinstance(event, (TrainEnd, TestEnd, PredictEnd)) and not getattr(event, "validation", False):
            summary.finished = True
            if isinstance(event, TestEnd):
                summary.last_logs = dict(event.logs)
        elif isinstance(event, CommandIssued):
            issuers[event.seq] = event.subscriber
        elif isinstance(event, CommandApplied):
            name = type(event.command).__name__
            summary.applied[name] = summary.applied.get(name, 0) + 1
            if isinstance(event.command, StopTraining) and summary.stopped_by is None:
                who = issuers.get(event.issued, "a subscriber")
                reason = f": {event.command.reason}" if event.command.reason else ""
                summary.stopped_by = f"{who}{reason}"
        elif isinstance(event, CommandRejected):
            summary.rejected.append(f"{type(event.command).__name__}: {event.reason}")
        elif isinstance(event, EventsDropped):
            summary.dropped[event.subscriber] = event.total
        elif isinstance(event, SubscriberFailed):
            summary.failures[event.subscriber] = summary.failures.get(event.subscriber, 0) + 1
    return list(runs.values())


def _track_best(summary: RunSummary, name: str, value: float, epoch: int, directions: dict[str, str]) -> None:
    if math.isnan(value):
        return
    base = name.removeprefix("val_")
    direction = {"up": "max", "down": "min"}.get(directions.get(base, ""), "min" if "loss" in base else "")
    if not direction:
        direction = "max" if any(word in base for word in ("acc", "auc", "precision", "recall")) else "min"
    best = summary.best.get(name)
    if best is None or (value < best.value if direction == "min" else value > best.value):
        summary.best[name] = Best(value=value, epoch=epoch, direction=direction)
