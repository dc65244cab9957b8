"""Events per second from one producer thread, through the bus, to 1, 8 and 64 subscribers.

Budgets: >= 1,000,000 events/s to one subscriber, >= 300,000 to 8.

End to end: the clock starts just before the first publish and stops when
the last subscriber has received the last event (each subscriber, a trivial
async callable that counts, notes the time it saw its last one). To measure
delivery rather than load shedding, the bus's ``max_backlog`` exceeds the
events published and every subscriber is lossless; each is checked to have
received every event. ``publish_nowait`` stamps the event it is given, so the
producer builds a fresh one per publish, as the bridge does; the "prebuilt"
producer builds them all beforehand, which separates building an event from
handing it off.

With the bus's default settings a producer faster than the loop is shed
instead (batch events dropped at ingress and by lagging subscribers, counted):
that run ends with a ``TrainEnd`` marker, which is never dropped, and its
events/s count what was delivered, beside the drops.

asyncio and trio (``EventBus(backend=...)``, the loop in a background thread)
run back to back, the order alternating from repeat to repeat, and their
ratio is taken pair by pair; so is the ratio of the prebuilt to the fresh
producer. Starting and closing each bus are not timed.
"""

from __future__ import annotations

import importlib.util
import threading
import time
from collections.abc import Callable
from typing import Any

from eventbus.events import Event, TrainBatchEnd, TrainEnd

from .common import running_bus, spread

BUDGETS: dict[int, float] = {1: 1_000_000.0, 8: 300_000.0}
"""Subscribers -> events/s, end to end, on the default backend (asyncio)."""

BACKENDS = ("asyncio", "trio")
PRODUCERS: dict[str, str] = {
    "fresh": "a fresh event built per publish",
    "prebuilt": "events built beforehand, publish only",
}
WAIT_S = 120.0
"""A run that has not delivered everything by then is a failure, never a figure."""

Publish = Callable[[Event], object]


class Counter:
    """A trivial subscriber: counts batch events and notes when it has seen ``target``
    of them (or a ``TrainEnd`` marker, for runs that may drop)."""

    def __init__(self) -> None:
        self.count = 0
        self.target = -1
        self.reached_at = 0.0
        self.reached = threading.Event()

    def arm(self, target: int) -> None:
        self.reached.clear()
        self.target = target

    async def __call__(self, event: Event) -> None:
        if type(event) is TrainBatchEnd:
            self.count += 1
            if self.count != self.target:
                return
        self.reached_at = time.perf_counter()
        self.reached.set()


def produce_fresh(publish: Publish, first: int, n: int) -> float:
    """Build and publish ``n`` events as fast as possible; seconds spent."""
    make = TrainBatchEnd
    t0 = time.perf_counter()
    for batch in range(first, first + n):
        publish(make(run="r", batch=batch, logs={"loss": 0.5}))
    return time.perf_counter() - t0


def produce_prebuilt(publish: Publish, prebuilt: list[TrainBatchEnd]) -> float:
    t0 = time.perf_counter()
    for event in prebuilt:
        publish(event)
    return time.perf_counter() - t0


def produce_paced(publish: Publish, first: int, n: int, rate: float) -> float:
    """Publish ``n`` fresh events at ``rate`` per second: each burst publishes what is
    due by now, then the producer sleeps until the next one is due. Returns the
    seconds spent inside bursts (the producer's cost, not its sleep)."""
    make = TrainBatchEnd
    perf = time.perf_counter
    start = perf()
    sent, busy = 0, 0.0
    while sent < n:
        now = perf()
        due = min(n, int((now - start) * rate) + 1)
        if due > sent:
            for batch in range(first + sent, first + due):
                publish(make(run="r", batch=batch, logs={"loss": 0.5}))
            busy += perf() - now
            sent = due
        else:
            time.sleep(max(0.0, start + sent / rate - now))
    return busy


