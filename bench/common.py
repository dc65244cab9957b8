"""Shared pieces: a bus whose close is accounted for, its loop thread, statistics.

A slow or failing subscriber makes the bus warn (``EventBusWarning``) when it
closes. The benchmarks provoke that on purpose, so they catch that warning
and keep the bus's counters (dropped, failed, undelivered) as figures instead.
"""

from __future__ import annotations

import contextlib
import gc
import os
import statistics
import threading
import time
import warnings
from collections.abc import Iterator, Sequence
from typing import Any

from eventbus import EventBus, EventBusWarning


class BusRun:
    """A started bus, its loop thread, and, once closed, what the close reported."""

    def __init__(self, bus: EventBus, thread: threading.Thread | None) -> None:
        self.bus = bus
        self.thread = thread
        self.close_s = 0.0
        self.warned = False
        self.counts: dict[str, int] = {}

    def check_loop_running(self) -> None:
        """Fail loudly if events published now would not be handled by a live loop."""
        if not self.bus.running or self.thread is None or not self.thread.is_alive():
            raise RuntimeError(f"the bus loop is not running ({self.bus!r})")

    def loop_cpu_s(self) -> float:
        """CPU seconds the loop thread has used so far (0.0 where not measurable)."""
        if self.thread is None or self.thread.ident is None:
            return 0.0
        try:
            return time.clock_gettime(time.pthread_getcpuclockid(self.thread.ident))
        except (AttributeError, OSError):  # not Linux, or the thread is gone
            return 0.0


@contextlib.contextmanager
def running_bus(**options: Any) -> Iterator[BusRun]:
    """``with EventBus()`` for benchmarks: finds the loop thread, accounts for the close."""
    before = set(threading.enumerate())
    bus = EventBus(**options)
    bus.start()
    started = [t for t in threading.enumerate() if t not in before and t.name == "eventbus"]
    run = BusRun(bus, started[0] if started else None)
    try:
        yield run
    finally:
        t0 = time.perf_counter()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            bus.close()
        run.close_s = time.perf_counter() - t0
        for w in caught:
            if issubclass(w.category, EventBusWarning):
                run.warned = True
            else:  # not ours to swallow
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        run.counts = bus_counts(bus)


def bus_counts(bus: EventBus) -> dict[str, int]:
    """The bus's counters, summed over its subscribers."""
    stats = bus.statistics()
    totals = {"published": stats.published, "delivered": 0, "dropped": 0, "failed": 0, "undelivered": 0}
    for sub in stats.subscribers:
        totals["delivered"] += sub.delivered
        totals["dropped"] += sub.dropped
        totals["failed"] += sub.failed
        totals["undelivered"] += sub.undelivered
    return totals


def add_counts(into: dict[str, int], more: dict[str, int]) -> None:
    for key, value in more.items():
        into[key] = into.get(key, 0) + value


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100), linear between closest ranks."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("no values")
    pos = (len(ordered) - 1) * q / 100.0
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def spread(values: Sequence[float]) -> dict[str, float]:
    """Median, min and max: what every figure is reported as."""
    return {"median": median(values), "min": min(values), "max": max(values)}


def rotated(items: Sequence[Any], shift: int) -> list[Any]:
    """``items`` rotated by ``shift``: no variant is always the first of a repeat."""
    shift %= max(len(items), 1)
    return [*items[shift:], *items[:shift]]


def rss_bytes() -> int:
    """Resident memory of this process now (0 where ``/proc`` is missing)."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


class GcWatch:
    """Garbage-collector pauses while it is active: a long full collection of a
    TensorFlow-sized heap shows up as one slow timing sample, and this says so."""

    def __init__(self) -> None:
        self.pauses: list[tuple[int, float]] = []
        self._t0 = 0.0

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._t0 = time.perf_counter()
        else:
            self.pauses.append((info["generation"], time.perf_counter() - self._t0))

    def __enter__(self) -> GcWatch:
        gc.callbacks.append(self._callback)
        return self

    def __exit__(self, *exc_info: object) -> None:
        gc.callbacks.remove(self._callback)

    def summary(self) -> dict[str, float]:
        full = [s for gen, s in self.pauses if gen == 2]
        return {
            "collections": len(self.pauses),
            "full_collections": len(full),
            "full_pause_ms_max": max(full, default=0.0) * 1000,
            "pause_ms_total": sum(s for _, s in self.pauses) * 1000,
        }
