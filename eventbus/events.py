"""The event schema: what happened, as frozen msgspec structs in one tagged union.

Every Keras hook has one event whose ``kind`` tag is the hook's name without
``on_`` (``on_train_batch_end`` -> ``"train_batch_end"``). The bus adds its own
events (commands issued and applied, subscriber failures, drops, barrier
timeouts) to the same union, so one log holds the whole record of a run.

Every event carries an envelope:

- ``run``: the ``fit``, ``evaluate`` or ``predict`` call it belongs to.
  Validation inside ``fit`` keeps the fit's run and sets ``validation=True``.
- ``seq``: assigned by the bus at ingress, gapless across the bus.
- ``time``: wall-clock seconds (``time.time()``) when the event was built.

New fields always get defaults, so logs written by older versions still decode.
Events hold no reference cycles, so they are not tracked by the garbage
collector (``gc=False``): queues of them never trigger full collections.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from .commands import Command

__all__ = [
    "BATCH_EVENTS",
    "BUS_EVENTS",
    "KERAS_EVENTS",
    "BarrierTimedOut",
    "CommandApplied",
    "CommandIssued",
    "CommandRejected",
    "EpochBegin",
    "EpochEnd",
    "Event",
    "EventsDropped",
    "PredictBatchBegin",
    "PredictBatchEnd",
    "PredictBegin",
    "PredictEnd",
    "SubscriberFailed",
    "TestBatchBegin",
    "TestBatchEnd",
    "TestBegin",
    "TestEnd",
    "TrainBatchBegin",
    "TrainBatchEnd",
    "TrainBegin",
    "TrainEnd",
    "AnyEvent",
    "is_batch_event",
]

Direction = Literal["up", "down"]


class Event(msgspec.Struct, frozen=True, kw_only=True, tag_field="kind", gc=False):
    """The envelope every event carries."""

    run: str = ""
    seq: int = -1
    time: float = 0.0

    @property
    def kind(self) -> str:
        """The wire tag, e.g. ``"epoch_end"``."""
        return type(self).__struct_config__.tag  # type: ignore[return-value]

    @property
    def log_keys(self) -> list[str]:
        """The keys a Keras callback would see in ``logs`` for this hook."""
        logs = getattr(self, "logs", None)
        return list(logs) if logs else []


# --- training --------------------------------------------------------------


class TrainBegin(Event, frozen=True, kw_only=True, tag="train_begin"):
    """``fit`` started.

    ``params`` are Keras's callback params (``epochs``, ``steps``, ``verbose``).
    ``metric_directions`` tells, per compiled metric, whether higher (``"up"``)
    or lower (``"down"``) is better, so subscribers can resolve ``mode="auto"``
    without seeing the model. Keras builds compiled metrics on the first
    batch, so it is often empty here; :class:`EpochEnd` carries it too.
    """

    logs: dict[str, float] = {}
    params: dict[str, int | float | str | None] = {}
    learning_rate: float | None = None
    metric_directions: dict[str, Direction] = {}


class TrainEnd(Event, frozen=True, kw_only=True, tag="train_end"):
    logs: dict[str, float] = {}


class EpochBegin(Event, frozen=True, kw_only=True, tag="epoch_begin"):
    """An epoch starts; ``learning_rate`` is the optimizer's rate at the hook."""

    epoch: int
    logs: dict[str, float] = {}
    learning_rate: float | None = None


class EpochEnd(Event, frozen=True, kw_only=True, tag="epoch_end"):
    """An epoch ended; ``logs`` holds its metrics, ``val_`` ones included.

    ``metric_directions`` is as on :class:`TrainBegin`, filled in once Keras
    has built the compiled metrics (after the first batch).
    """

    epoch: int
    logs: dict[str, float] = {}
    learning_rate: float | None = None
    metric_directions: dict[str, Direction] = {}


class TrainBatchBegin(Event, frozen=True, kw_only=True, tag="train_batch_begin"):
    batch: int
    logs: dict[str, float] = {}


class TrainBatchEnd(Event, frozen=True, kw_only=True, tag="train_batch_end"):
    """A training batch ended; ``logs`` are running aggregates for the epoch."""

    batch: int
    logs: dict[str, float] = {}


# --- evaluation (standalone, or validation inside fit) ------------------------


class TestBegin(Event, frozen=True, kw_only=True, tag="test_begin"):
    __test__ = False  # not a pytest test class
    logs: dict[str, float] = {}
    validation: bool = False


