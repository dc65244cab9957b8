"""One subscriber's own buffer, overflow policy and counters.

Each subscriber gets its own queue, so a slow one never holds back the others.
Batch events go to a bounded queue that drops oldest-first when full (counted);
every other event goes to an unbounded queue and is never dropped. The two are
merged back in ``seq`` order on the way out. A lossless subscription keeps
everything in one unbounded queue.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Literal

import anyio
import msgspec

from .events import BATCH_EVENTS, Event, is_batch_event

if TYPE_CHECKING:
    from .barrier import Barrier
    from .bus import EventBus

__all__ = ["BarrierMark", "OnError", "SubscriberStatistics", "Subscription"]

OnError = Literal["report", "stop", "raise"]
"""What a subscriber's exception does: report it only, stop training, or fail training."""


class BarrierMark:
    """Queued for a control subscriber that does not take a barrier's event."""

    __slots__ = ("barrier", "seq")

    def __init__(self, seq: int, barrier: Barrier) -> None:
        self.seq = seq  # ordered against events by seq, like one
        self.barrier = barrier


class SubscriberStatistics(msgspec.Struct, frozen=True, kw_only=True):
    """A snapshot of one subscriber's counters."""

    name: str
    delivered: int
    """Events handed to the subscriber (whether or not it raised)."""
    dropped: int
    """Batch events lost oldest-first because the subscriber fell behind."""
    failed: int
    """Events on which the subscriber raised."""
    commands: int
    """Commands the subscriber returned."""
    buffered: int
    """Events waiting in its buffer now."""
    undelivered: int
    """Events still buffered when the bus closed (its close timeout ran out)."""


