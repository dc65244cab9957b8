"""The event bus: thread-safe ingress, fan-out, one task per subscriber.

Producers (the Keras bridge on the training thread, or any thread) call
:meth:`EventBus.publish_nowait`: it stamps the event's time, appends it to the
ingress queue (no lock) and returns. It never blocks and never waits on a
subscriber. It only wakes the loop when the loop is parked for want of
events; while events flow, the loop polls the queue every ``latency``
seconds, so the producer pays for a deque append, not a cross-thread wake-up.
The loop stamps each event's sequence number as it takes it in, so numbers
are gapless and in delivery order, whichever threads publish.

The loop fans each event out to every subscriber's own buffer
(:mod:`eventbus.subscription`), and each subscriber's task hands its events,
in order, to the subscriber. Commands a subscriber returns are recorded as
events and handed to the bridge of the run they answer.

``with EventBus() as bus:`` runs the loop in a background thread for plain
scripts; ``async with EventBus() as bus:`` runs it inside the caller's loop
(asyncio or trio).
"""

from __future__ import annotations

import inspect
import logging
import threading
import time
import traceback
import warnings
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from types import TracebackType
from typing import Any, Literal, cast

import anyio
import anyio.abc
import anyio.lowlevel
import msgspec
from msgspec.structs import force_setattr

from ._logs import floats_from
from ._wakeup import threadsafe_scheduler
from .barrier import Barrier
from .commands import COMMAND_TYPES, Command, FailTraining, StopTraining
from .events import (
    BATCH_EVENTS,
    BUS_EVENTS,
    CommandIssued,
    CommandRejected,
    EpochEnd,
    Event,
    EventsDropped,
    PredictEnd,
    SubscriberFailed,
    TestEnd,
    TrainEnd,
)
from .exceptions import BusClosedError, BusNotRunningError
from .subscription import BarrierMark, OnError, SubscriberStatistics, Subscription, expand_kinds

__all__ = ["INGRESS", "BusStatistics", "EventBus", "EventStream"]

logger = logging.getLogger("eventbus")

CommandSink = Callable[[int, Command], None]
"""Where a bridge takes commands for its run: ``sink(issued_seq, command)``."""

_REPORT_DROPS_ON = frozenset({EpochEnd, TrainEnd, TestEnd, PredictEnd})
_BUS_REPORTS = frozenset({SubscriberFailed, EventsDropped})
_BUS_EVENTS = frozenset(BUS_EVENTS)
_DRAIN_BATCH = 512
_now = time.time
_get_ident = threading.get_ident
INGRESS = "(ingress)"
"""The ``subscriber`` of an :class:`EventsDropped` for events every subscriber lost."""


class BusStatistics(msgspec.Struct, frozen=True, kw_only=True):
    """A snapshot of the bus's counters, one entry per subscriber."""

    published: int
    """Events that entered the bus (the next ``seq``)."""
    dropped_at_ingress: int = 0
    """Batch events refused because the loop was ``max_backlog`` events behind."""
    subscribers: tuple[SubscriberStatistics, ...]

    def __getitem__(self, name: str) -> SubscriberStatistics:
        for stats in self.subscribers:
            if stats.name == name:
                return stats
        names = ", ".join(repr(s.name) for s in self.subscribers) or "none"
        raise KeyError(f"no subscriber named {name!r}; subscribers: {names}")


class _Subscribe:
    __slots__ = ("subscription",)

    def __init__(self, subscription: Subscription) -> None:
        self.subscription = subscription


class _Unsubscribe(_Subscribe):
    __slots__ = ()


class _WithBarrier:
    __slots__ = ("barrier", "event")

    def __init__(self, event: Event, barrier: Barrier) -> None:
        self.event = event
        self.barrier = barrier


class _RawLogs:
    __slots__ = ("event",)

    def __init__(self, event: Event) -> None:
        self.event = event


class _Issue:
    __slots__ = ("cause", "command", "run", "subscriber")

    def __init__(self, command: Command, subscriber: str, run: str | None, cause: int) -> None:
        self.command = command
        self.subscriber = subscriber
        self.run = run
        self.cause = cause


_Op = _Subscribe | _WithBarrier | _RawLogs | _Issue


