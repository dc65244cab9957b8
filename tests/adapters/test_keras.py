"""The Keras bridge: events equal hook calls, commands apply on the training
thread, and nothing that goes wrong outside training stops it."""

from __future__ import annotations

import functools
import math
import threading
from typing import Any

import anyio
import keras
import numpy as np
import pytest
from kerasfit import FIT, regression_data, regression_model

from eventbus import BusClosedError, BusNotRunningError, EventBus, EventBusWarning, LoopThreadError, events
from eventbus.adapters.keras import KerasBridge
from eventbus.commands import RestoreWeights, SetLearningRate, SnapshotWeights, StopTraining
from eventbus.testing import Recorder


class HookRecorder(keras.callbacks.Callback):  # type: ignore[misc]
    """A plain Keras callback recording every hook call, for comparison."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, int | None, dict[str, Any]]] = []

    def _record(self, hook: str, index: int | None, logs: dict[str, Any] | None) -> None:
        logs = dict(logs or {})
        if "outputs" in logs:
            logs["outputs"] = len(logs["outputs"])
        self.calls.append((hook, index, logs))

    def __getattribute__(self, name: str) -> Any:
        if name.startswith("on_") and name.removeprefix("on_") in _HOOKS:
            kind = name.removeprefix("on_")
            if kind in _INDEXED:
                return lambda index, logs=None: self._record(kind, index, logs)
            return lambda logs=None: self._record(kind, None, logs)
        return super().__getattribute__(name)


_HOOKS = {cls.__struct_config__.tag for cls in events.KERAS_EVENTS}
_INDEXED = {tag for tag in _HOOKS if "batch" in tag or "epoch" in tag}


def as_calls(recorded: list[events.Event]) -> list[tuple[str, int | None, dict[str, Any]]]:
    calls = []
    for event in recorded:
        if type(event) not in events.KERAS_EVENTS:
            continue
        index = getattr(event, "batch", getattr(event, "epoch", None))
        if isinstance(event, events.PredictBatchEnd):
            logs: dict[str, Any] = {"outputs": event.output_size}
        else:
            logs = dict(event.logs)  # type: ignore[attr-defined]
        calls.append((event.kind, index, logs))
    return calls


def test_events_equal_the_hook_calls_a_keras_callback_sees() -> None:
    x, y = regression_data(100)
    model = regression_model()
    hooks = HookRecorder()
    recorder = Recorder(lossless=True)
    with EventBus() as bus:
        bus.subscribe(recorder)
        bridge = KerasBridge(bus)
        model.fit(x, y, epochs=2, batch_size=32, validation_split=0.3, verbose=0, callbacks=[hooks, bridge])
        model.evaluate(x, y, batch_size=40, verbose=0, callbacks=[hooks, bridge])
        model.predict(x, batch_size=64, verbose=0, callbacks=[hooks, bridge])
    assert as_calls(recorder.events) == hooks.calls
    assert len(hooks.calls) == 2 + 2 * (2 + 3 * 2 + 2 + 1 * 2) + (2 + 3 * 2) + (2 + 2 * 2)
    assert [e.seq for e in recorder.events] == list(range(len(recorder.events)))


def test_runs_tell_validation_from_a_standalone_evaluate() -> None:
    x, y = regression_data(64)
    model = regression_model()
    recorder = Recorder(lossless=True)
    with EventBus() as bus:
        bus.subscribe(recorder)
        bridge = KerasBridge(bus)
        model.fit(x, y, epochs=1, batch_size=32, validation_split=0.5, verbose=0, callbacks=[bridge])
        model.evaluate(x, y, verbose=0, callbacks=[bridge])
        model.predict(x, verbose=0, callbacks=[bridge])
    fit_run = recorder.events[0].run
    tests = recorder.of(events.TestBegin, events.TestBatchBegin, events.TestBatchEnd, events.TestEnd)
    validation = [e for e in tests if e.validation]  # type: ignore[attr-defined]
    standalone = [e for e in tests if not e.validation]  # type: ignore[attr-defined]
    assert validation and standalone
    assert {e.run for e in validation} == {fit_run}
    assert fit_run.startswith("fit-")
    assert len({e.run for e in standalone}) == 1 and standalone[0].run.startswith("evaluate-")
    assert recorder.of(events.PredictBegin)[0].run.startswith("predict-")


def test_logs_are_copied_at_the_hook() -> None:
    """Keras's LearningRateScheduler adds 'learning_rate' to the epoch logs after our hook."""
    recorder = Recorder(kinds=[events.EpochEnd])
    with EventBus() as bus:
        bus.subscribe(recorder)
        history = regression_model().fit(
            *regression_data(64),
            epochs=2,
            verbose=0,
            callbacks=[KerasBridge(bus), keras.callbacks.LearningRateScheduler(lambda e, lr: lr)],
        )
    assert "learning_rate" in history.history
    assert all("learning_rate" not in e.logs for e in recorder.events)  # type: ignore[attr-defined]


