"""The guide's four example callbacks, as bus subscribers, behave like the guide's Keras callbacks.

Each test runs the guide's Keras callback (its "twin" here, adapted to Keras 3)
and the subscriber from ``eventbus.examples.seed_callbacks`` on the same seeded
model and data, and compares what they print, how many epochs run, the
learning rates, and the final weights.
"""

# The Keras twins keep the guide's own ``str.format`` calls.
# ruff: noqa: UP032

from __future__ import annotations

import io
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from eventbus import EventBus, events  # noqa: E402
from eventbus.adapters.keras import KerasBridge  # noqa: E402
from eventbus.commands import RestoreWeights, SetLearningRate, SnapshotWeights, StopTraining  # noqa: E402
from eventbus.examples import seed_callbacks  # noqa: E402

TRANSCRIPT = Path(__file__).resolve().parent / "data" / "custom_callback_transcript.txt"
SEED = 1234


# --- the guide's Keras callbacks, adapted to Keras 3 -------------------------------
# Changes from the guide: they print to ``file``; ``math.inf`` for ``np.Inf``;
# ``optimizer.learning_rate`` for ``optimizer.lr``, read with ``.numpy()`` and assigned in
# place of ``tf.keras.backend.get_value``/``set_value``.


class KerasCustomCallback(keras.callbacks.Callback):
    def __init__(self, file: TextIO) -> None:
        super().__init__()
        self.file = file

    def on_train_begin(self, logs=None):
        keys = list(logs.keys())
        print("Starting training; got log keys: {}".format(keys), file=self.file)

    def on_train_end(self, logs=None):
        keys = list(logs.keys())
        print("Stop training; got log keys: {}".format(keys), file=self.file)

    def on_epoch_begin(self, epoch, logs=None):
        keys = list(logs.keys())
        print("Start epoch {} of training; got log keys: {}".format(epoch, keys), file=self.file)

    def on_epoch_end(self, epoch, logs=None):
        keys = list(logs.keys())
        print("End epoch {} of training; got log keys: {}".format(epoch, keys), file=self.file)

    def on_test_begin(self, logs=None):
        keys = list(logs.keys())
        print("Start testing; got log keys: {}".format(keys), file=self.file)

    def on_test_end(self, logs=None):
        keys = list(logs.keys())
        print("Stop testing; got log keys: {}".format(keys), file=self.file)

    def on_predict_begin(self, logs=None):
        keys = list(logs.keys())
        print("Start predicting; got log keys: {}".format(keys), file=self.file)

    def on_predict_end(self, logs=None):
        keys = list(logs.keys())
        print("Stop predicting; got log keys: {}".format(keys), file=self.file)

    def on_train_batch_begin(self, batch, logs=None):
        keys = list(logs.keys())
        print("...Training: start of batch {}; got log keys: {}".format(batch, keys), file=self.file)

    def on_train_batch_end(self, batch, logs=None):
        keys = list(logs.keys())
        print("...Training: end of batch {}; got log keys: {}".format(batch, keys), file=self.file)

    def on_test_batch_begin(self, batch, logs=None):
        keys = list(logs.keys())
        print("...Evaluating: start of batch {}; got log keys: {}".format(batch, keys), file=self.file)

    def on_test_batch_end(self, batch, logs=None):
        keys = list(logs.keys())
        print("...Evaluating: end of batch {}; got log keys: {}".format(batch, keys), file=self.file)

    def on_predict_batch_begin(self, batch, logs=None):
        keys = list(logs.keys())
        print("...Predicting: start of batch {}; got log keys: {}".format(batch, keys), file=self.file)

    def on_predict_batch_end(self, batch, logs=None):
        keys = list(logs.keys())
        print("...Predicting: end of batch {}; got log keys: {}".format(batch, keys), file=self.file)


class KerasLossAndErrorPrintingCallback(keras.callbacks.Callback):
    def __init__(self, file: TextIO) -> None:
        super().__init__()
        self.file = file

    def on_train_batch_end(self, batch, logs=None):
        print("Up to batch {}, the average loss is {:7.2f}.".format(batch, logs["loss"]), file=self.file)

    def on_test_batch_end(self, batch, logs=None):
        print("Up to batch {}, the average loss is {:7.2f}.".format(batch, logs["loss"]), file=self.file)

    def on_epoch_end(self, epoch, logs=None):
        print(
            "The average loss for epoch {} is {:7.2f} and mean absolute error is {:7.2f}.".format(
                epoch, logs["loss"], logs["mean_absolute_error"]
            ),
            file=self.file,
        )