def run_once(
    *,
    backend: str = "asyncio",
    subscribers: int = 1,
    events: int = 100_000,
    producer: str = "fresh",
    lossless: bool = True,
    rate: float | None = None,
    warmup: int = 1000,
) -> dict[str, Any]:
    """One bus, ``warmup`` events, then one timed run of ``events``; its figures."""
    options: dict[str, Any] = {"backend": backend, "close_timeout": 5.0}
    if lossless:
        options["max_backlog"] = events + warmup + 1024
    counters = [Counter() for _ in range(subscribers)]
    with running_bus(**options) as run:
        bus = run.bus
        for k, counter in enumerate(counters):
            bus.subscribe(counter, kinds=[TrainBatchEnd, TrainEnd], lossless=lossless, name=f"counter-{k}")
        publish = bus.publish_nowait
        # Warm-up: subscriptions taken in, the loop awake, the code paths hot.
        for counter in counters:
            counter.arm(warmup)
        produce_fresh(publish, 0, warmup)
        _wait(counters, bus)
        prebuilt = (
            [TrainBatchEnd(run="r", batch=b, logs={"loss": 0.5}) for b in range(warmup, warmup + events)]
            if producer == "prebuilt"
            else []
        )
        for counter in counters:
            counter.arm(warmup + events if lossless else -1)
        run.check_loop_running()
        before = bus.statistics()
        loop0, cpu0, t0 = run.loop_cpu_s(), time.thread_time(), time.perf_counter()
        if prebuilt:
            busy = produce_prebuilt(publish, prebuilt)
        elif rate:
            busy = produce_paced(publish, warmup, events, rate)
        else:
            busy = produce_fresh(publish, warmup, events)
        published_s, producer_cpu_s = time.perf_counter() - t0, time.thread_time() - cpu0
        if not lossless:
            publish(TrainEnd(run="r"))
        _wait(counters, bus)
        loop_cpu_s = run.loop_cpu_s() - loop0
        wall_s = max(c.reached_at for c in counters) - t0
        after = bus.statistics()
    received = [c.count - warmup for c in counters]
    if lossless and min(received) != events:
        raise RuntimeError(f"a lossless subscriber received {min(received)} of {events} events")
    dropped = sum(s.dropped for s in after.subscribers) - sum(s.dropped for s in before.subscribers)
    return {
        "wall_s": wall_s,
        "events_per_s": sum(received) / subscribers / wall_s,
        "published_s": published_s,
        "publish_events_per_s": events / published_s,
        "producer_us_per_publish": busy / events * 1e6,
        "producer_cpu_s": producer_cpu_s,
        "loop_cpu_s": loop_cpu_s,
        "loop_cpu_us_per_event": loop_cpu_s / events * 1e6,
        "received_min": min(received),
        "dropped": dropped,
        "dropped_at_ingress": after.dropped_at_ingress - before.dropped_at_ingress,
        "bus_warned_on_close": run.warned,
    }


def _wait(counters: list[Counter], bus: object) -> None:
    deadline = time.monotonic() + WAIT_S
    for counter in counters:
        if not counter.reached.wait(max(0.0, deadline - time.monotonic())):
            raise RuntimeError(
                f"subscribers did not receive every event within {WAIT_S:g} s "
                f"(counted {[c.count for c in counters]}, target {counter.target}): {bus!r}"
            )