class EventBus:
    """An asynchronous, event-sourced callback bus.

    Args:
        buffer_size: batch events each subscriber may hold before the oldest
            are dropped (per subscriber, overridable in :meth:`subscribe`).
        barrier_timeout: seconds the training thread waits at train/epoch
            boundaries for control subscribers before it goes on.
        close_timeout: seconds closing waits for subscribers to drain.
        latency: how often, in seconds, the loop polls for events while they
            flow. The producer never pays for a wake-up in that time.
        backend: ``"asyncio"`` or ``"trio"``, for the background thread of
            ``with EventBus()``; ``async with`` uses the caller's loop.
        max_backlog: events waiting to be fanned out beyond which new batch
            events are dropped at ingress (counted), so a producer faster than
            the loop cannot grow memory without bound.
    """

    def __init__(
        self,
        *,
        buffer_size: int = 1024,
        barrier_timeout: float = 10.0,
        close_timeout: float = 10.0,
        latency: float = 0.02,
        backend: Literal["asyncio", "trio"] = "asyncio",
        max_backlog: int = 65536,
    ) -> None:
        _check_positive("buffer_size", buffer_size, integer=True)
        _check_positive("barrier_timeout", barrier_timeout)
        _check_positive("close_timeout", close_timeout)
        _check_positive("latency", latency)
        _check_positive("max_backlog", max_backlog, integer=True)
        if backend not in ("asyncio", "trio"):
            raise ValueError(f"backend must be 'asyncio' or 'trio', got {backend!r}")
        self.buffer_size = buffer_size
        self.barrier_timeout = barrier_timeout
        self.close_timeout = close_timeout
        self.latency = latency
        self.backend = backend
        self.max_backlog = max_backlog
        self._dropped_at_ingress = 0
        self._ingress_unreported = 0

        self._lock = threading.Lock()
        self._ingress: deque[Event | _Op] = deque()
        self._seq = 0
        self._subscriptions: list[Subscription] = []
        self._routes: dict[type[object], tuple[Callable[[Event], None], ...]] = {}
        self._registry: list[Subscription] = []
        self._control_count = 0
        self._names: set[str] = set()
        self._sinks: dict[str, CommandSink] = {}

        self._state: Literal["new", "running", "closing", "closed"] = "new"
        self._loop_thread: int | None = None
        self._thread: threading.Thread | None = None
        self._started = threading.Event()
        self._start_error: BaseException | None = None
        self._task_group: anyio.abc.TaskGroup | None = None
        self._wake: anyio.Event | None = None
        self._parked = False
        self._schedule_wake: Callable[[], None] = _nothing
        self._close_requested = False
        self._failures: dict[str, str] = {}
        self._closed_reported = False

    def __repr__(self) -> str:
        return f"<EventBus {self._state} subscribers={len(self._subscriptions)} published={self._seq}>"

    # --- subscribing ------------------------------------------------------------

    def subscribe(
        self,
        handler: Callable[[Any], Awaitable[object]],
        *,
        kinds: Iterable[type[Event] | str] | type[Event] | str | None = None,
        name: str | None = None,
        control: bool | None = None,
        lossless: bool | None = None,
        buffer_size: int | None = None,
        on_error: OnError | None = None,
        batched: bool | None = None,
    ) -> Subscription:
        """Deliver events to ``handler``, an async callable ``(event) -> commands``.

        The handler returns ``None``, a command, or an iterable of commands.
        Options not given are read from the handler's attributes of the same
        name (built-in subscribers set them), then default.

        Args:
            kinds: only these event classes (or tags, or base classes).
            name: shown in statistics and reports; defaults to the handler's name.
            control: the bus waits for this subscriber at train and epoch
                boundaries, so its commands apply where a Keras callback's would.
            lossless: never drop events for this subscriber (its buffer grows).
            buffer_size: batch events held before the oldest are dropped.
            on_error: ``"report"`` (default), ``"stop"`` training, or ``"raise"``
                in the training thread, when the handler raises.
            batched: call the handler with a list of every event queued for
                it (in order, up to 512) instead of one event at a time. Sinks
                that write or send in batches keep up with far more events.
        """
        _check_async_callable(handler)
        if self._state == "closed":
            raise BusClosedError("this bus is closed; subscribe to a new EventBus")
        if kinds is None:
            kinds = getattr(handler, "kinds", None)
        control = control if control is not None else bool(getattr(handler, "control", False))
        lossless = lossless if lossless is not None else bool(getattr(handler, "lossless", False))
        batched = batched if batched is not None else bool(getattr(handler, "batched", False))
        buffer_size = buffer_size if buffer_size is not None else self.buffer_size
        _check_positive("buffer_size", buffer_size, integer=True)
        on_error = on_error if on_error is not None else getattr(handler, "on_error", "report")
        if on_error not in ("report", "stop", "raise"):
            raise ValueError(f"on_error must be 'report', 'stop' or 'raise', got {on_error!r}")
        subscription = Subscription(
            self,
            self._unique_name(name or _name_of(handler)),
            handler,
            types=expand_kinds(kinds),
            buffer_size=buffer_size,
            lossless=lossless,
            control=control,
            on_error=on_error,
            batched=batched,
        )
        self._register(subscription)
        attach = getattr(handler, "attach", None)
        if callable(attach):
            attach(self)  # a subscriber that issues commands of its own accord (a socket server) keeps the bus
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        """Stop delivering new events; already queued ones are still handled."""
        with self._lock:
            if subscription.control and not subscription.left:
                self._control_count -= 1
            subscription.left = True
        if self._state != "closed":
            self._enqueue_op(_Unsubscribe(subscription))

    def _register(self, subscription: Subscription) -> None:
        with self._lock:
            self._registry.append(subscription)
            if subscription.control:
                self._control_count += 1
        self._enqueue_op(_Subscribe(subscription))

    def stream(
        self,
        *kinds: type[Event] | str,
        buffer_size: int | None = None,
        lossless: bool = False,
    ) -> EventStream:
        """Iterate events directly: ``async for event in bus.stream(events.EpochEnd)``.

        The stream receives every matching event published after this call and
        ends when the bus closes (or leave it early with ``async with`` /
        ``aclose``).
        """
        if self._state == "closed":
            raise BusClosedError("this bus is closed; stream from a new EventBus")
        size = buffer_size if buffer_size is not None else self.buffer_size
        _check_positive("buffer_size", size, integer=True)
        subscription = Subscription(
            self,
            self._unique_name("stream"),
            None,
            types=expand_kinds(kinds) if kinds else None,
            buffer_size=size,
            lossless=lossless,
            control=False,
            on_error="report",
        )
        self._register(subscription)
        return EventStream(subscription)

    # --- publishing -------------------------------------------------------------

    def publish_nowait(self, event: Event) -> Event:
        """Queue ``event``; never blocks. Thread-safe.

        The event's ``time`` is stamped now. Its ``seq`` is stamped as the loop
        takes it in (at once, on the loop's own thread), so sequence numbers
        are gapless and in delivery order whichever threads publish. Raises
        :class:`BusClosedError` once the bus has closed.
        """
        if self._state == "closed":
            raise BusClosedError(f"cannot publish {event.kind}: the bus is closed")
        ingress = self._ingress
        if len(ingress) >= self.max_backlog and self._shed(event):
            return event
        force_setattr(event, "time", _now())
        ingress.append(event)  # atomic: no lock on the producer's path
        if _get_ident() == self._loop_thread:
            self._drain_ingress()  # stamp it, and everything queued before it, now
        elif self._parked:
            self._wake_soon()
        return event

    def publish_raw_logs(self, event: Event) -> Event:
        """Like :meth:`publish_nowait`, for an event whose ``logs`` still hold
        framework tensors: the loop converts them to floats (flattened, keys
        sorted, as Keras does) before any subscriber sees the event, so the
        producer never waits on a device. For bridges; thread-safe."""
        if self._state == "closed":
            raise BusClosedError(f"cannot publish {event.kind}: the bus is closed")
        ingress = self._ingress
        if len(ingress) >= self.max_backlog and self._shed(event):
            return event
        force_setattr(event, "time", _now())
        ingress.append(_RawLogs(event))
        if self._parked:
            self._wake_soon()
        return event

    def _shed(self, event: Event) -> bool:
        """The loop is ``max_backlog`` behind: refuse a batch event, counted."""
        if type(event) not in BATCH_EVENTS:
            return False  # lifecycle and epoch events are never dropped
        self._dropped_at_ingress += 1
        self._ingress_unreported += 1
        return True

    async def publish(self, event: Event) -> Event:
        """Async twin of :meth:`publish_nowait`."""
        self.publish_nowait(event)
        await anyio.lowlevel.checkpoint()
        return event

    def publish_with_barrier(self, event: Event) -> Barrier:
        """Publish ``event`` and return a barrier that opens once every control
        subscriber accepting it has handled it. For bridges; thread-safe."""
        if self._state == "closed":
            raise BusClosedError(f"cannot publish {event.kind}: the bus is closed")
        barrier = Barrier()
        force_setattr(event, "time", _now())
        self._ingress.append(_WithBarrier(event, barrier))
        self._wake_soon()
        return barrier

    def issue(self, command: Command, *, subscriber: str, run: str | None = None, cause: int = -1) -> None:
        """Hand ``command`` to training now, as a subscriber's answer would be. Thread-safe.

        For commands that answer no event (a remote client's, a UI's): it is
        recorded as a ``CommandIssued`` event from ``subscriber`` and applied
        by the bridge of ``run``, by default the run training now (the one that
        began last). With no such run, it is recorded as rejected.
        """
        if not isinstance(command, COMMAND_TYPES):
            raise TypeError(f"expected a command ({', '.join(t.__name__ for t in COMMAND_TYPES)}), got {command!r}")
        if self._state == "closed":
            raise BusClosedError(f"cannot issue {type(command).__name__}: the bus is closed")
        self._enqueue_op(_Issue(command, subscriber, run, cause))

    @property
    def has_control_subscribers(self) -> bool:
        """Whether any control subscriber is (or is about to be) subscribed."""
        return self._control_count > 0

    # --- bridges ----------------------------------------------------------------

    def attach_run(self, run: str, sink: CommandSink) -> None:
        """Route commands answering events of ``run`` to ``sink`` (a bridge)."""
        self._sinks[run] = sink

    def detach_run(self, run: str) -> None:
        """``run`` is over: its late commands are recorded as rejected."""
        self._sinks.pop(run, None)

    @property
    def running(self) -> bool:
        """Whether the bus's loop is running and accepting events."""
        return self._state == "running"

    def in_loop_thread(self) -> bool:
        """Whether the caller runs on the bus's own event-loop thread."""
        return self._loop_thread is not None and threading.get_ident() == self._loop_thread

    def check_running(self) -> None:
        """Raise a clear error unless events published now will be delivered."""
        if self._state == "running":
            return
        if self._state == "new":
            raise BusNotRunningError(
                "the bus is not running: start it with `with EventBus() as bus:` "
                "(a background thread) or `async with EventBus() as bus:` before training"
            )
        raise BusClosedError("the bus is closed: train inside its `with` block, or use a new EventBus")

    # --- statistics -------------------------------------------------------------

    def statistics(self) -> BusStatistics:
        """Per subscriber: delivered, dropped, failed, commands, buffered, undelivered."""
        with self._lock:
            registry = tuple(self._registry)
        return BusStatistics(
            published=self._seq,
            dropped_at_ingress=self._dropped_at_ingress,
            subscribers=tuple(s.statistics() for s in registry),
        )

    # --- running: a background thread -------------------------------------------

    def __enter__(self) -> EventBus:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def start(self) -> None:
        """Run the bus's loop in a background thread (what ``with EventBus()`` does)."""
        self._claim_start()
        self._thread = threading.Thread(target=self._thread_main, name="eventbus", daemon=True)
        self._thread.start()
        self._started.wait()
        if self._start_error is not None:
            raise self._start_error

    def close(self) -> None:
        """Drain subscribers (up to ``close_timeout``) and stop; twice is harmless."""
        if self._thread is None:
            if self._state in ("new", "closed"):
                self._state = "closed"
                return
            raise RuntimeError("this bus runs in an event loop: close it with `await bus.aclose()`")
        if self._thread is threading.current_thread():
            raise RuntimeError("close() called from a subscriber on the bus's own loop")
        self._request_close()
        self._thread.join(self.close_timeout + 5.0)
        if self._thread.is_alive():  # pragma: no cover - the loop is wedged in user code
            warnings.warn(
                "the event bus loop did not stop within its close timeout; a subscriber "
                "is blocking it (use `await` instead of blocking calls in handlers)",
                RuntimeWarning,
                stacklevel=2,
            )
        self._thread = None
        self._report_at_close()

    def _thread_main(self) -> None:
        async def main() -> None:
            async with anyio.create_task_group() as tg:
                await tg.start(self._main)

        try:
            anyio.run(main, backend=self.backend)
        except BaseException as exc:  # pragma: no cover - reported to start()
            self._start_error = exc
            self._started.set()
            logger.exception("the event bus loop crashed")

    # --- running: the caller's loop ---------------------------------------------

    async def __aenter__(self) -> EventBus:
        self._claim_start()
        self._task_group = anyio.create_task_group()
        await self._task_group.__aenter__()
        try:
            await self._task_group.start(self._main)
        except BaseException:
            await self._task_group.__aexit__(None, None, None)
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
        task_group, self._task_group = self._task_group, None
        if task_group is not None:
            if not self._loop_done.is_set():
                task_group.cancel_scope.cancel()
            # The body's own exception, if any, propagates as it is, not in a group.
            await task_group.__aexit__(None, None, None)

    async def aclose(self) -> None:
        """Drain subscribers (up to ``close_timeout``) and stop; twice is harmless.

        Safe to call from inside the ``async with`` block, e.g. to end streams.
        """
        if self._task_group is None:
            if self._thread is not None:
                await anyio.to_thread.run_sync(self.close)
            self._state = "closed"
            return
        if self._closed_reported:
            return
        self._request_close()
        with anyio.CancelScope(shield=True), anyio.move_on_after(self.close_timeout + 5.0):
            # Drain even when the body raised or was cancelled: bounded by the timeout.
            await self._loop_done.wait()
        self._report_at_close()

    # --- the loop ---------------------------------------------------------------

    def _claim_start(self) -> None:
        if self._state != "new":
            raise RuntimeError(f"this bus was already started ({self._state}); an EventBus runs once")
        self._state = "running"

    async def _main(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        self._loop_thread = threading.get_ident()
        self._schedule_wake = threadsafe_scheduler(self._wake_now)
        self._wake = anyio.Event()
        self._loop_done = anyio.Event()
        try:
            async with anyio.create_task_group() as handlers:
                self._handlers = handlers
                self._drain_ingress()
                task_status.started()
                self._started.set()
                await self._dispatch_until_close()
                await self._drain_subscribers()
                handlers.cancel_scope.cancel()
        finally:
            with self._lock:
                self._state = "closed"
            for subscription in self._subscriptions:
                subscription.close()
                if subscription.handler is not None:
                    subscription.discard()  # a stream's reader still gets what is queued
            self._schedule_wake = _nothing
            self._started.set()
            self._loop_done.set()

    async def _dispatch_until_close(self) -> None:
        ingress = self._ingress
        linger = max(0.25, 10 * self.latency)
        last_event = anyio.current_time()
        while not self._close_requested:
            if ingress:
                # A bounded batch, then yield: subscribers run even under a fast producer.
                self._drain_ingress(_DRAIN_BATCH)
                last_event = anyio.current_time()
                await anyio.lowlevel.checkpoint()
                continue
            wake = self._wake
            assert wake is not None
            if anyio.current_time() - last_event < linger:
                # Events are flowing: poll, so producers need not wake us.
                with anyio.move_on_after(self.latency):
                    await wake.wait()
            else:
                self._parked = True
                if not ingress and not self._close_requested:
                    await wake.wait()
                self._parked = False
            if wake.is_set():
                self._wake = anyio.Event()

    async def _drain_subscribers(self) -> None:
        with self._lock:
            self._state = "closing"
        with anyio.move_on_after(self.close_timeout):
            while True:
                self._drain_ingress()
                # Streams are read by their owner, maybe never again: only handlers are waited for.
                if not self._ingress and all(s.idle for s in self._subscriptions if s.handler is not None):
                    break
                await anyio.sleep(0.001)
        with self._lock:
            self._state = "closed"
        self._drain_ingress()

    def _wake_now(self) -> None:
        wake = self._wake
        if wake is not None:
            wake.set()

    def _wake_soon(self) -> None:
        if self.in_loop_thread():
            self._wake_now()
        else:
            self._schedule_wake()

    def _request_close(self) -> None:
        self._close_requested = True
        self._wake_soon()

    def _enqueue_op(self, op: _Op) -> None:
        self._ingress.append(op)
        self._wake_soon()

    def _drain_ingress(self, limit: int = -1) -> None:
        """Stamp and fan out queued events: all, or at most ``limit`` before yielding.

        The common case, an event of a kind seen before, takes a cached route:
        the tuple of the accepting subscribers' enqueue functions.
        """
        ingress = self._ingress
        routes = self._routes
        while ingress and limit != 0:
            limit -= 1
            item = ingress.popleft()
            offers = routes.get(type(item))
            if offers is None:
                self._take_in(item)
                routes = self._routes  # a subscription may have changed the routes
                continue
            # Only plain events have routes.
            seq = self._seq
            self._seq = seq + 1
            force_setattr(item, "seq", seq)  # type: ignore[arg-type]
            for offer in offers:
                offer(item)  # type: ignore[arg-type]  # the last one reports drops, for kinds that end an epoch

    def _take_in(self, item: Event | _Op) -> None:
        """The uncommon cases: (un)subscribing, barriers, failure reports, new kinds."""
        if isinstance(item, _Subscribe):
            if isinstance(item, _Unsubscribe):
                self._remove(item.subscription)
            else:
                self._add(item.subscription)
            self._routes = {}
            return
        if isinstance(item, _Issue):
            self._issue_for(item.subscriber, item.run, item.cause, item.command)
            return
        if isinstance(item, _RawLogs):
            event = item.event  # its logs are framework tensors: read them here, off the training thread
            force_setattr(event, "logs", floats_from(event.logs))  # type: ignore[attr-defined]
        else:
            event = item.event if isinstance(item, _WithBarrier) else item
        force_setattr(event, "seq", self._seq)
        self._seq += 1
        kind = type(event)
        if kind is not SubscriberFailed and not isinstance(item, _WithBarrier):
            offers = self._routes.get(kind) or self._build_route(kind)
            for offer in offers:
                offer(event)
            return
        accepting = [s for s in self._subscriptions if s.types is None or kind in s.types]
        if kind is SubscriberFailed:
            # A failure report goes to everyone but the subscriber that failed.
            accepting = [s for s in accepting if s.name != event.subscriber]  # type: ignore[attr-defined]
        for subscription in accepting:
            subscription.offer(event)
        if isinstance(item, _WithBarrier):
            waiting = [s for s in accepting if s.control and s.handler is not None]
            for subscription in waiting:
                subscription.barriers[event.seq] = item.barrier
            # A control subscriber that does not take this kind still answers what it was
            # given before it (a stop asked at a batch must apply by the epoch's end): a
            # mark in its queue arrives once it has handled everything ahead of the mark.
            marked = [s for s in self._subscriptions if s.control and s.handler is not None and s not in accepting]
            for subscription in marked:
                subscription.mark(BarrierMark(seq=event.seq, barrier=item.barrier))
            item.barrier.expect([s.name for s in waiting + marked])
        if kind in _REPORT_DROPS_ON:
            self._report_drops(event)

    def _build_route(self, kind: type[Event]) -> tuple[Callable[[Event], None], ...]:
        route = [s.offer_for(kind) for s in self._subscriptions if s.types is None or kind in s.types]
        if kind in _REPORT_DROPS_ON:
            route.append(self._report_drops)
        self._routes[kind] = offers = tuple(route)
        return offers

    def _add(self, subscription: Subscription) -> None:
        if self._state == "closed":
            subscription.close()
            return
        self._subscriptions = [*self._subscriptions, subscription]
        if subscription.handler is not None:
            self._handlers.start_soon(self._deliver, subscription, name=f"eventbus:{subscription.name}")

    def _remove(self, subscription: Subscription) -> None:
        if subscription in self._subscriptions:
            self._subscriptions = [s for s in self._subscriptions if s is not subscription]
        subscription.close()

    def _report_drops(self, cause: Event) -> None:
        if self._ingress_unreported:
            count, self._ingress_unreported = self._ingress_unreported, 0
            self.publish_nowait(
                EventsDropped(run=cause.run, subscriber=INGRESS, count=count, total=self._dropped_at_ingress)
            )
        for subscription in self._subscriptions:
            if subscription.dropped_unreported:
                count, subscription.dropped_unreported = subscription.dropped_unreported, 0
                self.publish_nowait(
                    EventsDropped(
                        run=cause.run,
                        subscriber=subscription.name,
                        count=count,
                        total=subscription.dropped,
                    )
                )

    async def _deliver(self, subscription: Subscription) -> None:
        """One subscriber's task: hand it its events in order, route its commands;
        at the end, let it close (``aclose()``), e.g. to flush a file."""
        try:
            if subscription.batched:
                await self._deliver_batches(subscription)
            else:
                await self._deliver_one_by_one(subscription)
        finally:
            aclose = getattr(subscription.handler, "aclose", None)
            if aclose is not None:
                with anyio.CancelScope(shield=True), anyio.move_on_after(self.close_timeout):
                    try:
                        await aclose()
                    except Exception:
                        logger.exception("subscriber %s failed to close", subscription.name)

    async def _deliver_one_by_one(self, subscription: Subscription) -> None:
        handler = subscription.handler
        assert handler is not None
        # Typed as events only: barrier marks (control subscribers only) are taken out first.
        pop = cast(Callable[[], Event | None], subscription.pop_fast if subscription.lossless else subscription.pop)
        barriers = subscription.barriers
        control = subscription.control
        burst = 0
        subscription.busy = True
        while True:
            event = pop()
            if event is None:
                subscription.busy = False
                if subscription.closed:
                    return
                burst = 0
                await subscription.wait()
                subscription.busy = True
                continue
            if control and isinstance(event, BarrierMark):  # only control subscribers get marks
                event.barrier.arrive(subscription.name)
                continue
            subscription.delivered += 1
            try:
                result = await handler(event)
            except Exception as exc:
                subscription.failed += 1
                self._report_failure(subscription, event, exc)
            else:
                if result is not None:
                    self._route(subscription, event, result)
            if barriers:
                self._arrive(subscription, event)
            burst += 1
            if burst == 512:  # a handler that never awaits must not starve the loop (_DRAIN_BATCH)
                burst = 0
                await anyio.lowlevel.checkpoint()

    async def _deliver_batches(self, subscription: Subscription) -> None:
        """A batched subscriber's task: hand it every queued event at once, as a list."""
        handler = cast(Callable[[list[Event]], Awaitable[object]], subscription.handler)
        while True:
            taken = subscription.pop_many(_DRAIN_BATCH)
            marks = [m for m in taken if isinstance(m, BarrierMark)]
            batch = [e for e in taken if not isinstance(e, BarrierMark)]
            if not batch:
                for mark in marks:
                    mark.barrier.arrive(subscription.name)
                subscription.busy = False
                if subscription.closed:
                    return
                if not marks:
                    await subscription.wait()
                continue
            subscription.busy = True
            subscription.delivered += len(batch)
            last = batch[-1]
            try:
                result = await handler(batch)
            except Exception as exc:
                subscription.failed += 1
                self._report_failure(subscription, last, exc)
            else:
                if result is not None:
                    self._route(subscription, last, result)
            if subscription.barriers:
                for event in batch:
                    self._arrive(subscription, event)
            for mark in marks:
                mark.barrier.arrive(subscription.name)

    @staticmethod
    def _arrive(subscription: Subscription, event: Event) -> None:
        barrier = subscription.barriers.pop(event.seq, None)
        if barrier is not None:
            barrier.arrive(subscription.name)

    def _route(self, subscription: Subscription, cause: Event, result: object) -> None:
        try:
            commands = _as_commands(result)
        except TypeError as exc:
            subscription.failed += 1
            self._report_failure(subscription, cause, exc)
            return
        for command in commands:
            self._issue(subscription.name, cause, command)
            subscription.commands += 1

    def _issue(self, subscriber: str, cause: Event, command: Command) -> None:
        self._issue_for(subscriber, cause.run, cause.seq, command)

    def _issue_for(self, subscriber: str, run: str | None, cause: int, command: Command) -> None:
        if self._state == "closed":
            logger.warning("%s returned %r after the bus closed; not applied", subscriber, command)
            return
        if run is None:
            run = next(reversed(self._sinks), "")  # the run that began last
        issued = self._record(CommandIssued(run=run, command=command, subscriber=subscriber, cause=cause))
        sink = self._sinks.get(run)
        if sink is not None:
            sink(issued.seq, command)
        else:
            reason = f"run {run!r} is not training (it ended, or it is a replay)" if run else "no run is training"
            self._record(CommandRejected(run=run, command=command, issued=issued.seq, reason=reason))

    def _record(self, event: Event) -> Event:
        """Stamp and route an event the loop makes itself, now: unlike an in-loop
        publish, without first taking in what waits in the ingress, so commands
        reach their sinks in the order they were issued."""
        force_setattr(event, "time", _now())
        self._take_in(event)
        return event

    def _report_failure(self, subscription: Subscription, cause: Event, exc: Exception) -> None:
        error = f"{type(exc).__name__}: {exc}"
        first = subscription.name not in self._failures
        if first:
            self._failures[subscription.name] = error
            logger.error("subscriber %s failed on %s #%d", subscription.name, cause.kind, cause.seq, exc_info=exc)
        else:  # counted, published, and summed up at close: no log line per event
            logger.debug("subscriber %s failed on %s #%d: %s", subscription.name, cause.kind, cause.seq, error)
        if type(cause) in _BUS_REPORTS or self._state == "closed":
            return  # a failure on a failure report is not published: no feedback loop
        self.publish_nowait(
            SubscriberFailed(
                run=cause.run,
                subscriber=subscription.name,
                cause=cause.seq,
                error=error,
                # Formatting a traceback costs ~100 us: once per subscriber is enough.
                traceback="".join(traceback.format_exception(exc)) if first else "",
            )
        )
        if type(cause) in _BUS_EVENTS:
            return  # stopping or failing training answers training events only: no loops
        message = f"subscriber {subscription.name} failed on {cause.kind} #{cause.seq}: {error}"
        if subscription.on_error == "stop":
            self._issue(subscription.name, cause, StopTraining(reason=message))
        elif subscription.on_error == "raise":
            self._issue(subscription.name, cause, FailTraining(message=message))

    def _report_at_close(self) -> None:
        """Warn, in the closing thread, about anything that was lost or failed."""
        if self._closed_reported:
            return
        self._closed_reported = True
        lines = []
        statistics = self.statistics()
        if statistics.dropped_at_ingress:
            lines.append(f"{INGRESS}: dropped {statistics.dropped_at_ingress} batch events, the loop was behind")
        for stats in statistics.subscribers:
            parts = []
            if stats.dropped:
                parts.append(f"dropped {stats.dropped} batch events")
            if stats.undelivered:
                parts.append(f"{stats.undelivered} events undelivered at close")
            if stats.failed:
                parts.append(f"failed on {stats.failed} events (first: {self._failures.get(stats.name)})")
            if parts:
                lines.append(f"{stats.name}: " + ", ".join(parts))
        if lines:
            warnings.warn(
                "event bus closed with losses or failures:\n  " + "\n  ".join(lines),
                EventBusWarning,
                stacklevel=3,
            )

    def _unique_name(self, name: str) -> str:
        with self._lock:
            unique, n = name, 1
            while unique in self._names:
                n += 1
                unique = f"{name}#{n}"
            self._names.add(unique)
            return unique


class EventBusWarning(UserWarning):
    """Events were dropped, left undelivered, or a subscriber failed."""


class EventStream:
    """Events as an async iterator: ``async for event in bus.stream(...)``."""

    def __init__(self, subscription: Subscription) -> None:
        self.subscription = subscription

    def __aiter__(self) -> AsyncIterator[Event]:
        return self

    async def __anext__(self) -> Event:
        try:
            return await self.subscription.receive()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None

    async def __aenter__(self) -> EventStream:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Leave the bus; events not yet read are dropped."""
        self.subscription.unsubscribe()
        self.subscription.close()
        self.subscription.discard()

    def statistics(self) -> SubscriberStatistics:
        return self.subscription.statistics()


def _nothing() -> None:
    return None


def _check_async_callable(handler: object) -> None:
    if inspect.iscoroutinefunction(handler):
        return
    call = getattr(handler, "__call__", None)  # noqa: B004 - objects with async __call__
    if call is not None and inspect.iscoroutinefunction(call):
        return
    what = f"{handler!r} of type {type(handler).__name__}"
    if callable(handler):
        raise TypeError(
            f"subscribe() needs an async callable, got {what}; define it with `async def handler(event): ...`"
        )
    raise TypeError(f"subscribe() needs an async callable, got {what}")


def _name_of(handler: object) -> str:
    name = getattr(handler, "name", None)
    if isinstance(name, str) and name:
        return name
    function_name = getattr(handler, "__name__", None)
    if isinstance(function_name, str):
        return function_name
    return type(handler).__name__


def _as_commands(result: object) -> list[Command]:
    if isinstance(result, COMMAND_TYPES):
        return [cast(Command, result)]
    if isinstance(result, Iterable) and not isinstance(result, (str, bytes, Mapping)):
        commands = list(result)
        if all(isinstance(c, COMMAND_TYPES) for c in commands):
            return commands
    raise TypeError(
        f"a handler returned {result!r}; return None, a command "
        "(eventbus.commands.StopTraining, ...) or an iterable of commands"
    )


def _check_positive(name: str, value: object, *, integer: bool = False) -> None:
    kind = int if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kind) or not value > 0:
        what = "an integer" if integer else "a number"
        raise ValueError(f"{name} must be {what} > 0, got {value!r}")