class KerasEarlyStoppingAtMinLoss(keras.callbacks.Callback):
    def __init__(self, patience=0, *, file: TextIO) -> None:
        super().__init__()
        self.patience = patience
        self.file = file
        self.best_weights = None

    def on_train_begin(self, logs=None):
        self.wait = 0
        self.stopped_epoch = 0
        self.best = math.inf

    def on_epoch_end(self, epoch, logs=None):
        current = logs.get("loss")
        if np.less(current, self.best):
            self.best = current
            self.wait = 0
            self.best_weights = self.model.get_weights()
        else:
            self.wait += 1
            if self.wait >= self.patience:
                self.stopped_epoch = epoch
                self.model.stop_training = True
                print("Restoring model weights from the end of the best epoch.", file=self.file)
                self.model.set_weights(self.best_weights)

    def on_train_end(self, logs=None):
        if self.stopped_epoch > 0:
            print("Epoch %05d: early stopping" % (self.stopped_epoch + 1), file=self.file)


class KerasCustomLearningRateScheduler(keras.callbacks.Callback):
    def __init__(self, schedule, *, file: TextIO) -> None:
        super().__init__()
        self.schedule = schedule
        self.file = file

    def on_epoch_begin(self, epoch, logs=None):
        if not hasattr(self.model.optimizer, "learning_rate"):
            raise ValueError('Optimizer must have a "learning_rate" attribute.')
        lr = float(self.model.optimizer.learning_rate.numpy())
        scheduled_lr = self.schedule(epoch, lr)
        self.model.optimizer.learning_rate = scheduled_lr
        print("\nEpoch %05d: Learning rate is %6.4f." % (epoch, scheduled_lr), file=self.file)


# --- harness -------------------------------------------------------------------------


def get_model(features: int) -> Any:
    """The guide's model, with a ``keras.Input`` in place of ``input_dim``."""
    model = keras.Sequential([keras.Input(shape=(features,)), keras.layers.Dense(1)])
    model.compile(
        optimizer=keras.optimizers.RMSprop(learning_rate=0.1),
        loss="mean_squared_error",
        metrics=["mean_absolute_error"],
    )
    return model


def make_data(samples: int, *, seed: int, features: int = 784) -> tuple[np.ndarray, np.ndarray]:
    """MNIST-shaped stand-in: pixels in [0, 1), digit labels as regression targets."""
    rng = np.random.default_rng(seed)
    x = rng.random((samples, features), dtype=np.float32)
    y = rng.integers(0, 10, size=samples).astype(np.float32)
    return x, y


class EpochRecorder(keras.callbacks.Callback):
    """Per epoch end: the optimizer's learning rate and the model's weights.

    Listed first in ``callbacks``, so it sees each epoch's own weights, before
    a callback after it (the twin, or the bridge) restores older ones.
    """

    def __init__(self) -> None:
        super().__init__()
        self.learning_rates: list[float] = []
        self.weights: list[list[np.ndarray]] = []

    def on_epoch_end(self, epoch, logs=None):
        self.learning_rates.append(float(self.model.optimizer.learning_rate.numpy()))
        self.weights.append(self.model.get_weights())


class Journal:
    """A subscriber that keeps the bus's own record: commands, failures, drops, timeouts."""

    kinds = events.BUS_EVENTS

    def __init__(self) -> None:
        self.records: list[events.Event] = []

    async def __call__(self, event: events.Event) -> None:
        self.records.append(event)

    def of(self, kind: type[events.Event]) -> list[Any]:
        return [r for r in self.records if isinstance(r, kind)]

    def applied(self) -> list[type]:
        return [type(r.command) for r in self.of(events.CommandApplied)]

    def assert_clean(self) -> None:
        trouble = [
            r
            for r in self.records
            if isinstance(
                r, (events.SubscriberFailed, events.EventsDropped, events.BarrierTimedOut, events.CommandRejected)
            )
        ]
        assert trouble == []


