"""``fit`` wall time with the bus, as ratios to ``fit`` with no callbacks at all.

Budgets: the bus with the standard subscribers (``PrintLogger``,
``EarlyStopping``, ``LearningRateScheduler``, ``History``) costs ``fit``
<= 1.02x, and so does a subscriber that needs 10 ms per event, where a
synchronous Keras callback doing the same costs ~15x. Every variant's fit is
paired with a baseline fit in the same process, the order within a pair
alternating from repeat to repeat, and the ratio is taken pair by pair: slow
drift of a shared machine cancels out within a pair. Only ``model.fit`` is
timed; starting and closing the bus are not (closing is reported apart), nor
are a peer's own set-up and tear-down (``wandb.init`` and ``finish``).

Peers, in one ``fit`` each: Keras's own equivalents of the standard
subscribers (``CSVLogger``, ``EarlyStopping``, ``LearningRateScheduler``, and
``TensorBoard`` writing every batch), and Weights & Biases' Keras callback
logging every batch, offline (``WANDB_MODE=offline``: it writes a local run
directory and never reaches the network). Peers that are not installed are
skipped, with a note in the results. Their files go to a temporary directory.

Steady epochs. Whole-fit times vary by 10-80% pair to pair, and most of that
is not the callbacks: starting an epoch's iterator over in-memory arrays takes
~12 ms, or now and then ~80 ms, for the same fit. So the data come as one
repeated ``tf.data`` pipeline (``steps_per_epoch`` steps per epoch, the
iterator built once per fit), and a clock callback, first in the list, notes
when each epoch begins: the *steady* time of a fit runs from the second
epoch's begin to the last epoch's begin, so it holds whole epochs with every
callback's epoch hooks and barriers, and none of ``fit``'s own start-up. The
budgets are judged on the median steady ratio; whole-fit ratios stand beside
it, as do the training thread's time inside the callbacks' hooks (a clock
around each call of a hook the callback overrides, per fit, and per call of
the batch hooks and of the epoch hooks, where the bus's barriers wait), and
the ratio of the fastest fit of each kind.

The data are scikit-learn's bundled digits, the model a small MLP, so one
step is short and the bus's share of it as large as it gets.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import logging
import os
import tempfile
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio

from .common import BusRun, add_counts, median, running_bus
from .models import digits, mlp, repeated_batches

BUDGET_RATIO = 1.02
CLOSE_TIMEOUT_S = 1.0
"""Closing waits for a slow subscriber's backlog; bounded here to keep runs short."""

VARIANTS: dict[str, str] = {
    "bridge_0": "KerasBridge, no subscribers",
    "bridge_deferred": "KerasBridge(defer_logs=True) through its callback_list, no subscribers",
    "bridge_standard": "KerasBridge + PrintLogger, EarlyStopping, LearningRateScheduler, History",
    "keras_standard": "Keras CSVLogger, EarlyStopping, LearningRateScheduler, TensorBoard(update_freq='batch')",
    "wandb_batch": "wandb WandbMetricsLogger(log_freq='batch'), offline",
    "bridge_async_10ms": "KerasBridge + subscriber awaiting anyio.sleep(0.01) per event",
    "bridge_standard_deferred": "KerasBridge(defer_logs=True) through its callback_list + the standard subscribers",
    "bridge_async_10ms_deferred": "KerasBridge(defer_logs=True) through its callback_list + the 10 ms subscriber",
    "keras_batch_noop": "plain Keras callback with an empty on_train_batch_end",
    "sync_sleep_10ms": "plain Keras callback, time.sleep(0.01) per batch",
    "bridge_failing": "KerasBridge + subscriber raising on every event",
}
BUDGETED = ("bridge_standard", "bridge_async_10ms", "bridge_standard_deferred", "bridge_async_10ms_deferred")
PEERS = ("keras_standard", "wandb_batch")


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


def _noop_batch_callback() -> Any:
    """Any Keras callback with a batch hook makes Keras convert each step's logs to floats, on the training thread."""
    import keras

    class NoopPerBatch(keras.callbacks.Callback):  # type: ignore[misc]
        def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
            pass

    return NoopPerBatch()