def test_epoch_events_carry_the_learning_rate() -> None:
    recorder = Recorder(kinds=[events.TrainBegin, events.EpochBegin, events.EpochEnd])
    with EventBus() as bus:
        bus.subscribe(recorder)
        regression_model(learning_rate=0.25).fit(
            *regression_data(64), epochs=2, verbose=0, callbacks=[KerasBridge(bus)]
        )
    assert [e.learning_rate for e in recorder.events] == [0.25] * 5  # type: ignore[attr-defined]


def test_predict_events_carry_the_output_size_and_outputs_on_request() -> None:
    x, _ = regression_data(100)
    model = regression_model()
    plain, full = Recorder(kinds=[events.PredictBatchEnd]), Recorder(kinds=[events.PredictBatchEnd])
    with EventBus() as bus:
        subscription = bus.subscribe(plain)
        model.predict(x, batch_size=64, verbose=0, callbacks=[KerasBridge(bus)])
        subscription.unsubscribe()
        bus.subscribe(full)
        predictions = model.predict(x, batch_size=64, verbose=0, callbacks=[KerasBridge(bus, predict_outputs=True)])
    assert [(e.output_size, e.outputs) for e in plain.events] == [(64, None), (36, None)]  # type: ignore[attr-defined]
    outputs = [row for e in full.events for row in e.outputs]  # type: ignore[attr-defined]
    np.testing.assert_allclose(np.array(outputs), predictions)


def test_nan_and_inf_metrics_reach_subscribers_as_they_are() -> None:
    x, y = regression_data(64)
    y[:32] = np.inf
    recorder = Recorder(kinds=[events.TrainBatchEnd])
    with EventBus() as bus:
        bus.subscribe(recorder)
        regression_model().fit(x, y, epochs=1, batch_size=32, shuffle=False, verbose=0, callbacks=[KerasBridge(bus)])
    losses = [e.logs["loss"] for e in recorder.events]  # type: ignore[attr-defined]
    assert math.isinf(losses[0])
    assert math.isnan(losses[1]) or math.isinf(losses[1])


def test_commands_apply_on_the_training_thread() -> None:
    x, y = regression_data(64)
    model = regression_model()
    seen_threads: set[int] = set()
    original_set_weights = model.set_weights

    def spy(weights: Any) -> None:
        seen_threads.add(threading.get_ident())
        original_set_weights(weights)

    model.set_weights = spy

    async def controller(event: events.Event) -> Any:
        if isinstance(event, events.EpochEnd) and event.epoch == 0:
            return SnapshotWeights(tag="first")
        if isinstance(event, events.TrainEnd):
            return RestoreWeights(tag="first")
        return None

    recorder = Recorder(kinds=[events.EpochEnd])
    with EventBus() as bus:
        bus.subscribe(controller, kinds=[events.EpochEnd, events.TrainEnd], control=True)
        bus.subscribe(recorder)
        bridge = KerasBridge(bus)
        model.fit(x, y, epochs=3, verbose=0, callbacks=[bridge])
    assert seen_threads == {threading.get_ident()}  # plain fit: the caller's thread
    for got, expected in zip(model.get_weights(), bridge.snapshots["first"], strict=True):
        np.testing.assert_array_equal(got, expected)


