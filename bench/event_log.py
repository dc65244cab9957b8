"""Event log append and read rates (budgets: >= 1,000,000 events/s each).

Appending is what the log costs the bus's loop for every event: encode it
(msgpack), frame it (length and CRC-32) into one buffer, and write that
buffer at each flush. Timed here: ``EventLog.append`` of ``events`` batch
events in lists of ``batch`` (as the bus hands them to a batched subscriber)
and a ``flush`` every ``flush_every`` events and at the end, into a file in a
temporary directory. ``fsync`` is off, as by default.

Beside it, end to end through the bus: one producer thread publishes fresh
events to a bus whose only subscriber is an ``EventLog`` (lossless, batched),
timed until the log has taken in the last one; closing the bus flushes it.
Every log is read back and counted, so a figure always stands for a whole,
readable log. Without ``eventbus.log`` the measurement is skipped and says so.
"""

from __future__ import annotations

import importlib.util
import tempfile
import time
from pathlib import Path
from typing import Any

from eventbus.events import TrainBatchEnd

from .common import rotated, running_bus, spread
from .throughput import produce_fresh

BUDGET_EVENTS_PER_S = 1_000_000.0
MISSING = "not measured: no event log yet"
WAIT_S = 120.0


def available() -> bool:
    return importlib.util.find_spec("eventbus.log") is not None


def _events(n: int) -> list[TrainBatchEnd]:
    return [TrainBatchEnd(run="r", seq=i, time=1.0e9 + i, batch=i, logs={"loss": 0.5}) for i in range(n)]


def append_once(path: Path, events: list[TrainBatchEnd], batch: int, flush_every: int) -> dict[str, Any]:
    """Append ``events`` in lists of ``batch``, flushing every ``flush_every``; read back."""
    from eventbus.log import EventLog

    log = EventLog(path)
    batches = [events[i : i + batch] for i in range(0, len(events), batch)]
    per_flush = max(1, flush_every // batch)
    t0 = time.perf_counter()
    for k, chunk in enumerate(batches, 1):
        log.append(chunk)
        if k % per_flush == 0:
            log.flush()
    log.close()
    seconds = time.perf_counter() - t0
    size = path.stat().st_size
    t0 = time.perf_counter()
    read = sum(1 for _ in EventLog.read(path))
    read_s = time.perf_counter() - t0
    if read != len(events):
        raise RuntimeError(f"{path}: read back {read} of {len(events)} events")
    path.unlink()
    return {
        "seconds": seconds,
        "events_per_s": len(events) / seconds,
        "read_events_per_s": read / read_s,
        "bytes_per_event": size / len(events),
    }


def bus_once(path: Path, events: int) -> dict[str, Any]:
    """One producer -> bus -> ``EventLog``; seconds until the log has taken in every event."""
    from eventbus.log import EventLog

    log = EventLog(path)
    with running_bus(max_backlog=events + 1024, close_timeout=30.0) as run:
        run.bus.subscribe(log)
        publish = run.bus.publish_nowait
        produce_fresh(publish, 0, 1000)  # warm-up: the subscription taken in, the loop awake
        deadline = time.monotonic() + WAIT_S
        while log.written < 1000 and time.monotonic() < deadline:
            time.sleep(0.001)
        first = log.written
        t0 = time.perf_counter()
        produce_fresh(publish, 1000, events)
        while log.written < first + events and time.monotonic() < deadline:
            time.sleep(0.0005)
        seconds = time.perf_counter() - t0
        taken = log.written - first
    read = sum(1 for _ in EventLog.read(path))
    path.unlink()
    if taken < events or read < first + events:
        raise RuntimeError(f"the log took in {taken} of {events} events; {read} read back")
    return {"seconds": seconds, "events_per_s": events / seconds, "close_s": run.close_s}


def measure(
    *, repeats: int = 5, events: int = 200_000, batch: int = 512, flush_every: int = 65536, bus_events: int = 100_000
) -> dict[str, Any]:
    """Direct appends and runs through the bus, alternating, ``repeats`` times each."""
    config = {
        "repeats": repeats,
        "events": events,
        "batch": batch,
        "flush_every": flush_every,
        "bus_events": bus_events,
        "budget_events_per_s": BUDGET_EVENTS_PER_S,
    }
    if not available():
        return {"config": config, "skipped": MISSING}
    prebuilt = _events(events)
    runs: dict[str, list[dict[str, Any]]] = {"append": [], "bus": []}
    with tempfile.TemporaryDirectory(prefix="bench-log-") as tmp:
        append_once(Path(tmp) / "warmup.evlog", prebuilt[:batch], batch, flush_every)
        for r in range(repeats):
            for kind in rotated(("append", "bus"), r):
                path = Path(tmp) / f"{kind}-{r}.evlog"
                if kind == "append":
                    runs[kind].append(append_once(path, prebuilt, batch, flush_every))
                else:
                    runs[kind].append(bus_once(path, bus_events))
    append_rate = spread([x["events_per_s"] for x in runs["append"]])
    return {
        "config": config,
        "append_events_per_s": append_rate,
        "append_mb_per_s": spread([x["events_per_s"] * x["bytes_per_event"] / 1e6 for x in runs["append"]]),
        "bytes_per_event": runs["append"][0]["bytes_per_event"],
        "read_events_per_s": spread([x["read_events_per_s"] for x in runs["append"]]),
        "read_within_budget": spread([x["read_events_per_s"] for x in runs["append"]])["median"] >= BUDGET_EVENTS_PER_S,
        "bus_events_per_s": spread([x["events_per_s"] for x in runs["bus"]]),
        "bus_close_s": spread([x["close_s"] for x in runs["bus"]]),
        "runs": runs,
        "within_budget": append_rate["median"] >= BUDGET_EVENTS_PER_S,
    }