def _sleep_callback() -> Any:
    import keras

    class SleepPerBatch(keras.callbacks.Callback):  # type: ignore[misc]
        def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
            time.sleep(0.01)

    return SleepPerBatch()


def missing(variant: str) -> str | None:
    """Why ``variant`` cannot run here, or ``None`` when it can."""
    if variant == "wandb_batch" and importlib.util.find_spec("wandb") is None:
        return "wandb is not installed (pip install 'keras-eventbus[bench]'): skipped"
    return None


def notes(variant: str) -> list[str]:
    """What a reader should know about a variant as it ran here."""
    if variant == "keras_standard" and importlib.util.find_spec("tensorboard") is None:
        return ["the tensorboard package is not installed: TensorBoard was left out of this variant"]
    if variant == "wandb_batch":
        return ["wandb.init(mode='offline') before each fit and run.finish() after it are not timed"]
    return []


def _standard_subscribers(bus: Any) -> None:
    from eventbus.subscribers import EarlyStopping, History, LearningRateScheduler, PrintLogger

    bus.subscribe(PrintLogger(file=io.StringIO()))
    bus.subscribe(EarlyStopping(monitor="loss", patience=1000))  # never stops: every run is as long
    bus.subscribe(LearningRateScheduler(lambda epoch, lr: lr))
    bus.subscribe(History())


def _keras_standard(directory: Path) -> list[Any]:
    import keras

    callbacks = [
        keras.callbacks.CSVLogger(str(directory / "log.csv")),
        keras.callbacks.EarlyStopping(monitor="loss", patience=1000),
        keras.callbacks.LearningRateScheduler(lambda epoch, lr: lr),
    ]
    if importlib.util.find_spec("tensorboard") is not None:
        callbacks.append(keras.callbacks.TensorBoard(log_dir=str(directory / "tensorboard"), update_freq="batch"))
    return callbacks


@contextlib.contextmanager
def _wandb_run(directory: Path) -> Iterator[Any]:
    """An offline W&B run, quiet and local; its own warnings are not the bench's business."""
    os.environ["WANDB_MODE"] = "offline"  # never the network, whatever the environment says
    os.environ["WANDB_SILENT"] = "true"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import wandb
        from wandb.integration.keras import WandbMetricsLogger

        run = wandb.init(
            project="keras-eventbus-bench",
            dir=str(directory),
            mode="offline",
            settings=wandb.Settings(console="off", silent=True),
        )
    try:
        yield WandbMetricsLogger(log_freq="batch")
    finally:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            run.finish()


def _wandb_teardown() -> None:
    """Stop wandb's background service: it outlives ``finish()`` and would share the CPUs with what runs next."""
    import wandb

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        wandb.teardown()


class EpochClock:
    """Notes when each epoch begins; first in the callbacks, so an epoch's span holds every hook."""

    def __init__(self) -> None:
        self.begins: list[float] = []

    def keras_callback(self) -> Any:
        import keras

        clock = self

        class _Clock(keras.callbacks.Callback):  # type: ignore[misc]
            def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
                clock.begins.append(time.perf_counter())

        return _Clock()

    def steady_s(self) -> float | None:
        """From the second epoch's begin to the last one's: whole epochs, no start-up."""
        return self.begins[-1] - self.begins[1] if len(self.begins) >= 3 else None


HOOKS = tuple(
    f"on_{stage}_{event}"
    for stage in ("train", "epoch", "train_batch", "test", "test_batch")
    for event in ("begin", "end")
)


