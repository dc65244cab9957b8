"""What one subscriber adds to ``fit``'s wall time, measured epoch by epoch.

Whole fits, even paired and alternated, vary by 10-20% from one to the next
on a shared machine; adjacent epochs of one fit vary by a few percent. So
one long ``fit`` runs with the bus and the bridge throughout, and a callback
first in the list subscribes the subscribers under test at some epochs'
begin and unsubscribes them at others', in ABBA order (with, without,
without, with, ...), so drift cancels. Each pair of adjacent epochs, one
with and one without, gives a ratio; the figure is their median, with a
bootstrap 95% interval. The first four epochs (the iterator's start-up, the
first subscription) are left out.

A subscriber whose work trails the events (the socket server sends what it
holds every ``flush_interval``) would pay for an epoch in the next one, as
often in an epoch without it as with it, and its cost would cancel out of
the pairs. So such a subject is toggled in blocks of epochs, ABBA over
blocks, and the first epochs of each block, as long as the lag, are left
out (a wash-out): what is measured of a block with it holds its steady
cost, what is measured of a block without it holds none. Each pair of
adjacent blocks gives a ratio of mean measured epochs.

This is the subscriber's own cost, the bridge's being the same in both
epochs of a pair; ``fit_overhead`` measures the bus and bridge against no
callbacks at all. The socket server's 64 clients stay connected throughout,
in a process of their own at the lowest CPU priority (stand-ins for remote
readers); only the server's subscription comes and goes.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import random
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

from .common import median, running_bus
from .fit_overhead import BUDGET_RATIO, sleepy
from .models import digits, mlp, repeated_batches


class Subject(NamedTuple):
    label: str
    lag_s: float = 0.0
    """How long after an epoch the subject may still be working on its events:
    0 for work done within the epoch, toggled epoch by epoch."""


FLUSH_INTERVAL = 0.25
"""The socket server's (its default): it sends what it holds this often."""
SUBJECTS: dict[str, Subject] = {
    "async_10ms": Subject("a subscriber awaiting anyio.sleep(0.01) per event"),
    "standard": Subject("PrintLogger, EarlyStopping, LearningRateScheduler, History"),
    # A flush interval, then the bus's delivery latency and the flush itself (~20 ms and ~5 ms), with a margin.
    "sockets_64": Subject("a TCP SocketServer serving 64 clients (in another process)", lag_s=FLUSH_INTERVAL + 0.05),
}
CLIENTS = 64
MODES = ("default", "no-sync")
SKIPPED_EPOCHS = 4
MAX_EPOCHS = 10_000
"""A bound on one fit; the toggle stops it once it has its pairs."""
_PATTERN = (True, False, False, True)


def _subscribers(subject: str, server: Any = None) -> list[tuple[Any, dict[str, Any]]]:
    if subject == "async_10ms":
        return [(sleepy, {})]
    if subject == "sockets_64":

        async def fan_out(events: list[Any]) -> None:
            await server(events)  # not the server itself: unsubscribing it would end its stream (aclose)

        return [(fan_out, {"batched": True, "lossless": True, "name": "SocketServer"})]
    from eventbus.subscribers import EarlyStopping, History, LearningRateScheduler, PrintLogger

    return [
        (PrintLogger(file=io.StringIO()), {}),
        (EarlyStopping(monitor="loss", patience=10_000), {}),  # never stops: every epoch is measured
        (LearningRateScheduler(lambda epoch, lr: lr), {}),
        (History(), {}),
    ]