class Subscription:
    """A subscriber's place on the bus: its buffer, its task's state, its counters.

    Returned by :meth:`EventBus.subscribe`; call :meth:`unsubscribe` to leave.
    Everything but :meth:`statistics` and :meth:`unsubscribe` runs on the bus's
    loop thread.
    """

    def __init__(
        self,
        bus: EventBus,
        name: str,
        handler: Callable[[Event], Awaitable[object]] | None,
        *,
        types: frozenset[type[Event]] | None,
        buffer_size: int,
        lossless: bool,
        control: bool,
        on_error: OnError,
        batched: bool = False,
    ) -> None:
        self.name = name
        self.handler = handler
        self.types = types
        self.buffer_size = buffer_size
        self.lossless = lossless
        self.control = control
        self.batched = batched
        self.on_error: OnError = on_error
        self._bus = bus
        self._events: deque[Event | BarrierMark] = deque()
        self._batches: deque[Event] = deque()
        # A lossless subscription keeps everything in one queue: pop it directly.
        self.pop_fast: Callable[[], Event | BarrierMark | None] = self._pop_events
        self._waiter: anyio.Event | None = None
        self._closed = False
        self.barriers: dict[int, Barrier] = {}
        self.busy = False
        self.left = False
        self.delivered = 0
        self.dropped = 0
        self.dropped_unreported = 0
        self.failed = 0
        self.commands = 0
        self.undelivered = 0

    def __repr__(self) -> str:
        return f"<Subscription {self.name!r}>"

    # --- loop thread ----------------------------------------------------------

    def accepts(self, event: Event) -> bool:
        return self.types is None or type(event) in self.types

    def offer(self, event: Event) -> None:
        """Queue ``event``; never blocks, may drop the oldest batch event."""
        if self.lossless or not is_batch_event(event):
            self.keep(event)
        else:
            self.keep_or_drop(event)

    def keep(self, event: Event | BarrierMark) -> None:
        """Queue an event that is never dropped."""
        if self._closed:
            return
        self._events.append(event)
        if self._waiter is not None:
            self._waiter.set()
            self._waiter = None

    def keep_or_drop(self, event: Event) -> None:
        """Queue a batch event, dropping the oldest one when the buffer is full."""
        if self._closed:
            return
        batches = self._batches
        if len(batches) >= self.buffer_size:
            batches.popleft()
            self.dropped += 1
            self.dropped_unreported += 1
        batches.append(event)
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            waiter.set()

    def offer_for(self, event_type: type[Event]) -> Callable[[Event], None]:
        """The right one of :meth:`keep` and :meth:`keep_or_drop` for this kind of event."""
        if self.lossless or event_type not in BATCH_EVENTS:
            return self.keep
        return self.keep_or_drop

    def pop_many(self, limit: int) -> list[Event | BarrierMark]:
        """Up to ``limit`` queued events, oldest first by ``seq``."""
        events, batches = self._events, self._batches
        if not batches and len(events) <= limit:
            taken = list(events)
            events.clear()
            return taken
        taken = []
        while len(taken) < limit:
            event = self.pop()
            if event is None:
                break
            taken.append(event)
        return taken

    def _pop_events(self) -> Event | BarrierMark | None:
        events = self._events
        return events.popleft() if events else None

    def pop(self) -> Event | BarrierMark | None:
        """The oldest queued event by ``seq``, or ``None`` when empty."""
        events, batches = self._events, self._batches
        if not batches:
            return events.popleft() if events else None
        if events and events[0].seq < batches[0].seq:
            return events.popleft()
        return batches.popleft()

    async def wait(self) -> None:
        """Wait until an event is queued or the subscription closes."""
        if self._events or self._batches or self._closed:
            return
        self._waiter = waiter = anyio.Event()
        await waiter.wait()

    async def receive(self) -> Event:
        """Wait for the next event; raises ``anyio.EndOfStream`` once closed and empty."""
        while True:
            event = self.pop()
            if isinstance(event, BarrierMark):  # only control subscribers get marks, and streams are not
                event.barrier.arrive(self.name)
                continue
            if event is not None:
                return event
            if self._closed:
                raise anyio.EndOfStream
            self._waiter = waiter = anyio.Event()
            await waiter.wait()

    def close(self) -> None:
        """Take no more events; a waiting receiver drains what is left, then ends."""
        self._closed = True
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            waiter.set()

    def mark(self, mark: BarrierMark) -> None:
        """Queue a barrier mark: it arrives once everything ahead of it is handled."""
        self.keep(mark)

    def discard(self) -> int:
        """Drop what is still queued (at the close timeout); returns how many."""
        for item in self._events:
            if type(item) is BarrierMark:
                item.barrier.arrive(self.name)
        left = len(self._events) + len(self._batches)
        self._events.clear()
        self._batches.clear()
        self.undelivered += left
        for barrier in self.barriers.values():
            barrier.arrive(self.name)
        self.barriers.clear()
        return left

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def idle(self) -> bool:
        return not (self.busy or self._events or self._batches)

    # --- any thread -------------------------------------------------------------

    def statistics(self) -> SubscriberStatistics:
        return SubscriberStatistics(
            name=self.name,
            delivered=self.delivered,
            dropped=self.dropped,
            failed=self.failed,
            commands=self.commands,
            buffered=len(self._events) + len(self._batches),
            undelivered=self.undelivered,
        )

    def unsubscribe(self) -> None:
        """Stop receiving new events; what is already queued is still handled."""
        self._bus.unsubscribe(self)


def expand_kinds(
    kinds: Iterable[type[Event] | str] | type[Event] | str | None,
) -> frozenset[type[Event]] | None:
    """Normalise ``kinds=`` (event classes, base classes or wire tags) to concrete classes."""
    if kinds is None:
        return None
    if isinstance(kinds, (str, type)):
        kinds = [kinds]
    by_tag = {cls.__struct_config__.tag: cls for cls in _concrete(Event)}
    chosen: set[type[Event]] = set()
    for kind in kinds:
        if isinstance(kind, str):
            if kind not in by_tag:
                known = ", ".join(sorted(str(tag) for tag in by_tag))
                raise ValueError(f"unknown event kind {kind!r}; known kinds: {known}")
            chosen.add(by_tag[kind])
        elif isinstance(kind, type) and issubclass(kind, Event):
            chosen.update(_concrete(kind))
        else:
            raise TypeError(
                f"kinds must hold event classes (events.EpochEnd) or tags ('epoch_end'), "
                f"got {kind!r} of type {type(kind).__name__}"
            )
    return frozenset(chosen)


def _concrete(cls: type[Event]) -> set[type[Event]]:
    found: set[type[Event]] = set()
    if cls.__struct_config__.tag is not None and cls is not Event:
        found.add(cls)
    for sub in cls.__subclasses__():
        found |= _concrete(sub)
    return found
