"""Per-event cost as the number of subscribers doubles, and as the event rate doubles.

Subscribers 1, 2, 4, ..., 64: the throughput runs (one producer thread as
fast as it can, lossless trivial subscribers, asyncio): per event, the
end-to-end wall time, the CPU time of the bus's loop thread and the
producer's time per publish. The loop's cost should grow by about one
delivery per added subscriber; the producer's should not grow at all.

Rate 1k, 2k, 4k, ... events/s: a paced producer (each burst publishes what
is due, then it sleeps until the next event is due) and one subscriber.
While events flow the loop polls every ``latency`` seconds instead of being
woken per event, so its CPU per event should fall as the rate rises, until
the producer cannot keep up (the achieved rate is reported beside the
target). The producer's cost per publish is the time spent inside bursts.

Points are run in rotated order from repeat to repeat; ``bench.plots``
draws both panels into ``scaling.png``.
"""

from __future__ import annotations

from typing import Any

from .common import rotated, spread
from .throughput import events_for, run_once


def measure(
    *,
    repeats: int = 3,
    max_subscribers: int = 64,
    events: int = 50_000,
    deliveries: int = 400_000,
    rates: int = 10,
    first_rate: int = 1000,
    duration_s: float = 0.5,
    backend: str = "asyncio",
) -> dict[str, Any]:
    """Both sweeps, ``repeats`` times each; medians and min-max per point."""
    counts = [2**k for k in range(max_subscribers.bit_length()) if 2**k <= max_subscribers]
    targets = [first_rate * 2**k for k in range(rates)]
    by_count: dict[int, list[dict[str, Any]]] = {n: [] for n in counts}
    by_rate: dict[int, list[dict[str, Any]]] = {r: [] for r in targets}
    for r in range(repeats):
        for n in rotated(counts, r):
            by_count[n].append(run_once(backend=backend, subscribers=n, events=events_for(n, events, deliveries)))
        for rate in rotated(targets, r):
            n_events = max(100, int(rate * duration_s))
            figures = run_once(backend=backend, subscribers=1, events=n_events, rate=rate)
            figures["achieved_rate"] = n_events / figures["published_s"]
            by_rate[rate].append(figures)
    return {
        "config": {
            "repeats": repeats,
            "backend": backend,
            "events": events,
            "deliveries_cap": deliveries,
            "duration_s": duration_s,
            "rate_subscribers": 1,
        },
        "subscribers": [
            {
                "subscribers": n,
                "events": events_for(n, events, deliveries),
                "wall_us_per_event": spread([f["wall_s"] / f["received_min"] * 1e6 for f in runs]),
                "loop_cpu_us_per_event": spread([f["loop_cpu_us_per_event"] for f in runs]),
                "loop_cpu_us_per_delivery": spread([f["loop_cpu_us_per_event"] / n for f in runs]),
                "producer_us_per_publish": spread([f["producer_us_per_publish"] for f in runs]),
                "events_per_s": spread([f["events_per_s"] for f in runs]),
            }
            for n, runs in by_count.items()
        ],
        "rates": [
            {
                "target_rate": rate,
                "events": runs[0]["received_min"],
                "achieved_rate": spread([f["achieved_rate"] for f in runs]),
                "loop_cpu_us_per_event": spread([f["loop_cpu_us_per_event"] for f in runs]),
                "producer_us_per_publish": spread([f["producer_us_per_publish"] for f in runs]),
                "loop_cpu_share": spread([f["loop_cpu_s"] / f["wall_s"] for f in runs]),
            }
            for rate, runs in by_rate.items()
        ],
    }