@dataclass
class Run:
    printed: dict[str, list[str]]
    epochs: int
    learning_rates: list[float]
    weights: list[np.ndarray]
    weights_at_epoch_end: list[list[np.ndarray]]
    losses: list[float]
    journal: Journal | None = None
    bridge: Any = None


Factories = Mapping[str, Callable[[TextIO], Any]]


def keras_run(
    twins: Factories,
    fit: dict[str, Any],
    evaluate: dict[str, Any] | None = None,
) -> Run:
    """Train with the guide's Keras callbacks; each prints to its own stream."""
    streams = {name: io.StringIO() for name in twins}
    keras.utils.set_random_seed(SEED)
    model = get_model(fit["x"].shape[1])
    recorder = EpochRecorder()
    callbacks = [recorder, *(make(streams[name]) for name, make in twins.items())]
    history = model.fit(verbose=0, callbacks=callbacks, **fit)
    if evaluate is not None:
        # As in the guide: fresh callback instances for evaluate.
        model.evaluate(verbose=0, callbacks=[make(streams[name]) for name, make in twins.items()], **evaluate)
    return Run(
        printed={name: s.getvalue().splitlines() for name, s in streams.items()},
        epochs=len(history.history["loss"]),
        learning_rates=recorder.learning_rates,
        weights=model.get_weights(),
        weights_at_epoch_end=recorder.weights,
        losses=history.history["loss"],
    )


def bus_run(
    subscribers: Factories,
    fit: dict[str, Any],
    evaluate: dict[str, Any] | None = None,
) -> Run:
    """Train with the subscribers on a bus; each prints to its own stream."""
    streams = {name: io.StringIO() for name in subscribers}
    journal = Journal()
    keras.utils.set_random_seed(SEED)
    model = get_model(fit["x"].shape[1])
    recorder = EpochRecorder()
    with EventBus() as bus:
        for name, make in subscribers.items():
            bus.subscribe(make(streams[name]), name=name)
        bus.subscribe(journal, name="journal")
        bridge = KerasBridge(bus)
        history = model.fit(verbose=0, callbacks=[recorder, bridge], **fit)
        if evaluate is not None:
            model.evaluate(verbose=0, callbacks=[bridge], **evaluate)
    journal.assert_clean()
    assert bridge.unpublished == 0
    return Run(
        printed={name: s.getvalue().splitlines() for name, s in streams.items()},
        epochs=len(history.history["loss"]),
        learning_rates=recorder.learning_rates,
        weights=model.get_weights(),
        weights_at_epoch_end=recorder.weights,
        losses=history.history["loss"],
        journal=journal,
        bridge=bridge,
    )


def assert_same_weights(actual: list[np.ndarray], expected: list[np.ndarray]) -> None:
    assert len(actual) == len(expected)
    for a, e in zip(actual, expected, strict=True):
        np.testing.assert_allclose(a, e, rtol=1e-6, atol=1e-7)


def weights_equal(a: list[np.ndarray], b: list[np.ndarray]) -> bool:
    return all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


# --- A basic example -------------------------------------------------------------------


def test_custom_callback_prints_the_guide_transcript() -> None:
    expected = TRANSCRIPT.read_text().splitlines()
    assert len(expected) == 58
    x_train, y_train = make_data(1000, seed=1)
    x_test, y_test = make_data(1000, seed=2)
    keras.utils.set_random_seed(SEED)
    model = get_model(784)
    from_bus, from_keras = io.StringIO(), io.StringIO()
    journal = Journal()
    with EventBus() as bus:
        subscription = bus.subscribe(seed_callbacks.CustomCallback(file=from_bus))
        bus.subscribe(journal)
        bridge = KerasBridge(bus)
        model.fit(
            x_train,
            y_train,
            batch_size=128,
            epochs=1,
            verbose=0,
            validation_split=0.5,
            callbacks=[bridge, KerasCustomCallback(from_keras)],
        )
        model.evaluate(x_test, y_test, batch_size=128, verbose=0, callbacks=[bridge, KerasCustomCallback(from_keras)])
        model.predict(x_test, batch_size=128, verbose=0, callbacks=[bridge, KerasCustomCallback(from_keras)])
    journal.assert_clean()
    assert from_keras.getvalue().splitlines() == expected
    assert from_bus.getvalue().splitlines() == expected
    # Every Keras hook event reached it, and none of the bus's own records.
    stats = bus.statistics()[subscription.name]
    assert (stats.delivered, stats.dropped, stats.failed) == (len(expected), 0, 0)