def test_a_stop_at_epoch_end_stops_where_keras_would() -> None:
    async def stop_after_two(event: events.EpochEnd) -> Any:
        return StopTraining(reason="two is enough") if event.epoch == 1 else None

    with EventBus() as bus:
        bus.subscribe(stop_after_two, kinds=[events.EpochEnd], control=True)
        history = regression_model().fit(*regression_data(64), epochs=10, verbose=0, callbacks=[KerasBridge(bus)])
    assert len(history.history["loss"]) == 2


def test_commands_that_cannot_be_applied_are_reported_and_training_goes_on() -> None:
    schedule = keras.optimizers.schedules.ExponentialDecay(0.1, decay_steps=10, decay_rate=0.9)
    answers = iter(
        [SetLearningRate(learning_rate=math.nan), SetLearningRate(learning_rate=-1.0), RestoreWeights(tag="nope")]
    )

    async def bad(event: events.Event) -> Any:
        return next(answers, None)

    recorder = Recorder(kinds=[events.CommandRejected, events.CommandApplied])
    with EventBus() as bus:
        bus.subscribe(bad, kinds=[events.EpochBegin], control=True)
        bus.subscribe(recorder)
        history = regression_model().fit(*regression_data(64), epochs=4, verbose=0, callbacks=[KerasBridge(bus)])
    assert len(history.history["loss"]) == 4
    reasons = [e.reason for e in recorder.events]  # type: ignore[attr-defined]
    assert reasons == [
        "learning rate must be a finite number >= 0, got nan",
        "learning rate must be a finite number >= 0, got -1.0",
        "no weights snapshot tagged 'nope' (snapshots: none)",
    ]

    async def set_rate(event: events.Event) -> Any:
        return SetLearningRate(learning_rate=0.01)

    recorder = Recorder(kinds=[events.CommandRejected])
    with EventBus() as bus:
        bus.subscribe(set_rate, kinds=[events.EpochBegin], control=True)
        bus.subscribe(recorder)
        regression_model(learning_rate=schedule).fit(
            *regression_data(64), epochs=2, verbose=0, callbacks=[KerasBridge(bus)]
        )
    assert len(recorder.events) == 2
    assert recorder.events[0].reason.startswith(  # type: ignore[attr-defined]
        "the optimizer's learning rate is driven by a schedule and cannot be set"
    )


def test_a_control_subscriber_that_does_not_answer_does_not_stop_training() -> None:
    release = threading.Event()

    async def stuck(event: events.Event) -> None:
        await anyio.to_thread.run_sync(release.wait)

    recorder = Recorder(kinds=[events.BarrierTimedOut])
    with EventBus() as bus:
        bus.subscribe(stuck, kinds=[events.EpochEnd], control=True)
        bus.subscribe(recorder)
        history = regression_model().fit(
            *regression_data(64), epochs=3, verbose=0, callbacks=[KerasBridge(bus, barrier_timeout=0.05)]
        )
        release.set()
    assert len(history.history["loss"]) == 3
    timeouts = recorder.events
    assert len(timeouts) >= 1
    assert timeouts[0].subscribers == ["stuck"]  # type: ignore[attr-defined]
    assert timeouts[0].timeout == 0.05  # type: ignore[attr-defined]


def test_a_failing_subscriber_never_stops_training_unless_asked() -> None:
    async def broken(event: events.Event) -> None:
        raise KeyError("oops")

    with pytest.warns(EventBusWarning, match="broken: failed on"):
        with EventBus() as bus:
            bus.subscribe(broken)
            history = regression_model().fit(*regression_data(64), epochs=3, verbose=0, callbacks=[KerasBridge(bus)])
    assert len(history.history["loss"]) == 3

    with pytest.warns(EventBusWarning, match="broken: failed on"):
        with EventBus() as bus:
            bus.subscribe(broken, kinds=[events.EpochEnd], control=True, on_error="raise")
            with pytest.raises(RuntimeError, match=r"^subscriber broken failed on epoch_end #\d+: KeyError: 'oops'$"):
                regression_model().fit(*regression_data(64), epochs=3, verbose=0, callbacks=[KerasBridge(bus)])