class Toggle:
    """Subscribes the subjects for the blocks of epochs the pattern says, and notes when each epoch begins.

    The first ``SKIPPED_EPOCHS`` warm up, toggled epoch by epoch; then come
    ``pairs`` pairs of blocks. A subject with a lag gets blocks twice as long
    as its lag in epochs (timed on the warm-up), the first half of each left
    out; one with none gets blocks of one epoch, all measured.
    """

    def __init__(
        self,
        bus: Any,
        subject: str,
        server: Any = None,
        *,
        pairs: int,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.bus = bus
        self.subject = subject
        self.server = server
        self.pairs = pairs
        self.clock = clock
        self.block = 1
        self.washout = 0
        self.subscriptions: list[Any] = []
        self.begins: list[float] = []
        self.with_subject: list[bool] = []
        self.measured: list[bool] = []
        self.done = False
        """Every pair is timed: the fit may stop."""

    def keras_callback(self) -> Any:
        import keras

        toggle = self

        class _Toggle(keras.callbacks.Callback):  # type: ignore[misc]
            def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
                toggle.epoch_begins(epoch)
                if toggle.done:
                    self.model.stop_training = True

        return _Toggle()

    def epoch_begins(self, epoch: int) -> None:
        self.begins.append(self.clock())
        if epoch == SKIPPED_EPOCHS:
            self._size_blocks()
        if epoch < SKIPPED_EPOCHS:
            want, measured = _PATTERN[epoch % 4], False
        else:
            block, position = divmod(epoch - SKIPPED_EPOCHS, self.block)
            want, measured = _PATTERN[block % 4], position >= self.washout
            self.done = block >= 2 * self.pairs
        if want and not self.subscriptions:
            self.subscriptions = [self.bus.subscribe(h, **o) for h, o in _subscribers(self.subject, self.server)]
        elif not want and self.subscriptions:
            for subscription in self.subscriptions:
                self.bus.unsubscribe(subscription)
            self.subscriptions = []
        self.with_subject.append(want)
        self.measured.append(measured)

    def _size_blocks(self) -> None:
        lag = SUBJECTS[self.subject].lag_s
        if lag > 0:
            epoch_s = median([b - a for a, b in zip(self.begins[1:], self.begins[2:], strict=False)])
            self.washout = math.ceil(lag / epoch_s)
            self.block = 2 * self.washout

    def pair_ratios(self) -> list[float]:
        """Mean measured epoch with / without, for each adjacent pair of blocks fully timed."""
        spans = [b - a for a, b in zip(self.begins, self.begins[1:], strict=False)]
        ratios = []
        for pair in range(self.pairs):
            means: dict[bool, float] = {}
            for block in (2 * pair, 2 * pair + 1):
                first = SKIPPED_EPOCHS + block * self.block
                timed = range(first + self.washout, first + self.block)
                if timed[-1] >= len(spans):
                    return ratios
                means[self.with_subject[first]] = sum(spans[e] for e in timed) / len(timed)
            ratios.append(means[True] / means[False])
        return ratios


def _one_fit(subject: str, mode: str, model: Any, data: Any, steps: int, pairs: int) -> dict[str, Any]:
    with contextlib.ExitStack() as stack:
        server = clients = None
        if subject == "sockets_64":
            server, clients = stack.enter_context(_served_clients())
        outcome = _fit(subject, mode, model, data, steps, pairs, server)
    if clients is not None:
        outcome["client_bytes"] = clients.received
        outcome["client_cpu_s"] = clients.cpu_s
    return outcome


def _fit(subject: str, mode: str, model: Any, data: Any, steps: int, pairs: int, server: Any) -> dict[str, Any]:
    from eventbus.adapters.keras import KerasBridge

    with running_bus(close_timeout=1.0) as run:
        toggle = Toggle(run.bus, subject, server, pairs=pairs)
        bridge = KerasBridge(run.bus, defer_logs=mode == "no-sync")
        clock = toggle.keras_callback()
        if mode == "no-sync":
            callbacks: Any = bridge.callback_list(model, clock, epochs=MAX_EPOCHS, steps=steps)
        else:
            callbacks = [clock, bridge]
        model.fit(data, steps_per_epoch=steps, epochs=MAX_EPOCHS, shuffle=False, verbose=0, callbacks=callbacks)
        if not toggle.done:
            raise RuntimeError(f"{MAX_EPOCHS} epochs did not time {pairs} pairs of {toggle.block}-epoch blocks")
        spans = [b - a for a, b in zip(toggle.begins, toggle.begins[1:], strict=False)]
    return {
        "ratios": toggle.pair_ratios(),
        "epoch_s": median(spans),
        "fit_s": toggle.begins[-1] - toggle.begins[0],
        "epochs": len(spans),
        "block": toggle.block,
        "washout": toggle.washout,
    }


class _Clients:
    received: list[int] | None = None
    cpu_s: float | None = None


@contextlib.contextmanager
def _served_clients() -> Iterator[tuple[Any, _Clients]]:
    """A SocketServer in its own thread, and 64 raw clients in a process of their own, all connected."""
    from eventbus.adapters.sockets import SocketServer

    clients = _Clients()
    with SocketServer("tcp://127.0.0.1:0", flush_interval=FLUSH_INTERVAL) as server:
        process = subprocess.Popen(
            [sys.executable, "-m", "bench.socket_clients", str(server.port), str(CLIENTS)],
            stdout=subprocess.PIPE,
            text=True,
            cwd=Path(__file__).resolve().parent.parent,
        )
        try:
            assert process.stdout is not None
            if process.stdout.readline().strip() != "connected":
                raise RuntimeError("the socket clients did not connect")
            deadline = time.monotonic() + 10
            while server.clients < CLIENTS and time.monotonic() < deadline:
                time.sleep(0.01)
            yield server, clients
        finally:
            server.__exit__(None, None, None)  # closes every connection: the clients read to the end
            out, _ = process.communicate(timeout=30)
            report = json.loads(out.strip().splitlines()[-1])
            clients.received, clients.cpu_s = report["bytes"], report["cpu_s"]


def _interval(values: list[float], resamples: int, seed: int = 0) -> tuple[float, float]:
    """A bootstrap 95% interval of the median."""
    rng = random.Random(seed)
    medians = sorted(median(rng.choices(values, k=len(values))) for _ in range(resamples))
    return medians[int(0.025 * resamples)], medians[int(0.975 * resamples) - 1]


def measure(
    *,
    pairs: int = 78,
    block_pairs: int = 60,
    batch_size: int = 32,
    rows: int | None = None,
    subjects: tuple[str, ...] = tuple(SUBJECTS),
    modes: tuple[str, ...] = MODES,
    resamples: int = 2000,
) -> dict[str, Any]:
    """``pairs`` epoch pairs per subject with no lag, ``block_pairs`` block pairs per subject with one."""
    for label, value in (("pairs", pairs), ("block_pairs", block_pairs)):
        if value < 1:
            raise ValueError(f"{label} must be >= 1, got {value}")
    x, y = digits(rows)
    data, steps = repeated_batches(x, y, batch_size)
    model = mlp()
    model.fit(data, steps_per_epoch=steps, epochs=1, shuffle=False, verbose=0)  # traces the train step
    runs: dict[str, Any] = {}
    for subject in subjects:
        for mode in modes:
            wanted = block_pairs if SUBJECTS[subject].lag_s > 0 else pairs
            outcome = _one_fit(subject, mode, model, data, steps, wanted)
            ratios = outcome["ratios"]
            low, high = _interval(ratios, resamples)
            ratio = median(ratios)
            runs[f"{subject}/{mode}"] = {
                "subject": subject,
                "label": SUBJECTS[subject].label,
                "mode": mode,
                "pairs": len(ratios),
                "block_epochs": outcome["block"],
                "washout_epochs": outcome["washout"],
                "epochs": outcome["epochs"],
                "ratio_median": ratio,
                "ci95": [low, high],
                "ratio_mean": sum(ratios) / len(ratios),
                "epoch_ms_median": outcome["epoch_s"] * 1000,
                "within_budget": ratio <= BUDGET_RATIO,
                "client_bytes_min": min(outcome["client_bytes"]) if "client_bytes" in outcome else None,
                "client_cpu_share": outcome["client_cpu_s"] / outcome["fit_s"] if "client_cpu_s" in outcome else None,
            }
    return {
        "config": {
            "data": "sklearn.datasets.load_digits",
            "rows": len(x),
            "batch_size": batch_size,
            "steps_per_epoch": steps,
            "pairs": pairs,
            "block_pairs": block_pairs,
            "skipped_epochs": SKIPPED_EPOCHS,
            "pattern": "with, without, without, with (ABBA), by epoch or by block",
            "flush_interval_s": FLUSH_INTERVAL,
            "resamples": resamples,
            "budget_ratio": BUDGET_RATIO,
        },
        "runs": runs,
    }