class TestEnd(Event, frozen=True, kw_only=True, tag="test_end"):
    __test__ = False
    logs: dict[str, float] = {}
    validation: bool = False


class TestBatchBegin(Event, frozen=True, kw_only=True, tag="test_batch_begin"):
    __test__ = False
    batch: int
    logs: dict[str, float] = {}
    validation: bool = False


class TestBatchEnd(Event, frozen=True, kw_only=True, tag="test_batch_end"):
    __test__ = False
    batch: int
    logs: dict[str, float] = {}
    validation: bool = False


# --- prediction --------------------------------------------------------------


class PredictBegin(Event, frozen=True, kw_only=True, tag="predict_begin"):
    logs: dict[str, float] = {}


class PredictEnd(Event, frozen=True, kw_only=True, tag="predict_end"):
    logs: dict[str, float] = {}


class PredictBatchBegin(Event, frozen=True, kw_only=True, tag="predict_batch_begin"):
    batch: int
    logs: dict[str, float] = {}


class PredictBatchEnd(Event, frozen=True, kw_only=True, tag="predict_batch_end"):
    """A prediction batch ended.

    Keras hands callbacks ``{"outputs": arrays}``; the event carries only the
    number of output rows, and the outputs themselves (as nested lists) when the
    bridge was built with ``predict_outputs=True``.
    """

    batch: int
    output_size: int = 0
    outputs: list[object] | None = None

    @property
    def log_keys(self) -> list[str]:
        return ["outputs"]


# --- the bus's own record ----------------------------------------------------


class CommandIssued(Event, frozen=True, kw_only=True, tag="command_issued"):
    """A subscriber returned ``command`` while handling event ``cause``."""

    command: Command
    subscriber: str
    cause: int


class CommandApplied(Event, frozen=True, kw_only=True, tag="command_applied"):
    """The bridge applied the command recorded at ``issued``."""

    command: Command
    issued: int = -1


class CommandRejected(Event, frozen=True, kw_only=True, tag="command_rejected"):
    """The bridge could not apply a command; training went on."""

    command: Command
    reason: str
    issued: int = -1


class SubscriberFailed(Event, frozen=True, kw_only=True, tag="subscriber_failed"):
    """A subscriber raised while handling event ``cause``."""

    subscriber: str
    cause: int
    error: str
    traceback: str = ""


class EventsDropped(Event, frozen=True, kw_only=True, tag="events_dropped"):
    """A subscriber fell behind and lost ``count`` batch events since the last report."""

    subscriber: str
    count: int
    total: int


class BarrierTimedOut(Event, frozen=True, kw_only=True, tag="barrier_timed_out"):
    """Control subscribers did not answer event ``cause`` in time; training went on."""

    cause: int
    subscribers: list[str]
    timeout: float


KERAS_EVENTS: tuple[type[Event], ...] = (
    TrainBegin,
    TrainEnd,
    EpochBegin,
    EpochEnd,
    TrainBatchBegin,
    TrainBatchEnd,
    TestBegin,
    TestEnd,
    TestBatchBegin,
    TestBatchEnd,
    PredictBegin,
    PredictEnd,
    PredictBatchBegin,
    PredictBatchEnd,
)
BUS_EVENTS: tuple[type[Event], ...] = (
    CommandIssued,
    CommandApplied,
    CommandRejected,
    SubscriberFailed,
    EventsDropped,
    BarrierTimedOut,
)

AnyEvent = (
    TrainBegin
    | TrainEnd
    | EpochBegin
    | EpochEnd
    | TrainBatchBegin
    | TrainBatchEnd
    | TestBegin
    | TestEnd
    | TestBatchBegin
    | TestBatchEnd
    | PredictBegin
    | PredictEnd
    | PredictBatchBegin
    | PredictBatchEnd
    | CommandIssued
    | CommandApplied
    | CommandRejected
    | SubscriberFailed
    | EventsDropped
    | BarrierTimedOut
)
"""Every concrete event: decode with ``msgspec.msgpack.Decoder(AnyEvent)``."""

BATCH_EVENTS: frozenset[type[Event]] = frozenset(
    {
        TrainBatchBegin,
        TrainBatchEnd,
        TestBatchBegin,
        TestBatchEnd,
        PredictBatchBegin,
        PredictBatchEnd,
    }
)


def is_batch_event(event: Event) -> bool:
    """Batch events may be dropped by a lagging subscriber; all others never are."""
    return type(event) in BATCH_EVENTS