def test_training_without_a_running_bus_is_a_clear_error() -> None:
    bus = EventBus()
    with pytest.raises(BusNotRunningError, match=r"^the bus is not running: start it with `with EventBus\(\) as bus:`"):
        regression_model().fit(*regression_data(32), verbose=0, callbacks=[KerasBridge(bus)])
    with bus:
        pass
    with pytest.raises(BusClosedError, match=r"^the bus is closed"):
        regression_model().fit(*regression_data(32), verbose=0, callbacks=[KerasBridge(bus)])
    with pytest.raises(TypeError, match=r"^KerasBridge needs an EventBus, got None of type NoneType$"):
        KerasBridge(None)  # type: ignore[arg-type]


@pytest.mark.anyio
async def test_fit_on_the_bus_loop_thread_is_an_error_not_a_deadlock(anyio_backend: str) -> None:
    async with EventBus() as bus:
        with pytest.raises(LoopThreadError, match=r"^model\.fit\(\) was called on the event bus's own loop thread"):
            regression_model().fit(*regression_data(32), verbose=0, callbacks=[KerasBridge(bus)])


@pytest.mark.anyio
async def test_async_apps_await_fit_in_a_worker_thread(anyio_backend: str) -> None:
    got: list[int] = []
    history_sub = Recorder(kinds=[events.EpochEnd])

    async def on_epoch_end(event: events.EpochEnd) -> StopTraining | None:
        got.append(event.epoch)
        return StopTraining() if event.epoch == 2 else None

    async with EventBus() as bus:
        bus.subscribe(on_epoch_end, kinds=[events.EpochEnd], control=True)
        bus.subscribe(history_sub)
        bridge = KerasBridge(bus)
        model = regression_model()
        history = await bridge.fit(model, *regression_data(64), epochs=10, verbose=0)
        loss = await bridge.evaluate(model, *regression_data(64), verbose=0)
        predictions = await bridge.predict(model, regression_data(64)[0], verbose=0)
    assert got == [0, 1, 2]
    assert len(history.history["loss"]) == 3
    assert isinstance(loss, list) and predictions.shape == (64, 1)


def test_one_bridge_serves_many_runs() -> None:
    recorder = Recorder(kinds=[events.TrainBegin])
    with EventBus() as bus:
        bus.subscribe(recorder)
        bridge = KerasBridge(bus)
        model = regression_model()
        for _ in range(3):
            model.fit(*regression_data(32), epochs=1, verbose=0, callbacks=[bridge])
    assert len({e.run for e in recorder.events}) == 3


def test_closing_the_bus_mid_fit_loses_nothing_silently() -> None:
    bus = EventBus()
    bus.start()

    class CloseAfterFirstEpoch(keras.callbacks.Callback):  # type: ignore[misc]
        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            if epoch == 0:
                bus.close()

    bridge = KerasBridge(bus)
    with pytest.warns(
        RuntimeWarning, match=r"the event bus closed during fit; epoch_begin and later events are not delivered"
    ):
        history = regression_model().fit(
            *regression_data(64), epochs=2, batch_size=32, verbose=0, callbacks=[bridge, CloseAfterFirstEpoch()]
        )
    assert len(history.history["loss"]) == 2
    assert bridge.unpublished == 1 + 2 * 2 + 1 + 1  # epoch 1: begin, 2 batches x2, end; train end


def test_fit_params_are_unchanged_by_the_bridge() -> None:
    """The bridge is an ordinary callback: Keras's own results are the same with it."""
    x, y = regression_data(64)
    plain = regression_model().fit(x, y, **{**FIT, "epochs": 3})
    with EventBus() as bus:
        bridged = regression_model().fit(x, y, callbacks=[KerasBridge(bus)], **{**FIT, "epochs": 3})
    assert plain.history == bridged.history


