"""Per-hook cost of the bridge on the training thread (budget: <= 2 us median).

``KerasBridge.on_train_batch_end`` is called directly in a tight loop, the
bridge set up as during a ``fit``, beside a no-op Keras callback (the floor)
and the bare hand-off (build the event, ``publish_nowait`` it). Calls are
timed in chunks (one ``perf_counter_ns`` pair per chunk, so the clock costs
nothing per call); the variants are interleaved, repeat by repeat, so that
machine noise hits them all alike.

Each variant runs in its own bus, closed before the next one starts. The
bus's loop thread is checked to be alive and to use CPU while the hook is
timed: it competes for the GIL, as in a real ``fit``. A tight loop publishes
far faster than a ``fit`` does (one event per ~1 us instead of per ~1 ms), so
subscribers fall behind and drop batch events; that is by design, and the
drops, deliveries and the backlog not yet fanned out are reported beside the
timings, as are garbage-collector pauses (one full collection of the
TensorFlow heap is one very slow sample).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from eventbus.events import TrainBatchEnd

from .common import BusRun, GcWatch, add_counts, median, percentile, running_bus
from .models import tiny_regressor

LOGS = {"loss": 0.5, "mean_absolute_error": 0.3}
"""Batch logs as Keras hands them to callbacks: already Python floats."""

BUDGET_US = 2.0
LOOP_CHECK_S = 0.05
"""While events flow the loop polls every few ms: over this long it must have run."""

VARIANTS: dict[str, str] = {
    "keras_noop": "no-op keras.callbacks.Callback",
    "handoff": "hand-off alone (build event + publish_nowait)",
    "bridge_0": "KerasBridge, 0 subscribers",
    "bridge_1": "KerasBridge, 1 subscriber",
    "bridge_8": "KerasBridge, 8 subscribers",
}

Hook = Callable[..., None]


async def trivial(event: object) -> None:
    """A subscriber that does nothing: what remains is the bus's own work."""
    return None


def _time_chunks(hook: Hook, samples: int, chunk: int) -> list[float]:
    """Nanoseconds per call, one figure per chunk of ``chunk`` calls."""
    perf = time.perf_counter_ns
    logs = LOGS
    calls = range(chunk)
    out = []
    for _ in range(samples):
        t0 = perf()
        for batch in calls:
            hook(batch, logs=logs)
        out.append((perf() - t0) / chunk)
    return out


def _timed(hook: Hook, samples: int, chunk: int, warmup: int) -> tuple[list[float], dict[str, Any]]:
    _time_chunks(hook, warmup, chunk)
    with GcWatch() as watch:
        timings = _time_chunks(hook, samples, chunk)
    return timings, {"gc": watch.summary()}


def _measure_noop(model: Any, samples: int, chunk: int, warmup: int) -> tuple[list[float], dict[str, Any]]:
    import keras

    callback = keras.callbacks.Callback()
    callback.set_model(model)
    return _timed(callback.on_train_batch_end, samples, chunk, warmup)


def _measure_on_bus(
    variant: str, model: Any, samples: int, chunk: int, warmup: int
) -> tuple[list[float], dict[str, Any]]:
    from eventbus.adapters.keras import KerasBridge

    subscribers = int(variant.split("_")[1]) if variant.startswith("bridge_") else 0
    with running_bus() as run:
        for k in range(subscribers):
            run.bus.subscribe(trivial, name=f"trivial-{k}")
        bridge = None
        if variant == "handoff":
            publish = run.bus.publish_nowait

            def hook(batch: int, logs: dict[str, float]) -> None:
                publish(TrainBatchEnd(run="fit-bench", batch=batch, logs=dict(logs)))

        else:
            bridge = KerasBridge(run.bus)
            bridge.set_model(model)
            bridge.on_train_begin()
            hook = bridge.on_train_batch_end
        # The first warm-up event wakes the parked loop; from then on it polls.
        _time_chunks(hook, warmup, chunk)
        run.check_loop_running()
        flow0, cpu0, wall0 = _flow(run), run.loop_cpu_s(), time.perf_counter()
        timings, extra = _timed(hook, samples, chunk, 0)
        cpu1, wall1 = run.loop_cpu_s(), time.perf_counter()
        run.check_loop_running()
        if cpu0 and wall1 - wall0 > LOOP_CHECK_S and not cpu1 > cpu0:
            raise RuntimeError(f"{variant}: the bus loop used no CPU while the hook was timed")
        extra["loop_cpu_share"] = (cpu1 - cpu0) / (wall1 - wall0)
        flow1 = _flow(run)
        extra["delivered"], extra["dropped"] = flow1[0] - flow0[0], flow1[1] - flow0[1]
        extra["backlog"] = _backlog(run) if subscribers else None
        if bridge is not None:
            bridge.on_train_end()
    extra["run"] = run
    return timings, extra


