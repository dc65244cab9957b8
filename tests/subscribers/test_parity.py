"""Each built-in subscriber beside its Keras twin, on the same seeded model and data.

Compared: the epoch training stopped at, the learning rate of every epoch, and
the final weights, exactly.
"""

from __future__ import annotations

import math
from typing import Any

import keras
import numpy as np
import pytest
from kerasfit import (
    Run,
    assert_same_weights,
    classification_data,
    classification_model,
    fit_with_bus,
    fit_with_keras,
    regression_data,
    regression_model,
)

from eventbus import events, subscribers

pytestmark = pytest.mark.filterwarnings("ignore:.*not available.*:UserWarning")


def learning_rates(run: Run) -> list[float]:
    return [e.learning_rate for e in run.of(events.EpochEnd)]


EARLY_STOPPING_CASES: list[dict[str, Any]] = [
    {"monitor": "val_loss", "patience": 0},
    {"monitor": "val_loss", "patience": 2, "restore_best_weights": True},
    {"monitor": "loss", "patience": 1, "min_delta": 0.05},
    {"monitor": "val_loss", "patience": 2, "baseline": 0.5, "restore_best_weights": True},
    {"monitor": "val_loss", "patience": 1, "start_from_epoch": 4, "restore_best_weights": True},
    {"monitor": "val_mean_absolute_error", "patience": 1, "mode": "max"},
]


@pytest.mark.parametrize("kwargs", EARLY_STOPPING_CASES, ids=lambda k: ",".join(f"{a}={b}" for a, b in k.items()))
def test_early_stopping_matches_keras(kwargs: dict[str, Any]) -> None:
    data = regression_data()
    make = lambda: regression_model(learning_rate=0.2)  # noqa: E731 - a noisy run that plateaus
    twin = keras.callbacks.EarlyStopping(**kwargs)
    ours = subscribers.EarlyStopping(**kwargs)
    expected = fit_with_keras(make, data, [twin], epochs=20)
    got = fit_with_bus(make, data, [ours], epochs=20)
    assert got.epochs == expected.epochs
    assert got.history == expected.history
    assert (ours.stopped_epoch, ours.best_epoch, ours.wait) == (twin.stopped_epoch, twin.best_epoch, twin.wait)
    assert_same_weights(got.weights, expected.weights)


def test_early_stopping_cases_do_stop_early_and_restore() -> None:
    """Guard the parity cases above against passing vacuously."""
    data = regression_data()
    make = lambda: regression_model(learning_rate=0.2)  # noqa: E731
    twin = keras.callbacks.EarlyStopping(**EARLY_STOPPING_CASES[1])
    run = fit_with_keras(make, data, [twin], epochs=20)
    assert 0 < twin.stopped_epoch < 19
    assert twin.best_epoch < twin.stopped_epoch  # so restoring changes the weights
    ours = subscribers.EarlyStopping(**EARLY_STOPPING_CASES[1])
    got = fit_with_bus(make, data, [ours], epochs=20)
    applied = [e.command.kind for e in got.of(events.CommandApplied)]
    assert applied.count("stop_training") == 1
    assert applied[-1] == "restore_weights"
    assert run.epochs == got.epochs


def test_early_stopping_auto_mode_reads_metric_direction_from_the_stream() -> None:
    data = classification_data()
    kwargs = {"monitor": "val_accuracy", "patience": 1}
    twin = keras.callbacks.EarlyStopping(**kwargs)
    ours = subscribers.EarlyStopping(**kwargs)
    expected = fit_with_keras(lambda: classification_model(learning_rate=0.1), data, [twin], epochs=20)
    got = fit_with_bus(lambda: classification_model(learning_rate=0.1), data, [ours], epochs=20)
    assert got.of(events.EpochEnd)[0].metric_directions == {"accuracy": "up"}
    assert expected.epochs < 20
    assert got.epochs == expected.epochs
    assert_same_weights(got.weights, expected.weights)


def schedule(epoch: int, lr: float) -> float:
    return lr if epoch < 3 else lr * 0.5


def test_learning_rate_scheduler_matches_keras() -> None:
    data = regression_data()
    twin = keras.callbacks.LearningRateScheduler(schedule)
    ours = subscribers.LearningRateScheduler(schedule)
    expected = fit_with_keras(regression_model, data, [twin], epochs=8)
    got = fit_with_bus(regression_model, data, [ours], epochs=8)
    assert learning_rates(got) == expected.history["learning_rate"]
    assert learning_rates(got)[0] > learning_rates(got)[-1]
    assert_same_weights(got.weights, expected.weights)