def test_only_train_and_epoch_boundaries_wait_for_control_subscribers() -> None:
    waited: list[str] = []

    async def controller(event: events.Event) -> None:
        return None

    with EventBus() as bus:
        bus.subscribe(controller, control=True)
        original = bus.publish_with_barrier

        def spy(event: events.Event) -> Any:
            waited.append(event.kind)
            return original(event)

        bus.publish_with_barrier = spy  # type: ignore[method-assign]
        model = regression_model()
        bridge = KerasBridge(bus)
        model.fit(*regression_data(64), epochs=2, batch_size=32, validation_split=0.25, verbose=0, callbacks=[bridge])
        model.evaluate(*regression_data(64), verbose=0, callbacks=[bridge])
        model.predict(regression_data(64)[0], verbose=0, callbacks=[bridge])
    assert waited == ["train_begin"] + ["epoch_begin", "epoch_end"] * 2 + ["train_end"]


@pytest.mark.anyio
async def test_streaming_events_while_fit_runs_in_a_task(anyio_backend: str) -> None:
    x, y = regression_data(64)
    losses: list[float] = []
    async with EventBus() as bus, anyio.create_task_group() as tg:
        stream = bus.stream(events.EpochEnd, events.TrainEnd)
        tg.start_soon(functools.partial(KerasBridge(bus).fit, regression_model(), x, y, epochs=3, verbose=0))
        async for event in stream:
            if isinstance(event, events.TrainEnd):
                break
            losses.append(event.logs["loss"])  # type: ignore[attr-defined]
    assert len(losses) == 3


def _bridged_run(deferred: bool, extra: list[Any]) -> tuple[list[tuple[str, int | None, dict[str, Any]]], Any]:
    x, y = regression_data(100)
    model = regression_model()
    recorder = Recorder(lossless=True)
    with EventBus() as bus:
        bus.subscribe(recorder)
        if deferred:
            bridge = KerasBridge(bus, defer_logs=True)
            history = model.fit(
                x,
                y,
                epochs=2,
                batch_size=32,
                validation_split=0.3,
                verbose=0,
                callbacks=bridge.callback_list(model, *extra, epochs=2),
            )
            model.evaluate(x, y, batch_size=40, verbose=0, callbacks=bridge.callback_list(model, *extra))
            model.predict(x, batch_size=64, verbose=0, callbacks=bridge.callback_list(model, *extra))
        else:
            bridge = KerasBridge(bus)
            history = model.fit(
                x, y, epochs=2, batch_size=32, validation_split=0.3, verbose=0, callbacks=[bridge, *extra]
            )
            model.evaluate(x, y, batch_size=40, verbose=0, callbacks=[bridge, *extra])
            model.predict(x, batch_size=64, verbose=0, callbacks=[bridge, *extra])
    return as_calls(recorder.events), history


def test_deferred_logs_produce_the_same_events_as_the_default_mode() -> None:
    expected, expected_history = _bridged_run(deferred=False, extra=[])
    got, history = _bridged_run(deferred=True, extra=[])
    assert got == expected
    assert history.history == expected_history.history
    assert all(type(v) is float for _, _, logs in got for k, v in logs.items() if k != "outputs")


def test_deferred_logs_still_give_other_callbacks_floats() -> None:
    plain, deferred = HookRecorder(), HookRecorder()
    _bridged_run(deferred=False, extra=[plain])
    got, _ = _bridged_run(deferred=True, extra=[deferred])
    assert deferred.calls == plain.calls
    assert got == [c for c in plain.calls]


def test_deferred_logs_reach_the_bus_unread() -> None:
    """The bridge hands the tensors on: the loop, not the training thread, reads them."""
    seen: list[Any] = []
    x, y = regression_data(64)
    model = regression_model()
    with EventBus() as bus:
        bridge = KerasBridge(bus, defer_logs=True)
        original = bus.publish_raw_logs

        def spy(event: events.Event) -> Any:
            seen.append((threading.get_ident(), type(event.logs["loss"]) if event.logs else None))  # type: ignore[attr-defined]
            return original(event)

        bridge._publish_batch = spy
        model.fit(x, y, epochs=1, batch_size=32, verbose=0, callbacks=bridge.callback_list(model, epochs=1))
    ends = [t for _, t in seen if t is not None]
    assert ends and all(t is not float for t in ends)  # tensors, not floats
