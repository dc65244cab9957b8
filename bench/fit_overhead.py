"""``fit`` wall time with the bus, as ratios to ``fit`` with no callbacks at all.

Budget: a subscriber that needs 10 ms per event costs ``fit`` <= 1.02x, where
a synchronous Keras callback doing the same costs ~15x. Every variant's fit is
paired with a baseline fit in the same process, the order within a pair
alternating from repeat to repeat, and the ratio is taken pair by pair: slow
drift of a shared machine cancels out within a pair. Only ``model.fit`` is
timed; starting and closing the bus are not (closing is reported apart).

The data are scikit-learn's bundled digits, the model a small MLP, so one
step is short and the bus's share of it as large as it gets.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from typing import Any

import anyio

from .common import BusRun, add_counts, median, running_bus
from .models import digits, mlp

BUDGET_RATIO = 1.02
CLOSE_TIMEOUT_S = 1.0
"""Closing waits for a slow subscriber's backlog; bounded here to keep runs short."""

VARIANTS: dict[str, str] = {
    "bridge_0": "KerasBridge, no subscribers",
    "bridge_async_10ms": "KerasBridge + subscriber awaiting anyio.sleep(0.01) per event",
    "sync_sleep_10ms": "plain Keras callback, time.sleep(0.01) per batch",
    "bridge_failing": "KerasBridge + subscriber raising on every event",
}


async def sleepy(event: object) -> None:
    """Needs 10 ms per event, but awaits them: the training thread never waits."""
    await anyio.sleep(0.01)


async def failing(event: object) -> None:
    raise RuntimeError("this subscriber fails on every event")


class _Counting(logging.Handler):
    """Formats the bus's log records, as a console handler would, and counts them."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.format(record)
        self.count += 1


def _sleep_callback() -> Any:
    import keras

    class SleepPerBatch(keras.callbacks.Callback):  # type: ignore[misc]
        def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
            time.sleep(0.01)

    return SleepPerBatch()


@contextlib.contextmanager
def _callbacks(variant: str | None, outcome: dict[str, Any]) -> Iterator[list[Any] | None]:
    """The ``callbacks=`` of one fit; bus variants run in their own bus."""
    if variant is None:
        yield None
        return
    if variant == "sync_sleep_10ms":
        yield [_sleep_callback()]
        return
    from eventbus.adapters.keras import KerasBridge

    logger = logging.getLogger("eventbus")
    counter = _Counting()
    logger.addHandler(counter)
    try:
        with running_bus(close_timeout=CLOSE_TIMEOUT_S) as run:
            outcome["run"] = run
            if variant == "bridge_async_10ms":
                run.bus.subscribe(sleepy)
            elif variant == "bridge_failing":
                run.bus.subscribe(failing)
            yield [KerasBridge(run.bus)]
    finally:
        logger.removeHandler(counter)
    outcome["log_records"] = counter.count


def _fit(model: Any, x: Any, y: Any, epochs: int, batch_size: int, variant: str | None) -> dict[str, Any]:
    outcome: dict[str, Any] = {}
    with _callbacks(variant, outcome) as callbacks:
        run: BusRun | None = outcome.get("run")
        loop0 = run.loop_cpu_s() if run else 0.0
        cpu0, t0 = time.process_time(), time.perf_counter()
        model.fit(x, y, batch_size=batch_size, epochs=epochs, verbose=0, callbacks=callbacks)
        outcome["fit_s"] = time.perf_counter() - t0
        outcome["cpu_s"] = time.process_time() - cpu0
        outcome["loop_cpu_s"] = run.loop_cpu_s() - loop0 if run else None
    return outcome


def measure(
    *,
    epochs: int = 15,
    repeats: int = 7,
    slow_epochs: int = 2,
    slow_repeats: int = 3,
    batch_size: int = 32,
    rows: int | None = None,
    variants: tuple[str, ...] = tuple(VARIANTS),
) -> dict[str, Any]:
    """Pair each variant's fit with a baseline fit; return per-pair ratios."""
    x, y = digits(rows)
    model = mlp()
    # Warm-up: the first fit traces the train step; the bridge imports and builds once.
    _fit(model, x, y, 1, batch_size, None)
    _fit(model, x, y, 1, batch_size, "bridge_0")

    pairs: dict[str, list[tuple[dict[str, Any], dict[str, Any]]]] = {v: [] for v in variants}
    slow = "sync_sleep_10ms"
    for r in range(max(repeats, slow_repeats if slow in variants else 0)):
        for variant in variants:
            if r >= (slow_repeats if variant == slow else repeats):
                continue
            n = slow_epochs if variant == slow else epochs
            if r % 2 == 0:
                base = _fit(model, x, y, n, batch_size, None)
                tried = _fit(model, x, y, n, batch_size, variant)
            else:
                tried = _fit(model, x, y, n, batch_size, variant)
                base = _fit(model, x, y, n, batch_size, None)
            pairs[variant].append((tried, base))

    return {
        "config": {
            "data": "sklearn.datasets.load_digits",
            "rows": len(x),
            "batch_size": batch_size,
            "steps_per_epoch": -(-len(x) // batch_size),
            "epochs": epochs,
            "repeats": repeats,
            "slow_epochs": slow_epochs,
            "slow_repeats": slow_repeats,
            "close_timeout_s": CLOSE_TIMEOUT_S,
            "budget_ratio": BUDGET_RATIO,
        },
        "variants": {
            v: _summarize(v, pairs[v], slow_epochs if v == slow else epochs, -(-len(x) // batch_size)) for v in variants
        },
    }


def _summarize(
    variant: str, pairs: list[tuple[dict[str, Any], dict[str, Any]]], epochs: int, steps_per_epoch: int
) -> dict[str, Any]:
    outcomes = [tried for tried, _ in pairs]
    ratios = [tried["fit_s"] / base["fit_s"] for tried, base in pairs]
    cpu_ratios = [tried["cpu_s"] / base["cpu_s"] for tried, base in pairs]
    runs: list[BusRun] = [o["run"] for o in outcomes if "run" in o]
    counts: dict[str, int] = {}
    for run in runs:
        add_counts(counts, run.counts)
    ratio = median(ratios)
    steps = epochs * steps_per_epoch
    return {
        "label": VARIANTS[variant],
        "epochs": epochs,
        "pairs": len(ratios),
        "ratio_median": ratio,
        "ratio_min": min(ratios),
        "ratio_max": max(ratios),
        "ratios": ratios,
        "cpu_ratio_median": median(cpu_ratios),
        "cpu_ratios": cpu_ratios,
        "fit_s_median": median([o["fit_s"] for o in outcomes]),
        "baseline_fit_s_median": median([base["fit_s"] for _, base in pairs]),
        "within_budget": ratio <= BUDGET_RATIO if variant == "bridge_async_10ms" else None,
        "loop_cpu_us_per_step": median([o["loop_cpu_s"] for o in outcomes]) / steps * 1e6 if runs else None,
        "bus": counts or None,
        "bus_warned_on_close": any(run.warned for run in runs),
        "close_s_median": median([run.close_s for run in runs]) if runs else None,
        "log_records": sum(o.get("log_records", 0) for o in outcomes) if runs else None,
    }