def test_learning_rate_scheduler_old_single_argument_api() -> None:
    data = regression_data()
    rates = lambda epoch: 0.1 / (epoch + 1)  # noqa: E731
    expected = fit_with_keras(regression_model, data, [keras.callbacks.LearningRateScheduler(rates)], epochs=4)
    got = fit_with_bus(regression_model, data, [subscribers.LearningRateScheduler(rates)], epochs=4)
    assert learning_rates(got) == expected.history["learning_rate"]
    assert_same_weights(got.weights, expected.weights)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"monitor": "val_loss", "factor": 0.5, "patience": 1},
        {"monitor": "loss", "factor": 0.2, "patience": 0, "cooldown": 2, "min_lr": 0.004},
        {"monitor": "val_mean_absolute_error", "factor": 0.5, "patience": 1, "min_delta": 0.1},
    ],
    ids=["patience", "cooldown-min_lr", "min_delta"],
)
def test_reduce_lr_on_plateau_matches_keras(kwargs: dict[str, Any]) -> None:
    data = regression_data()
    make = lambda: regression_model(learning_rate=0.2)  # noqa: E731
    twin = keras.callbacks.ReduceLROnPlateau(**kwargs)
    ours = subscribers.ReduceLROnPlateau(**kwargs)
    expected = fit_with_keras(make, data, [twin], epochs=12)
    got = fit_with_bus(make, data, [ours], epochs=12)
    assert learning_rates(got) == expected.history["learning_rate"]
    assert len(set(learning_rates(got))) > 1  # the rate did change
    assert (ours.wait, ours.cooldown_counter, ours.best) == (twin.wait, twin.cooldown_counter, twin.best)
    assert_same_weights(got.weights, expected.weights)


def nan_data() -> tuple[np.ndarray, np.ndarray]:
    x, y = regression_data()
    y[70] = np.nan  # batch 2 of epoch 0 (batch size 32, no shuffling)
    return x, y


def test_terminate_on_nan_stops_in_the_same_epoch_as_keras(capsys: pytest.CaptureFixture[str]) -> None:
    expected = fit_with_keras(regression_model, nan_data(), [keras.callbacks.TerminateOnNaN()], validation_split=0)
    keras_out = capsys.readouterr().out
    got = fit_with_bus(regression_model, nan_data(), [subscribers.TerminateOnNaN()], validation_split=0)
    assert keras_out == "Batch 2: Invalid loss, terminating training\n"
    assert capsys.readouterr().out == keras_out
    assert got.epochs == expected.epochs == 1
    assert math.isnan(got.history["loss"][0]) and math.isnan(expected.history["loss"][0])
    assert_same_weights(got.weights, expected.weights)  # NaN everywhere, in both
    assert all(np.isnan(w).all() for w in got.weights)
    # Batch events are not waited on: the stop lands at a later batch hook, or at
    # the latest at the epoch-end barrier, so the same epoch is the last.
    applied = got.of(events.CommandApplied)
    assert [e.command.kind for e in applied] == ["stop_training"]
    assert applied[0].seq < got.of(events.TrainEnd)[0].seq
    assert [e.batch for e in got.of(events.TrainBatchEnd)][-1] >= 2


def test_terminate_on_nan_can_fail_training() -> None:
    with pytest.raises(
        RuntimeError,
        match=r"^NaN or Inf loss encountered at batch 2\. Loss value: nan\. Terminating training immediately\.$",
    ):
        fit_with_bus(regression_model, nan_data(), [subscribers.TerminateOnNaN(raise_error=True)], validation_split=0)


def test_history_equals_keras_history_of_the_same_fit() -> None:
    history = subscribers.History()
    run = fit_with_bus(regression_model, regression_data(), [history], epochs=3)
    assert history.history == run.history
    assert history.epoch == [0, 1, 2]
    assert history.params["epochs"] == 3
    assert set(run.history) == {"loss", "mean_absolute_error", "val_loss", "val_mean_absolute_error"}


def test_subscribers_reset_between_fits_like_keras() -> None:
    data = regression_data()
    make = lambda: regression_model(learning_rate=0.2)  # noqa: E731
    twin = keras.callbacks.EarlyStopping(patience=0)
    ours = subscribers.EarlyStopping(patience=0)
    first = fit_with_bus(make, data, [ours], epochs=20)
    second = fit_with_bus(make, data, [ours], epochs=20)
    expected = fit_with_keras(make, data, [twin], epochs=20)
    assert first.epochs == second.epochs == expected.epochs
