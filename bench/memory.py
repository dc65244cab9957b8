"""Resident memory while one subscriber is stalled (budget: < 50 MB growth over 1,000,000 events).

A subscriber that stops answering must not make the process grow without
bound. Here one subscriber awaits an ``anyio.Event`` on its first event; the
event is set only after every batch event has been published (by a second
subscriber, on a ``TrainEnd`` marker). One thread publishes fresh
``TrainBatchEnd`` events as fast as it can, on a bus with default settings:
the stalled subscriber's buffer keeps the newest ``buffer_size`` batch events
and drops the oldest (counted), and the loop sheds batch events at ingress
once ``max_backlog`` wait to be fanned out (counted too).

Resident memory is read from ``/proc/self/statm`` before the first publish
(after a garbage collection), every ``sample_every`` publishes, and once the
loop has taken everything in; growth is the peak less the first reading (the
process's peak, ``ru_maxrss``, is reported as a cross-check). Memory freed
earlier and kept by the allocator for reuse would hide growth, so each run
has a fresh interpreter of its own (``python -m bench.memory``).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import anyio

from eventbus.events import Event, TrainBatchEnd, TrainEnd

from .common import rss_bytes, running_bus

BUDGET_MB = 50.0
MB = 1e6
SETTLE_S = 60.0


class Stalled:
    """Awaits an ``anyio.Event`` on its first event; set by :class:`Release` at the end."""

    def __init__(self) -> None:
        self.gate: anyio.Event | None = None
        self.stalled = threading.Event()
        self.received = 0

    async def __call__(self, event: Event) -> None:
        self.received += 1
        if self.gate is None:
            self.gate = anyio.Event()  # made here: an anyio.Event belongs to the running loop
        if not self.gate.is_set():
            self.stalled.set()
            await self.gate.wait()


class Release:
    """On the ``TrainEnd`` marker, lets the stalled subscriber go on."""

    def __init__(self, stalled: Stalled) -> None:
        self.target = stalled

    async def __call__(self, event: Event) -> None:
        if self.target.gate is None:
            self.target.gate = anyio.Event()
        self.target.gate.set()


def run_once(*, events: int = 1_000_000, sample_every: int = 10_000) -> dict[str, Any]:
    """One bus, one stalled subscriber, ``events`` batch events; memory and drops."""
    stalled = Stalled()
    with running_bus(close_timeout=10.0) as run:
        bus = run.bus
        bus.subscribe(stalled, kinds=[TrainBatchEnd], name="stalled")
        bus.subscribe(Release(stalled), kinds=[TrainEnd], name="release")
        publish = bus.publish_nowait
        publish(TrainBatchEnd(run="r", batch=-1, logs={"loss": 0.5}))
        if not stalled.stalled.wait(10.0):
            raise RuntimeError(f"the subscriber never received its first event: {bus!r}")
        gc.collect()
        rss0 = peak = rss_bytes()
        samples = [0.0]
        make = TrainBatchEnd
        t0 = time.perf_counter()
        for start in range(0, events, sample_every):
            for batch in range(start, min(events, start + sample_every)):
                publish(make(run="r", batch=batch, logs={"loss": 0.5}))
            rss = rss_bytes()
            peak = max(peak, rss)
            samples.append((rss - rss0) / MB)
        publish_s = time.perf_counter() - t0
        settled = _settle(bus, events)
        rss_settled = rss_bytes()
        peak = max(peak, rss_settled)
        stats = bus.statistics()
        sub = stats["stalled"]
        publish(TrainEnd(run="r"))
    return {
        "events": events,
        "publish_s": publish_s,
        "rss_before_mb": rss0 / MB,
        "peak_growth_mb": (peak - rss0) / MB,
        "maxrss_growth_mb": max(0.0, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - rss0) / MB,
        "settled_growth_mb": (rss_settled - rss0) / MB,
        "growth_samples_mb": samples,
        "settled": settled,
        "dropped_by_subscriber": sub.dropped,
        "dropped_at_ingress": stats.dropped_at_ingress,
        "buffered_while_stalled": sub.buffered,
        "received_after_release": stalled.received,
        "close_s": run.close_s,
    }


def _settle(bus: Any, events: int) -> bool:
    """Wait until the loop has taken in every event (fanned out or shed)."""
    deadline = time.monotonic() + SETTLE_S
    while time.monotonic() < deadline:
        stats = bus.statistics()
        sub = stats["stalled"]
        if sub.dropped + sub.buffered + stats.dropped_at_ingress >= events:
            return True
        time.sleep(0.01)
    return False


def run_isolated(*, events: int, sample_every: int) -> dict[str, Any]:
    """:func:`run_once` in a fresh interpreter: a heap nothing has used before."""
    root = str(Path(__file__).resolve().parent.parent)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
    command = [sys.executable, "-m", "bench.memory", "--events", str(events), "--sample-every", str(sample_every)]
    done = subprocess.run(command, env=env, cwd=root, capture_output=True, text=True, timeout=SETTLE_S + 120)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def measure(*, events: int = 1_000_000, repeats: int = 3, sample_every: int = 10_000) -> dict[str, Any]:
    """``repeats`` runs, each in its own interpreter; the budget is judged on the worst."""
    runs = [run_isolated(events=events, sample_every=sample_every) for _ in range(repeats)]
    worst = max(r["peak_growth_mb"] for r in runs)
    return {
        "config": {
            "events": events,
            "repeats": repeats,
            "sample_every": sample_every,
            "budget_mb": BUDGET_MB,
            "budget_events": 1_000_000,
            "settings": "EventBus() defaults: buffer_size=1024, max_backlog=65536",
        },
        "runs": runs,
        "peak_growth_mb_max": worst,
        "within_budget": worst < BUDGET_MB,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.memory", description=run_once.__doc__)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--sample-every", type=int, default=10_000)
    args = parser.parse_args(argv)
    print(json.dumps(run_once(events=args.events, sample_every=args.sample_every)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
