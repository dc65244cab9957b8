"""The main job: the Keras guide's model, trained on a real data set, with the
guide's callbacks running as bus subscribers, then a report of what happened.

Run it with ``eventbus demo``. The data set is scikit-learn's handwritten
digits (1,797 8x8 images), which ships inside the installed package: nothing
is downloaded. As in the guide, the model regresses the digit's value with a
single ``Dense`` layer, which keeps it small enough to train in seconds.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from typing import Any, TextIO

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import anyio  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402

from eventbus import BusStatistics, EventBus, events  # noqa: E402
from eventbus.adapters.keras import KerasBridge  # noqa: E402
from eventbus.commands import SetLearningRate, SnapshotWeights  # noqa: E402
from eventbus.examples.seed_callbacks import (  # noqa: E402
    CustomLearningRateScheduler,
    EarlyStoppingAtMinLoss,
    LossAndErrorPrintingCallback,
    lr_schedule,
)
from eventbus.log import EventLog  # noqa: E402
from eventbus.subscribers import History, ProgressBar  # noqa: E402
from eventbus.testing import Recorder  # noqa: E402

__all__ = ["DemoResult", "get_model", "load_digits_data", "main", "run"]


def load_digits_data(seed: int = 0) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """The digits, scaled to [0, 1], with a fixed shuffle: 1,280 to train on (four
    passes of the guide's 5 steps of 64 per epoch, so no epoch runs short), 517 held out."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = (digits.data / 16.0).astype("float32")
    y = digits.target.astype("float32")
    order = np.random.default_rng(seed).permutation(len(x))
    x, y = x[order], y[order]
    cut = 1280
    return (x[:cut], y[:cut]), (x[cut:], y[cut:])


def get_model(inputs: int = 64) -> keras.Model:
    """The guide's model: one ``Dense`` unit, RMSprop at 0.1, mean squared error."""
    model = keras.Sequential([keras.Input((inputs,)), keras.layers.Dense(1)])
    model.compile(
        optimizer=keras.optimizers.RMSprop(learning_rate=0.1),
        loss="mean_squared_error",
        metrics=["mean_absolute_error"],
    )
    return model


class Dashboard:
    """An async subscriber doing slow I/O per epoch (here: a 50 ms sleep).

    A Keras callback doing this would stall training for 50 ms per epoch; on
    the bus it costs the training step nothing.
    """

    kinds = (events.EpochEnd,)

    def __init__(self, delay: float = 0.05) -> None:
        self.delay = delay
        self.uploaded: list[int] = []

    async def __call__(self, event: events.EpochEnd) -> None:
        await anyio.sleep(self.delay)
        self.uploaded.append(event.epoch)


@dataclass
class DemoResult:
    history: dict[str, list[float]]
    learning_rates: list[float]
    decisions: list[events.Event]
    test: dict[str, float]
    statistics: BusStatistics
    seconds: float
    epochs: int


def run(
    *,
    epochs: int = 30,
    seed: int = 0,
    patience: int = 2,
    log: str | None = None,
    progress: bool = False,
    out: TextIO | None = None,
) -> DemoResult:
    """Train the guide's model on the digits with the guide's subscribers on the bus."""
    out = out or sys.stdout
    (x_train, y_train), (x_test, y_test) = load_digits_data(seed)
    keras.utils.set_random_seed(seed)
    model = get_model(x_train.shape[1])
    history = History()
    decisions = Recorder(
        kinds=[events.CommandApplied, events.CommandRejected, events.SubscriberFailed, events.BarrierTimedOut],
        lossless=True,
        name="decisions",
    )
    rates = Recorder(kinds=[events.EpochEnd], name="learning rates")
    with EventBus() as bus:
        if progress:
            bus.subscribe(ProgressBar(file=out))
        else:
            bus.subscribe(LossAndErrorPrintingCallback(file=out))
        bus.subscribe(CustomLearningRateScheduler(lr_schedule, file=out))
        bus.subscribe(EarlyStoppingAtMinLoss(patience=patience, file=out))
        bus.subscribe(Dashboard())
        bus.subscribe(history)
        bus.subscribe(decisions)
        bus.subscribe(rates)
        if log:
            bus.subscribe(EventLog(log))
        bridge = KerasBridge(bus)
        started = time.perf_counter()
        model.fit(x_train, y_train, batch_size=64, steps_per_epoch=5, epochs=epochs, verbose=0, callbacks=[bridge])
        seconds = time.perf_counter() - started
        test = model.evaluate(x_test, y_test, batch_size=128, verbose=0, return_dict=True)
    applied_rates = [r.learning_rate for r in rates.events]  # type: ignore[attr-defined]
    return DemoResult(
        history=history.history,
        learning_rates=[lr for lr in applied_rates if lr is not None],
        decisions=decisions.events,
        test={k: float(v) for k, v in test.items()},
        statistics=bus.statistics(),
        seconds=seconds,
        epochs=epochs,
    )


def report(result: DemoResult, out: TextIO) -> None:
    """What happened, read back from the event stream."""
    losses = result.history.get("loss", [])
    print("\n== What happened", file=out)
    print(f"epochs run: {len(losses)} of {result.epochs}, in {result.seconds:.2f} s", file=out)
    if losses:
        best = int(np.argmin(losses))
        print(f"best training loss: {losses[best]:.4f} (epoch {best})", file=out)
    test = result.test
    print(f"held-out digits: loss {test['loss']:.4f}, mean absolute error {test['mean_absolute_error']:.4f}", file=out)
    spans: list[tuple[int, int, float]] = []
    for epoch, rate in enumerate(result.learning_rates):
        if spans and spans[-1][2] == rate:
            spans[-1] = (spans[-1][0], epoch, rate)
        else:
            spans.append((epoch, epoch, rate))
    print("learning rate: " + ", ".join(f"{rate:.4g} (epochs {a}-{b})" for a, b, rate in spans), file=out)
    counts: dict[str, int] = {}
    for event in result.decisions:
        if isinstance(event, events.CommandApplied):
            counts[type(event.command).__name__] = counts.get(type(event.command).__name__, 0) + 1
    print("commands applied on the training thread: " + ", ".join(f"{n} x {k}" for k, n in counts.items()), file=out)
    routine = (SetLearningRate, SnapshotWeights)
    for event in result.decisions:
        if isinstance(event, events.CommandApplied) and not isinstance(event.command, routine):
            print(f"  event #{event.seq}: {_describe(event.command)}", file=out)
        elif not isinstance(event, events.CommandApplied):
            print(f"  event #{event.seq}: {event.kind}: {getattr(event, 'reason', '')}", file=out)
    print("subscribers:", file=out)
    print(f"  {'name':<30} {'delivered':>9} {'dropped':>7} {'failed':>6} {'commands':>8}", file=out)
    for stats in result.statistics.subscribers:
        print(
            f"  {stats.name:<30} {stats.delivered:>9} {stats.dropped:>7} {stats.failed:>6} {stats.commands:>8}",
            file=out,
        )


def _describe(command: Any) -> str:
    fields = ", ".join(f"{name}={getattr(command, name)!r}" for name in command.__struct_fields__)
    return f"{type(command).__name__}({fields})"


def main(argv: list[str] | None = None, out: TextIO | None = None) -> int:
    """``eventbus demo``: train, print as the guide's callbacks do, then report."""
    import argparse

    parser = argparse.ArgumentParser(prog="eventbus demo", description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30, help="most epochs to train (default 30)")
    parser.add_argument("--patience", type=int, default=2, help="EarlyStoppingAtMinLoss patience (default 2)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument(
        "--log",
        default="eventbus-demo.log",
        help="where to write the event log (default eventbus-demo.log; '' for none)",
    )
    parser.add_argument("--progress", action="store_true", help="a live progress display instead of the batch lines")
    args = parser.parse_args(argv)
    out = out or sys.stdout
    if args.log and os.path.exists(args.log):
        os.remove(args.log)  # one run per log: a fresh demo, a fresh record
    result = run(
        epochs=args.epochs,
        seed=args.seed,
        patience=args.patience,
        log=args.log or None,
        progress=args.progress,
        out=out,
    )
    report(result, out)
    if args.log:
        print(f"\nevent log: {args.log}; try", file=out)
        print(f"  eventbus inspect {args.log}", file=out)
        print(f"  eventbus replay {args.log} --early-stopping patience=5 monitor=loss", file=out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