def test_subscriber_options() -> None:
    # Only the Keras hook events, none of the bus's own records.
    assert seed_callbacks.CustomCallback.kinds == events.KERAS_EVENTS
    # The two that answer with commands make the bridge wait for them at epoch boundaries.
    assert seed_callbacks.EarlyStoppingAtMinLoss.control is True
    assert seed_callbacks.CustomLearningRateScheduler.control is True
    assert not getattr(seed_callbacks.CustomCallback, "control", False)
    assert not getattr(seed_callbacks.LossAndErrorPrintingCallback, "control", False)


# --- Usage of the logs dict -------------------------------------------------------------


def test_loss_and_error_printing_matches_the_keras_callback() -> None:
    x_train, y_train = make_data(1000, seed=1)
    x_test, y_test = make_data(1000, seed=2)
    fit = dict(x=x_train, y=y_train, batch_size=128, epochs=2)
    evaluate = dict(x=x_test, y=y_test, batch_size=128)

    k = keras_run({"printer": lambda f: KerasLossAndErrorPrintingCallback(f)}, fit, evaluate)
    b = bus_run({"printer": lambda f: seed_callbacks.LossAndErrorPrintingCallback(file=f)}, fit, evaluate)

    # The guide's shape: 8 batches and an epoch line, twice; then 8 evaluation batches.
    lines = k.printed["printer"]
    assert len(lines) == 2 * (8 + 1) + 8
    assert lines[0].startswith("Up to batch 0, the average loss is")
    assert lines[8].startswith("The average loss for epoch 0 is")
    assert lines[17].startswith("The average loss for epoch 1 is")
    assert lines[-1].startswith("Up to batch 7, the average loss is")
    assert b.printed == k.printed
    assert b.epochs == k.epochs == 2
    assert_same_weights(b.weights, k.weights)
    assert b.journal is not None and b.journal.applied() == []


# --- Early stopping at minimum loss ---------------------------------------------------------


def test_early_stopping_at_min_loss_matches_the_keras_callback() -> None:
    epochs, steps, batch_size = 30, 5, 64
    # Enough samples for every step of every epoch: Keras 3 warns and stops when input runs out.
    x, y = make_data(epochs * steps * batch_size, seed=3)
    fit = dict(x=x, y=y, batch_size=batch_size, steps_per_epoch=steps, epochs=epochs)

    k = keras_run(
        {
            "printer": lambda f: KerasLossAndErrorPrintingCallback(f),
            "early": lambda f: KerasEarlyStoppingAtMinLoss(file=f),
        },
        fit,
    )
    b = bus_run(
        {
            "printer": lambda f: seed_callbacks.LossAndErrorPrintingCallback(file=f),
            "early": lambda f: seed_callbacks.EarlyStoppingAtMinLoss(file=f),
        },
        fit,
    )

    # It stopped early, at the same epoch, and said so in the same words.
    assert 1 < k.epochs < epochs
    assert b.epochs == k.epochs
    assert k.printed["early"] == [
        "Restoring model weights from the end of the best epoch.",
        "Epoch %05d: early stopping" % k.epochs,
    ]
    assert b.printed == k.printed
    assert len(k.printed["printer"]) == k.epochs * (steps + 1)

    # The weights of the best epoch were restored, in both runs, and they agree.
    best = int(np.argmin(k.losses))
    assert best < k.epochs - 1
    for run in (k, b):
        assert weights_equal(run.weights, run.weights_at_epoch_end[best])
        assert not weights_equal(run.weights, run.weights_at_epoch_end[-1])
    assert_same_weights(b.weights, k.weights)

    # The commands: one snapshot per new minimum, then stop and restore, all applied.
    new_minima = sum(1 for i, loss in enumerate(k.losses) if loss < min(k.losses[:i], default=math.inf))
    assert b.journal is not None
    assert b.journal.applied() == [SnapshotWeights] * new_minima + [StopTraining, RestoreWeights]
    assert list(b.bridge.snapshots) == ["EarlyStoppingAtMinLoss/best"]


