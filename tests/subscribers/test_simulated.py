"""Subscribers are pure functions of the stream: decisions tested with no model at all."""

from __future__ import annotations

import pytest

from eventbus import commands, subscribers
from eventbus.testing import simulate_fit

LOSSES = [1.0, 0.8, 0.7, 0.75, 0.72, 0.71, 0.69, 0.74, 0.76, 0.78]


def epochs(values: list[float], key: str = "val_loss") -> list[dict[str, float]]:
    return [{"loss": v, key: v} for v in values]


@pytest.mark.parametrize(("patience", "stopped", "best"), [(0, 3, 2), (1, 3, 2), (3, 5, 2), (10, None, 6)])
async def test_early_stopping_what_if(patience: int, stopped: int | None, best: int) -> None:
    stopper = subscribers.EarlyStopping(patience=patience, restore_best_weights=True)
    result = await simulate_fit([stopper], epochs(LOSSES))
    assert result.epochs[-1] == (stopped if stopped is not None else len(LOSSES) - 1)
    assert result.stopped is (stopped is not None)
    assert stopper.best_epoch == best
    assert result.weights_epoch == best  # the restore brought back the best epoch's weights
    assert result.commands[-1] == commands.RestoreWeights(tag="early_stopping/val_loss")


async def test_early_stopping_needs_a_direction_it_can_tell() -> None:
    stopper = subscribers.EarlyStopping(monitor="val_f1")
    with pytest.raises(ValueError, match=r"^EarlyStopping received monitor=val_f1, but cannot tell whether"):
        await simulate_fit([stopper], epochs([0.5, 0.6], key="val_f1"))
    up = subscribers.EarlyStopping(monitor="val_f1", patience=0)
    result = await simulate_fit([up], epochs([0.5, 0.6, 0.55, 0.7], key="val_f1"), metric_directions={"f1": "up"})
    assert result.epochs == [0, 1, 2]  # 0.6 was better, 0.55 was not
    assert result.stopped


async def test_float32_ties_are_no_improvement_as_in_keras() -> None:
    stopper = subscribers.EarlyStopping(patience=0)
    # 0.1 and 0.1 + 1e-12 are the same float32: no improvement, so training stops.
    result = await simulate_fit([stopper], epochs([0.1, 0.1 + 1e-12, 0.05]))
    assert result.epochs == [0, 1]


async def test_scheduler_and_plateau_compose() -> None:
    schedule = subscribers.LearningRateScheduler(lambda epoch, lr: 0.1 if epoch == 0 else lr)
    plateau = subscribers.ReduceLROnPlateau(factor=0.5, patience=1, min_lr=0.02)
    result = await simulate_fit([schedule, plateau], epochs([1.0, 1.0, 1.0, 1.0, 1.0, 1.0]))
    assert result.learning_rates == pytest.approx([0.1, 0.1, 0.05, 0.025, 0.02, 0.02], rel=1e-6)


def test_bad_arguments_say_what_to_do() -> None:
    with pytest.raises(ValueError, match=r"^ReduceLROnPlateau does not support a factor >= 1\.0\. Received factor=2$"):
        subscribers.ReduceLROnPlateau(factor=2)
    with pytest.raises(ValueError, match=r"^EarlyStopping: mode must be 'auto', 'min' or 'max', got 'up'$"):
        subscribers.EarlyStopping(mode="up")
    with pytest.raises(TypeError, match=r"^schedule must be a function \(epoch, lr\) -> lr, got 0\.1$"):
        subscribers.LearningRateScheduler(0.1)  # type: ignore[arg-type]


async def test_scheduler_output_must_be_a_float_as_in_keras() -> None:
    with pytest.raises(ValueError, match=r"^The output of the `schedule` function should be a float\. Got: 1$"):
        await simulate_fit([subscribers.LearningRateScheduler(lambda epoch, lr: 1)], epochs([1.0]))