class HookClock:
    """The training thread's time inside callbacks' hooks during one fit."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.calls = 0
        self.by_kind: dict[str, list[float]] = {"batch": [0.0, 0], "epoch": [0.0, 0]}
        """Batch hooks and epoch hooks: [seconds, calls] (epoch hooks hold the barriers)."""

    def wrap(self, callbacks: list[Any]) -> None:
        """Time every hook a callback overrides (the no-op ones Keras calls cost nothing here)."""
        import keras

        for callback in callbacks:
            for name in HOOKS:
                if getattr(type(callback), name, None) is not getattr(keras.callbacks.Callback, name):
                    setattr(callback, name, self._timed(getattr(callback, name)))

    def _timed(self, hook: Any) -> Any:
        perf = time.perf_counter
        name = hook.__name__
        kind = self.by_kind.get("batch" if "_batch_" in name else "epoch" if name.startswith("on_epoch_") else "")

        def timed(*args: Any, **kwargs: Any) -> Any:
            t0 = perf()
            try:
                return hook(*args, **kwargs)
            finally:
                spent = perf() - t0
                self.seconds += spent
                self.calls += 1
                if kind is not None:
                    kind[0] += spent
                    kind[1] += 1

        return timed

    def us_per_call(self, kind: str) -> float | None:
        seconds, calls = self.by_kind[kind]
        return seconds / calls * 1e6 if calls else None


@contextlib.contextmanager
def _callbacks(variant: str | None, outcome: dict[str, Any]) -> Iterator[list[Any] | None]:
    """The ``callbacks=`` of one fit; bus variants run in their own bus, peers write to a temporary directory."""
    if variant is None:
        yield None
        return
    if variant == "sync_sleep_10ms":
        yield [_sleep_callback()]
        return
    if variant == "keras_batch_noop":
        yield [_noop_batch_callback()]
        return
    if variant in PEERS:
        with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
            if variant == "keras_standard":
                yield _keras_standard(Path(tmp))
            else:
                with _wandb_run(Path(tmp)) as logger:
                    yield [logger]
        return
    from eventbus.adapters.keras import KerasBridge

    logger = logging.getLogger("eventbus")
    counter = _Counting()
    logger.addHandler(counter)
    try:
        with running_bus(close_timeout=CLOSE_TIMEOUT_S) as run:
            outcome["run"] = run
            if variant.startswith("bridge_async_10ms"):
                run.bus.subscribe(sleepy)
            elif variant == "bridge_failing":
                run.bus.subscribe(failing)
            elif variant.startswith("bridge_standard"):
                _standard_subscribers(run.bus)
            yield [KerasBridge(run.bus, defer_logs=_deferred(variant))]
    finally:
        logger.removeHandler(counter)
    outcome["log_records"] = counter.count


def _deferred(variant: str | None) -> bool:
    return variant is not None and variant.startswith("bridge_") and "deferred" in variant


def _fit(model: Any, data: Any, steps: int, epochs: int, variant: str | None) -> dict[str, Any]:
    outcome: dict[str, Any] = {}
    with _callbacks(variant, outcome) as callbacks:
        clock = HookClock()
        clock.wrap(callbacks or [])
        epoch_clock = EpochClock()
        if _deferred(variant):
            # Keras hands a CallbackList given as callbacks= the raw log tensors: no per-step sync.
            (bridge,) = callbacks or []
            listed: Any = bridge.callback_list(model, epoch_clock.keras_callback(), epochs=epochs, steps=steps)
        else:
            listed = [epoch_clock.keras_callback(), *(callbacks or [])]
        run: BusRun | None = outcome.get("run")
        loop0 = run.loop_cpu_s() if run else 0.0
        cpu0, t0 = time.process_time(), time.perf_counter()
        model.fit(data, steps_per_epoch=steps, epochs=epochs, shuffle=False, verbose=0, callbacks=listed)
        outcome["fit_s"] = time.perf_counter() - t0
        outcome["cpu_s"] = time.process_time() - cpu0
        outcome["steady_s"] = epoch_clock.steady_s()
        outcome["loop_cpu_s"] = run.loop_cpu_s() - loop0 if run else None
        outcome["hook_s"], outcome["hook_calls"] = clock.seconds, clock.calls
        outcome["batch_hook_us"], outcome["epoch_hook_us"] = clock.us_per_call("batch"), clock.us_per_call("epoch")
    return outcome


def measure(
    *,
    epochs: int = 7,
    repeats: int = 21,
    slow_epochs: int = 3,
    slow_repeats: int = 3,
    batch_size: int = 32,
    rows: int | None = None,
    variants: tuple[str, ...] = tuple(VARIANTS),
) -> dict[str, Any]:
    """Pair each variant's fit with a baseline fit; return per-pair ratios."""
    skipped = {v: why for v in variants if (why := missing(v))}
    variants = tuple(v for v in variants if v not in skipped)
    if min(epochs, slow_epochs) < 3:
        raise ValueError("a steady time needs at least 3 epochs per fit (it spans the second to the last)")
    x, y = digits(rows)
    data, steps = repeated_batches(x, y, batch_size)
    model = mlp()
    # Warm-up: the first fit traces the train step; each variant imports and builds what it needs once.
    _fit(model, data, steps, 1, None)
    for variant in variants:
        if variant != "sync_sleep_10ms":
            _fit(model, data, steps, 1, variant)

    pairs: dict[str, list[tuple[dict[str, Any], dict[str, Any]]]] = {v: [] for v in variants}
    slow = "sync_sleep_10ms"
    for r in range(max(repeats, slow_repeats if slow in variants else 0)):
        for variant in variants:
            if r >= (slow_repeats if variant == slow else repeats):
                continue
            n = slow_epochs if variant == slow else epochs
            if r % 2 == 0:
                base = _fit(model, data, steps, n, None)
                tried = _fit(model, data, steps, n, variant)
            else:
                tried = _fit(model, data, steps, n, variant)
                base = _fit(model, data, steps, n, None)
            pairs[variant].append((tried, base))
    if "wandb_batch" in variants:
        _wandb_teardown()

    return {
        "config": {
            "data": "sklearn.datasets.load_digits",
            "rows": len(x),
            "batch_size": batch_size,
            "steps_per_epoch": steps,
            "pipeline": "tf.data: shuffled batches, repeated; the iterator is built once per fit",
            "epochs": epochs,
            "repeats": repeats,
            "slow_epochs": slow_epochs,
            "slow_repeats": slow_repeats,
            "close_timeout_s": CLOSE_TIMEOUT_S,
            "budget_ratio": BUDGET_RATIO,
            "budgeted": list(BUDGETED),
        },
        "variants": {v: _summarize(v, pairs[v], slow_epochs if v == slow else epochs, steps) for v in variants},
        "skipped": {v: {"label": VARIANTS[v], "reason": why} for v, why in skipped.items()},
    }