def test_early_stopping_patience_waits_for_more_epochs() -> None:
    epochs, steps, batch_size = 30, 5, 64
    x, y = make_data(epochs * steps * batch_size, seed=3)
    fit = dict(x=x, y=y, batch_size=batch_size, steps_per_epoch=steps, epochs=epochs)
    stopped = {}
    for patience in (0, 2):
        k = keras_run({"early": lambda f, p=patience: KerasEarlyStoppingAtMinLoss(p, file=f)}, fit)
        b = bus_run({"early": lambda f, p=patience: seed_callbacks.EarlyStoppingAtMinLoss(p, file=f)}, fit)
        assert b.printed == k.printed
        assert b.epochs == k.epochs
        assert_same_weights(b.weights, k.weights)
        stopped[patience] = b.epochs
    assert stopped[0] < stopped[2]


# --- Learning rate scheduling -----------------------------------------------------------------


def test_learning_rate_schedule_of_the_guide() -> None:
    rates = [0.1]
    for epoch in range(15):
        rates.append(seed_callbacks.lr_schedule(epoch, rates[-1]))
    assert rates[1:] == [0.1] * 3 + [0.05] * 3 + [0.01] * 3 + [0.005] * 3 + [0.001] * 3
    assert seed_callbacks.LR_SCHEDULE == [(3, 0.05), (6, 0.01), (9, 0.005), (12, 0.001)]


def test_custom_learning_rate_scheduler_matches_the_keras_callback() -> None:
    epochs, steps, batch_size = 15, 5, 64
    x, y = make_data(epochs * steps * batch_size, seed=4)
    fit = dict(x=x, y=y, batch_size=batch_size, steps_per_epoch=steps, epochs=epochs)

    k = keras_run(
        {
            "printer": lambda f: KerasLossAndErrorPrintingCallback(f),
            "scheduler": lambda f: KerasCustomLearningRateScheduler(seed_callbacks.lr_schedule, file=f),
        },
        fit,
    )
    b = bus_run(
        {
            "printer": lambda f: seed_callbacks.LossAndErrorPrintingCallback(file=f),
            "scheduler": lambda f: seed_callbacks.CustomLearningRateScheduler(seed_callbacks.lr_schedule, file=f),
        },
        fit,
    )

    assert b.epochs == k.epochs == epochs
    expected_rates = [0.1] * 3 + [0.05] * 3 + [0.01] * 3 + [0.005] * 3 + [0.001] * 3
    np.testing.assert_allclose(k.learning_rates, expected_rates, rtol=1e-6)
    assert b.learning_rates == k.learning_rates
    assert len(set(b.learning_rates)) == 5  # the schedule did change the rate

    scheduler_lines = k.printed["scheduler"]
    assert scheduler_lines[:2] == ["", "Epoch 00000: Learning rate is 0.1000."]
    assert scheduler_lines[-1] == "Epoch 00014: Learning rate is 0.0010."
    assert b.printed == k.printed
    assert_same_weights(b.weights, k.weights)

    assert b.journal is not None
    assert b.journal.applied() == [SetLearningRate] * epochs


# --- the guide, run as a script ------------------------------------------------------------------


def test_guide_script_runs_every_scenario(capsys: pytest.CaptureFixture[str]) -> None:
    from eventbus.examples import seed_guide

    seed_guide.main()
    out = capsys.readouterr().out.splitlines()

    # fit splits the 1000 training digits in half, 4 batches of 128 each, as MNIST in the guide.
    start = out.index("Starting training; got log keys: []")
    assert out[start : start + 22] == TRANSCRIPT.read_text().splitlines()[:22]
    assert out.count("Stop predicting; got log keys: []") == 1
    assert sum(line.startswith("The average loss for epoch ") for line in out) > 2 + 15
    assert "Restoring model weights from the end of the best epoch." in out
    assert any(line.endswith(": early stopping") for line in out)
    assert out[-7] == "Epoch 00014: Learning rate is 0.0010."
