"""Commands and events on the wire: tags, round trips, coercion."""

from __future__ import annotations

import math

import msgspec
import numpy as np
import pytest

from eventbus import commands, events


def test_set_learning_rate_accepts_numpy_scalars_as_plain_floats() -> None:
    command = commands.SetLearningRate(learning_rate=np.float32(0.05))  # type: ignore[arg-type]
    assert type(command.learning_rate) is float
    assert command.learning_rate == pytest.approx(0.05)
    assert msgspec.json.encode(command) == b'{"kind":"set_learning_rate","learning_rate":0.05000000074505806}'


@pytest.mark.parametrize("protocol", [msgspec.msgpack, msgspec.json])
def test_every_event_round_trips_through_the_tagged_union(protocol: object) -> None:
    samples: list[events.Event] = [
        events.TrainBegin(run="r", params={"epochs": 3, "steps": 2}, learning_rate=0.1),
        events.EpochEnd(run="r", seq=7, time=1.5, epoch=2, logs={"loss": 0.25}, metric_directions={"acc": "up"}),
        events.TestBatchEnd(run="r", batch=0, logs={"loss": 1.0}, validation=True),
        events.PredictBatchEnd(run="r", batch=1, output_size=32, outputs=[[1.0], [2.0]]),
        events.CommandIssued(run="r", command=commands.RestoreWeights(tag="best"), subscriber="s", cause=3),
        events.CommandRejected(run="r", command=commands.StopTraining(), reason="ended", issued=4),
        events.BarrierTimedOut(run="r", cause=5, subscribers=["slow"], timeout=1.0),
    ]
    for event in samples:
        decoded = protocol.decode(protocol.encode(event), type=events.AnyEvent)  # type: ignore[attr-defined]
        assert decoded == event
        assert decoded.kind == event.kind


def test_non_finite_metrics_survive_msgpack() -> None:
    event = events.EpochEnd(run="r", epoch=0, logs={"loss": math.nan, "val_loss": math.inf})
    decoded = msgspec.msgpack.decode(msgspec.msgpack.encode(event), type=events.AnyEvent)
    assert math.isnan(decoded.logs["loss"]) and decoded.logs["val_loss"] == math.inf


def test_tags_are_the_keras_hook_names_without_on() -> None:
    tags = sorted(cls.__struct_config__.tag for cls in events.KERAS_EVENTS)
    hooks = [f"on_{tag}" for tag in tags]
    import keras

    for hook in hooks:
        assert callable(getattr(keras.callbacks.Callback, hook)), hook
    assert len(tags) == 14


def test_old_logs_decode_when_events_gain_fields() -> None:
    """An EpochEnd written before learning_rate and metric_directions existed."""
    old = b'{"kind":"epoch_end","run":"r","seq":1,"time":2.0,"epoch":0,"logs":{"loss":1.0}}'
    event = msgspec.json.decode(old, type=events.AnyEvent)
    assert event == events.EpochEnd(run="r", seq=1, time=2.0, epoch=0, logs={"loss": 1.0})
    assert event.learning_rate is None