def _summarize(
    variant: str, pairs: list[tuple[dict[str, Any], dict[str, Any]]], epochs: int, steps_per_epoch: int
) -> dict[str, Any]:
    outcomes = [tried for tried, _ in pairs]
    ratios = [tried["fit_s"] / base["fit_s"] for tried, base in pairs]
    cpu_ratios = [tried["cpu_s"] / base["cpu_s"] for tried, base in pairs]
    steady_ratios = [tried["steady_s"] / base["steady_s"] for tried, base in pairs]
    steady = median(steady_ratios)
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
        "steady_ratio_median": steady,
        "steady_ratio_min": min(steady_ratios),
        "steady_ratio_max": max(steady_ratios),
        "steady_ratios": steady_ratios,
        "steady_s_median": median([o["steady_s"] for o in outcomes]),
        "baseline_steady_s_median": median([base["steady_s"] for _, base in pairs]),
        "cpu_ratio_median": median(cpu_ratios),
        "cpu_ratios": cpu_ratios,
        "fit_s_median": median([o["fit_s"] for o in outcomes]),
        "baseline_fit_s_median": median([base["fit_s"] for _, base in pairs]),
        "fastest_ratio": min(o["fit_s"] for o in outcomes) / min(base["fit_s"] for _, base in pairs),
        "hook_ms_per_fit_median": median([o["hook_s"] for o in outcomes]) * 1000,
        "hook_share_median": median([o["hook_s"] / o["fit_s"] for o in outcomes]),
        "hook_calls_per_fit": outcomes[0]["hook_calls"],
        "batch_hook_us_median": _median_or_none([o["batch_hook_us"] for o in outcomes]),
        "epoch_hook_us_median": _median_or_none([o["epoch_hook_us"] for o in outcomes]),
        "within_budget": steady <= BUDGET_RATIO if variant in BUDGETED else None,
        "notes": notes(variant),
        "loop_cpu_us_per_step": median([o["loop_cpu_s"] for o in outcomes]) / steps * 1e6 if runs else None,
        "bus": counts or None,
        "bus_warned_on_close": any(run.warned for run in runs),
        "close_s_median": median([run.close_s for run in runs]) if runs else None,
        "log_records": sum(o.get("log_records", 0) for o in outcomes) if runs else None,
    }


def _median_or_none(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return median(known) if known else None