def events_for(subscribers: int, events: int, deliveries: int) -> int:
    """Events per run: ``events``, fewer where that many subscribers would take too long."""
    return max(1000, min(events, deliveries // subscribers))


def measure(
    *,
    repeats: int = 5,
    events: int = 100_000,
    deliveries: int = 1_000_000,
    subscribers: tuple[int, ...] = (1, 8, 64),
    backends: tuple[str, ...] = BACKENDS,
    producers: tuple[str, ...] = tuple(PRODUCERS),
    default_settings: tuple[int, ...] = (1, 8),
    warmup: int = 1000,
) -> dict[str, Any]:
    """Every (backend, subscribers, producer) run ``repeats`` times; the backends of
    one (subscribers, producer) back to back, in alternating order."""
    skipped = {b: f"{b} is not installed: skipped" for b in backends if importlib.util.find_spec(b) is None}
    backends = tuple(b for b in backends if b not in skipped)
    cells: dict[str, list[dict[str, Any]]] = {}
    pairs: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []
    for n in subscribers:
        for producer in producers:
            pairs.append(("lossless", (n, producer), {"lossless": True, "producer": producer}))
    for n in default_settings:
        pairs.append(("defaults", (n, "fresh"), {"lossless": False, "producer": "fresh"}))
    for r in range(repeats):
        order = backends if r % 2 == 0 else tuple(reversed(backends))
        for setting, (n, producer), options in pairs:
            for backend in order:
                figures = run_once(
                    backend=backend,
                    subscribers=n,
                    events=events_for(n, events, deliveries),
                    warmup=warmup,
                    **options,
                )
                cells.setdefault(_key(setting, backend, n, producer), []).append(figures)
    runs = {key: _summarize(key, figures) for key, figures in cells.items()}
    return {
        "config": {
            "repeats": repeats,
            "events": events,
            "deliveries_cap": deliveries,
            "warmup_events": warmup,
            "event": "TrainBatchEnd(run='r', batch=i, logs={'loss': 0.5})",
            "budgets_events_per_s": {str(n): b for n, b in BUDGETS.items()},
            "budget_backend": "asyncio",
        },
        "runs": runs,
        "skipped_backends": skipped,
        "ratios": _ratios(cells, backends, subscribers, producers),
        "budgets": {
            str(n): {
                "budget_events_per_s": budget,
                "events_per_s": runs[key]["events_per_s"],
                "met": runs[key]["events_per_s"]["median"] >= budget,
            }
            for n, budget in BUDGETS.items()
            if (key := _key("lossless", "asyncio", n, "fresh")) in runs
        },
    }


def _key(setting: str, backend: str, subscribers: int, producer: str) -> str:
    return f"{setting}/{backend}/{subscribers}/{producer}"


def _summarize(key: str, runs: list[dict[str, Any]]) -> dict[str, Any]:
    setting, backend, n, producer = key.split("/")
    first = runs[0]
    return {
        "setting": setting,
        "backend": backend,
        "subscribers": int(n),
        "producer": producer,
        "events": round(first["publish_events_per_s"] * first["published_s"]),
        "repeats": len(runs),
        "events_per_s": spread([r["events_per_s"] for r in runs]),
        "publish_events_per_s": spread([r["publish_events_per_s"] for r in runs]),
        "producer_us_per_publish": spread([r["producer_us_per_publish"] for r in runs]),
        "loop_cpu_us_per_event": spread([r["loop_cpu_us_per_event"] for r in runs]),
        "wall_s": spread([r["wall_s"] for r in runs]),
        "dropped": [r["dropped"] for r in runs],
        "dropped_at_ingress": [r["dropped_at_ingress"] for r in runs],
        "received_min": [r["received_min"] for r in runs],
        "raw": runs,
    }


def _ratios(
    cells: dict[str, list[dict[str, Any]]],
    backends: tuple[str, ...],
    subscribers: tuple[int, ...],
    producers: tuple[str, ...],
) -> dict[str, dict[str, dict[str, Any]]]:
    """Pair by pair (same repeat): trio / asyncio, and prebuilt / fresh, of events/s."""

    def ratio(a: str, b: str) -> dict[str, Any] | None:
        if a not in cells or b not in cells:
            return None
        values = [x["events_per_s"] / y["events_per_s"] for x, y in zip(cells[a], cells[b], strict=True)]
        return {**spread(values), "pairs": len(values)}

    out: dict[str, dict[str, dict[str, Any]]] = {"trio_vs_asyncio": {}, "prebuilt_vs_fresh": {}}
    if "trio" in backends and "asyncio" in backends:
        for n in subscribers:
            for producer in producers:
                r = ratio(_key("lossless", "trio", n, producer), _key("lossless", "asyncio", n, producer))
                if r:
                    out["trio_vs_asyncio"][f"{n}/{producer}"] = r
    for backend in backends:
        for n in subscribers:
            r = ratio(_key("lossless", backend, n, "prebuilt"), _key("lossless", backend, n, "fresh"))
            if r:
                out["prebuilt_vs_fresh"][f"{backend}/{n}"] = r
    return out