def _flow(run: BusRun) -> tuple[int, int]:
    """Events delivered and dropped so far, summed over subscribers."""
    subscribers = run.bus.statistics().subscribers
    return sum(s.delivered for s in subscribers), sum(s.dropped for s in subscribers)


def _backlog(run: BusRun) -> int:
    """Events published but not yet fanned out to the (all-kinds) first subscriber."""
    stats = run.bus.statistics()
    first = stats.subscribers[0]
    return stats.published - (first.delivered + first.dropped + first.buffered)


def measure(
    *,
    repeats: int = 7,
    samples: int = 300,
    chunk: int = 1000,
    warmup: int = 5,
    variants: tuple[str, ...] = tuple(VARIANTS),
) -> dict[str, Any]:
    """Run every variant ``repeats`` times, interleaved; return figures in microseconds."""
    model = tiny_regressor()
    acc: dict[str, dict[str, Any]] = {v: {"ns": [], "medians": [], "extras": []} for v in variants}
    for r in range(repeats):
        shift = r % len(variants)
        for variant in variants[shift:] + variants[:shift]:  # rotate: no variant always first
            if variant == "keras_noop":
                timings, extra = _measure_noop(model, samples, chunk, warmup)
            else:
                timings, extra = _measure_on_bus(variant, model, samples, chunk, warmup)
            acc[variant]["ns"].extend(timings)
            acc[variant]["medians"].append(median(timings))
            acc[variant]["extras"].append(extra)
    return {
        "config": {
            "repeats": repeats,
            "samples_per_repeat": samples,
            "calls_per_sample": chunk,
            "warmup_samples": warmup,
            "logs": LOGS,
            "budget_us": BUDGET_US,
        },
        "variants": {v: _summarize(v, a["ns"], a["medians"], a["extras"]) for v, a in acc.items()},
    }


def _summarize(variant: str, ns: list[float], medians: list[float], extras: list[dict[str, Any]]) -> dict[str, Any]:
    runs: list[BusRun] = [e["run"] for e in extras if "run" in e]
    counts: dict[str, int] = {}
    for run in runs:
        add_counts(counts, run.counts)
    backlogs = [e.get("backlog") for e in extras]
    gcs = [e["gc"] for e in extras]
    gc_totals = {key: sum(g[key] for g in gcs) for key in ("collections", "full_collections", "pause_ms_total")}
    gc_totals["full_pause_ms_max"] = max(g["full_pause_ms_max"] for g in gcs)
    med_us = median(ns) / 1000
    return {
        "label": VARIANTS[variant],
        "median_us": med_us,
        "p99_us": percentile(ns, 99) / 1000,
        "mean_us": sum(ns) / len(ns) / 1000,
        "repeat_median_min_us": min(medians) / 1000,
        "repeat_median_max_us": max(medians) / 1000,
        "within_budget": med_us <= BUDGET_US if variant.startswith("bridge_") else None,
        "gc": gc_totals,
        "loop_cpu_share": median([e["loop_cpu_share"] for e in extras]) if runs else None,
        "delivered_while_timed": [e["delivered"] for e in extras] if runs else None,
        "dropped_while_timed": [e["dropped"] for e in extras] if runs else None,
        "fanout_backlog_at_end": backlogs if runs and None not in backlogs else None,
        "bus": counts or None,
        "bus_warned_on_close": any(run.warned for run in runs),
    }
