"""Replay and what-if, from a real run's log."""

from __future__ import annotations

from pathlib import Path

import keras
import pytest
from kerasfit import fit_with_bus, fit_with_keras, regression_data, regression_model

from eventbus import commands, subscribers
from eventbus.log import EventLog
from eventbus.replay import replay


@pytest.fixture(scope="module")
def logged_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, list[float]]]:
    """A 20-epoch run with no early stopping, logged."""
    path = tmp_path_factory.mktemp("runs") / "run.log"
    history = subscribers.History()
    make = lambda: regression_model(learning_rate=0.2)  # a noisy run that plateaus
    fit_with_bus(make, regression_data(), [EventLog(path), history], epochs=20)
    return path, history.history


async def test_history_rebuilt_from_the_log_equals_the_live_one(
    logged_run: tuple[Path, dict[str, list[float]]],
) -> None:
    path, live = logged_run
    rebuilt = subscribers.History()
    result = await replay(path, rebuilt)
    assert rebuilt.history == live
    assert result.commands == []
    assert result.events > 20 * 2


@pytest.mark.parametrize("patience", [0, 1, 2, 5])
async def test_what_if_early_stopping_matches_a_real_run_with_that_patience(
    logged_run: tuple[Path, dict[str, list[float]]], patience: int
) -> None:
    """From the log alone: the epoch a patience would have stopped at, and its best epoch,
    are those of Keras's own EarlyStopping trained with that patience."""
    path, _ = logged_run
    what_if = subscribers.EarlyStopping(patience=patience, restore_best_weights=True)
    result = await replay(path, what_if)
    twin = keras.callbacks.EarlyStopping(patience=patience, restore_best_weights=True)
    real = fit_with_keras(lambda: regression_model(learning_rate=0.2), regression_data(), [twin], epochs=20)
    assert (what_if.stopped_epoch, what_if.best_epoch) == (twin.stopped_epoch, twin.best_epoch)
    if twin.stopped_epoch:
        (run,) = result.stopped_at
        assert result.stopped_at[run] == twin.stopped_epoch == real.epochs - 1
    stops = [c for c in result.commands if isinstance(c.command, commands.StopTraining)]
    assert len(stops) == (1 if twin.stopped_epoch else 0)
    assert result.commands[-1].command == commands.RestoreWeights(tag="early_stopping/val_loss")


async def test_a_stop_skips_the_rest_of_the_run_like_fit_would(logged_run: tuple[Path, dict[str, list[float]]]) -> None:
    path, _ = logged_run
    stopper = subscribers.EarlyStopping(patience=0)
    seen = subscribers.History()
    result = await replay(path, stopper, seen)
    assert seen.epoch == list(range(stopper.stopped_epoch + 1))
    assert result.stopped_at == {next(iter(result.stopped_at)): stopper.stopped_epoch}
