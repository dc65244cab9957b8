"""The Keras bridge: the one place that touches the model.

:class:`KerasBridge` is an ordinary Keras callback. Per hook, on the training
thread, it builds one event and hands it to the bus; that is all it does for
batch hooks. At train and epoch boundaries it waits (with a timeout) for the
bus's control subscribers, then applies the commands they returned, exactly
where a synchronous Keras callback would have acted.

This is the only module of the package that imports Keras.
"""

from __future__ import annotations

import functools
import math
import threading
import uuid
import warnings
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any, Literal

import anyio
import keras

from eventbus._logs import float32, floats_from
from eventbus.bus import EventBus
from eventbus.commands import (
    Command,
    FailTraining,
    RestoreWeights,
    SetLearningRate,
    SnapshotWeights,
    StopTraining,
)
from eventbus.events import (
    BarrierTimedOut,
    CommandApplied,
    CommandRejected,
    EpochBegin,
    EpochEnd,
    Event,
    PredictBatchBegin,
    PredictBatchEnd,
    PredictBegin,
    PredictEnd,
    TestBatchBegin,
    TestBatchEnd,
    TestBegin,
    TestEnd,
    TrainBatchBegin,
    TrainBatchEnd,
    TrainBegin,
    TrainEnd,
)
from eventbus.exceptions import BusClosedError, LoopThreadError

__all__ = ["KerasBridge"]

Phase = Literal["fit", "evaluate", "predict"]


class _Rejected(Exception):
    """A command that cannot be applied; the reason goes into the event stream."""


class KerasBridge(keras.callbacks.Callback):  # type: ignore[misc]
    """Turn every Keras hook into an event on ``bus``; apply subscribers' commands.

    Put it in any ``callbacks=[...]`` list, beside other Keras callbacks; one
    bridge serves many ``fit``/``evaluate``/``predict`` calls, one at a time.

    Args:
        bus: a running :class:`~eventbus.EventBus`.
        predict_outputs: also copy ``predict`` outputs into
            :class:`~eventbus.events.PredictBatchEnd` (as nested lists). Off by
            default: it costs a device-to-host copy per batch.
        barrier_timeout: seconds to wait for control subscribers at train and
            epoch boundaries; defaults to the bus's ``barrier_timeout``.
        defer_logs: hand batch logs to the bus as the tensors Keras computed,
            for its loop to read: no device-to-host sync per step on the
            training thread. Takes effect with :meth:`callback_list`, since
            Keras converts logs itself before calling a plain callback.
    """

    def __init__(
        self,
        bus: EventBus,
        *,
        predict_outputs: bool = False,
        barrier_timeout: float | None = None,
        defer_logs: bool = False,
    ) -> None:
        super().__init__()
        if not isinstance(bus, EventBus):
            raise TypeError(f"KerasBridge needs an EventBus, got {bus!r} of type {type(bus).__name__}")
        if barrier_timeout is not None and not barrier_timeout > 0:
            raise ValueError(f"barrier_timeout must be > 0 seconds, got {barrier_timeout!r}")
        self.bus = bus
        self.predict_outputs = predict_outputs
        self.barrier_timeout = barrier_timeout if barrier_timeout is not None else bus.barrier_timeout
        self.snapshots: dict[str, list[Any]] = {}
        self.unpublished = 0
        self._publish: Callable[[Event], Event] = bus.publish_nowait
        self.defer_logs = defer_logs
        self._publish_batch: Callable[[Event], Event] = bus.publish_raw_logs if defer_logs else bus.publish_nowait
        self._inbox: deque[tuple[int, Command]] = deque()
        self._run = ""
        self._phase: Phase | None = None
        self._validating = False
        self._owner: int | None = None
        self._directions: dict[str, Literal["up", "down"]] = {}
        self._fresh_rate: float | None = None
        """The learning rate read in the current boundary hook, while commands for it apply."""

    # --- training --------------------------------------------------------------

    def on_train_begin(self, logs: Mapping[str, float] | None = None) -> None:
        self._begin("fit")
        self._directions = _metric_directions(self.model)
        self._barrier(
            TrainBegin(
                run=self._run,
                logs=_copy(logs),
                params=dict(self.params or {}),
                learning_rate=self._learning_rate(),
                metric_directions=_metric_directions(self.model),
            )
        )

    def on_train_end(self, logs: Mapping[str, float] | None = None) -> None:
        try:
            self._barrier(TrainEnd(run=self._run, logs=_copy(logs)))
        finally:
            self._end()

    def on_epoch_begin(self, epoch: int, logs: Mapping[str, float] | None = None) -> None:
        self._barrier(EpochBegin(run=self._run, epoch=epoch, logs=_copy(logs), learning_rate=self._learning_rate()))

    def on_epoch_end(self, epoch: int, logs: Mapping[str, float] | None = None) -> None:
        if not self._directions:  # compiled metrics are built by the first batch
            self._directions = _metric_directions(self.model)
        self._barrier(
            EpochEnd(
                run=self._run,
                epoch=epoch,
                logs=_copy(logs),
                learning_rate=self._learning_rate(),
                metric_directions=self._directions,
            )
        )

    def on_train_batch_begin(self, batch: int, logs: Mapping[str, float] | None = None) -> None:
        self._send_batch(TrainBatchBegin(run=self._run, batch=batch, logs=dict(logs) if logs else {}))

    def on_train_batch_end(self, batch: int, logs: Mapping[str, float] | None = None) -> None:
        self._send_batch(TrainBatchEnd(run=self._run, batch=batch, logs=dict(logs) if logs else {}))

    # --- evaluation: standalone, or validation inside fit ----------------------

    def on_test_begin(self, logs: Mapping[str, float] | None = None) -> None:
        self._validating = self._phase == "fit"
        if not self._validating:
            self._begin("evaluate")
        self._send(TestBegin(run=self._run, logs=_copy(logs), validation=self._validating))

    def on_test_end(self, logs: Mapping[str, float] | None = None) -> None:
        validating = self._validating
        self._validating = False
        try:
            self._send(TestEnd(run=self._run, logs=_copy(logs), validation=validating))
        finally:
            if not validating:
                self._end()

    def on_test_batch_begin(self, batch: int, logs: Mapping[str, float] | None = None) -> None:
        self._send_batch(
            TestBatchBegin(run=self._run, batch=batch, logs=dict(logs) if logs else {}, validation=self._validating)
        )

    def on_test_batch_end(self, batch: int, logs: Mapping[str, float] | None = None) -> None:
        self._send_batch(
            TestBatchEnd(run=self._run, batch=batch, logs=dict(logs) if logs else {}, validation=self._validating)
        )

    # --- prediction ------------------------------------------------------------

    def on_predict_begin(self, logs: Mapping[str, float] | None = None) -> None:
        self._begin("predict")
        self._send(PredictBegin(run=self._run, logs=_copy(logs)))

    def on_predict_end(self, logs: Mapping[str, float] | None = None) -> None:
        try:
            self._send(PredictEnd(run=self._run, logs=_copy(logs)))
        finally:
            self._end()

    def on_predict_batch_begin(self, batch: int, logs: Mapping[str, Any] | None = None) -> None:
        self._send(PredictBatchBegin(run=self._run, batch=batch))

    def on_predict_batch_end(self, batch: int, logs: Mapping[str, Any] | None = None) -> None:
        outputs = logs.get("outputs") if logs else None
        self._send(
            PredictBatchEnd(
                run=self._run,
                batch=batch,
                output_size=_rows(outputs),
                outputs=_to_lists(outputs) if self.predict_outputs and outputs is not None else None,
            )
        )

    # --- no per-step sync ------------------------------------------------------------

    def callback_list(self, model: Any, *callbacks: Any, **params: Any) -> keras.callbacks.CallbackList:
        """A ``CallbackList`` to pass as ``callbacks=``, through which batch logs
        reach this bridge as Keras computed them, not converted to floats.

        Keras converts every batch's logs to Python floats before it calls a
        callback: on an accelerator, a device-to-host sync per step. A
        ``CallbackList`` given as ``callbacks=`` is used as it is and gets the
        raw tensors; with ``defer_logs=True`` the bridge hands them to the bus,
        whose loop reads them. The events are the same as in the default mode::

            bridge = KerasBridge(bus, defer_logs=True)
            model.fit(x, y, epochs=5, callbacks=bridge.callback_list(model, epochs=5))

        ``params`` are what Keras would give callbacks (``epochs``, ``steps``,
        ``verbose``). Other Keras ``callbacks`` get floats as usual, so each
        batch hook one of them implements brings that hook's sync back.
        """
        return _DeferredLogs(self, model, callbacks, params)

    # --- async helpers -----------------------------------------------------------

    async def fit(self, model: Any, *args: Any, callbacks: list[Any] | None = None, **kwargs: Any) -> Any:
        """``await bridge.fit(model, x, y, ...)``: ``model.fit`` in a worker thread, bridged."""
        return await self._in_thread(model.fit, args, callbacks, kwargs)

    async def evaluate(self, model: Any, *args: Any, callbacks: list[Any] | None = None, **kwargs: Any) -> Any:
        """``await bridge.evaluate(model, x, y, ...)`` in a worker thread, bridged."""
        return await self._in_thread(model.evaluate, args, callbacks, kwargs)

    async def predict(self, model: Any, *args: Any, callbacks: list[Any] | None = None, **kwargs: Any) -> Any:
        """``await bridge.predict(model, x, ...)`` in a worker thread, bridged."""
        return await self._in_thread(model.predict, args, callbacks, kwargs)

    async def _in_thread(
        self, method: Callable[..., Any], args: tuple[Any, ...], callbacks: list[Any] | None, kwargs: dict[str, Any]
    ) -> Any:
        call = functools.partial(method, *args, callbacks=[*(callbacks or []), self], **kwargs)
        return await anyio.to_thread.run_sync(call)

    # --- the hot path ------------------------------------------------------------

    def _send(self, event: Event) -> None:
        try:
            self._publish(event)
        except BusClosedError:
            self._lost(event)
        if self._inbox:
            self._apply_commands()

    def _send_batch(self, event: Event) -> None:
        try:
            self._publish_batch(event)
        except BusClosedError:
            self._lost(event)
        if self._inbox:
            self._apply_commands()

    def _barrier(self, event: Event) -> None:
        """Publish a boundary event, wait for control subscribers, apply their commands."""
        try:
            if self.bus.has_control_subscribers:
                barrier = self.bus.publish_with_barrier(event)
                if not barrier.wait(self.barrier_timeout):
                    self._publish(
                        BarrierTimedOut(
                            run=self._run,
                            cause=event.seq,
                            subscribers=barrier.pending,
                            timeout=self.barrier_timeout,
                        )
                    )
            else:
                self._publish(event)
        except BusClosedError:
            self._lost(event)
        if self._inbox:
            self._apply_commands()
        self._fresh_rate = None  # later hooks read it anew

    def _lost(self, event: Event) -> None:
        self.unpublished += 1
        if self.unpublished == 1:
            warnings.warn(
                f"the event bus closed during {self._phase}; {event.kind} and later events "
                "are not delivered (see KerasBridge.unpublished)",
                RuntimeWarning,
                stacklevel=3,
            )

    # --- runs ----------------------------------------------------------------------

    def _begin(self, phase: Phase) -> None:
        if self.bus.in_loop_thread():
            raise LoopThreadError(
                f"model.{phase}() was called on the event bus's own loop thread, where waiting "
                f"for subscribers would deadlock; use `await bridge.{phase}(model, ...)`, "
                "which runs it in a worker thread"
            )
        me = threading.get_ident()
        if self._phase is not None and self._owner != me:
            raise RuntimeError(
                f"this KerasBridge is already bridging a {self._phase} in another thread; "
                "create one KerasBridge per concurrent fit/evaluate/predict"
            )
        self.bus.check_running()
        if self._phase is not None:  # the last run died without its end hook
            self.bus.detach_run(self._run)
        self._owner = me
        self._phase = phase
        self._validating = False
        self._run = f"{phase}-{uuid.uuid4().hex[:12]}"
        self._inbox.clear()
        self.bus.attach_run(self._run, self._receive)

    def _end(self) -> None:
        self.bus.detach_run(self._run)
        if self._inbox:
            self._apply_commands()
        self._phase = None
        self._owner = None

    def _receive(self, issued: int, command: Command) -> None:
        """Bus loop thread: queue a command for the training thread."""
        self._inbox.append((issued, command))

    # --- commands --------------------------------------------------------------------

    def _apply_commands(self) -> None:
        while self._inbox:
            issued, command = self._inbox.popleft()
            try:
                self._apply(command)
            except _Rejected as rejected:
                self._publish_quietly(
                    CommandRejected(run=self._run, command=command, issued=issued, reason=str(rejected))
                )
                continue
            self._publish_quietly(CommandApplied(run=self._run, command=command, issued=issued))
            if isinstance(command, FailTraining):
                self._phase = None
                self._owner = None
                self.bus.detach_run(self._run)
                raise RuntimeError(command.message)

    def _publish_quietly(self, event: Event) -> None:
        try:
            self._publish(event)
        except BusClosedError:
            self._lost(event)

    def _apply(self, command: Command) -> None:
        model = self.model
        if isinstance(command, StopTraining):
            if self._phase == "evaluate":
                model.stop_evaluating = True
            elif self._phase == "predict":
                model.stop_predicting = True
            else:
                model.stop_training = True
        elif isinstance(command, SetLearningRate):
            self._set_learning_rate(command.learning_rate)
        elif isinstance(command, SnapshotWeights):
            self.snapshots[command.tag] = model.get_weights()
        elif isinstance(command, RestoreWeights):
            weights = self.snapshots.get(command.tag)
            if weights is None:
                known = ", ".join(repr(t) for t in self.snapshots) or "none"
                raise _Rejected(f"no weights snapshot tagged {command.tag!r} (snapshots: {known})")
            model.set_weights(weights)
        elif isinstance(command, FailTraining):
            pass  # raised by the caller, once the command is recorded as applied
        else:  # pragma: no cover - the bus only routes known commands
            raise _Rejected(f"unknown command {command!r}")

    def _set_learning_rate(self, value: float) -> None:
        if self._phase != "fit":
            raise _Rejected(f"SetLearningRate needs a fit in progress, not {self._phase}")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise _Rejected(f"learning rate must be a finite number >= 0, got {value!r}")
        optimizer = getattr(self.model, "optimizer", None)
        if optimizer is None or not hasattr(optimizer, "learning_rate"):
            raise _Rejected("the model has no optimizer with a learning_rate")
        if isinstance(getattr(optimizer, "_learning_rate", None), keras.optimizers.schedules.LearningRateSchedule):
            raise _Rejected(
                "the optimizer's learning rate is driven by a schedule and cannot be set: "
                "build the optimizer with a float learning rate to let subscribers set it"
            )
        if self._fresh_rate is not None and float32(value) == self._fresh_rate:
            return  # already in force (read in this very hook): assigning costs ~0.2 ms for nothing
        try:
            optimizer.learning_rate = float(value)
        except TypeError as exc:
            raise _Rejected(f"the optimizer's learning rate is driven by a schedule and cannot be set: {exc}") from exc

    def _learning_rate(self) -> float | None:
        optimizer = getattr(self.model, "optimizer", None)
        rate = getattr(optimizer, "learning_rate", None)
        if rate is None:
            return None
        try:
            # float() reads a variable (or a schedule's tensor) in half the time of .numpy(),
            # and without convert_to_numpy's NumPy 2 deprecation path.
            self._fresh_rate = float(rate)
        except (TypeError, ValueError):
            return None
        return self._fresh_rate


def _copy(logs: Mapping[str, Any] | None) -> dict[str, float]:
    """Keras mutates ``logs`` after the hook: keep a copy, as floats."""
    if not logs:
        return {}
    copied = {}
    for key, value in logs.items():
        try:
            copied[key] = float(value)
        except (TypeError, ValueError):
            continue
    return copied


def _rows(outputs: Any) -> int:
    if outputs is None:
        return 0
    shape = getattr(outputs, "shape", None)
    if shape is None:
        leaves = keras.tree.flatten(outputs)
        shape = getattr(leaves[0], "shape", None) if leaves else None
    return int(shape[0]) if shape else 0


def _to_lists(outputs: Any) -> list[object]:
    converted = keras.tree.map_structure(lambda t: keras.ops.convert_to_numpy(t).tolist(), outputs)
    return converted if isinstance(converted, list) else [converted]


def _metric_directions(model: Any) -> dict[str, Literal["up", "down"]]:
    """Which way is better for each compiled metric, as Keras's ``mode="auto"`` decides."""
    directions: dict[str, Literal["up", "down"]] = {}
    for metric in getattr(model, "metrics", []):
        for inner in getattr(metric, "metrics", None) or []:
            direction = getattr(inner, "_direction", None)
            if direction in ("up", "down"):
                directions[inner.name] = direction
    return directions


_BATCH_HOOKS = (
    "on_train_batch_begin",
    "on_train_batch_end",
    "on_test_batch_begin",
    "on_test_batch_end",
    "on_predict_batch_begin",
    "on_predict_batch_end",
)


class _DeferredLogs(keras.callbacks.CallbackList):  # type: ignore[misc]
    """Keras uses a ``CallbackList`` given as ``callbacks=`` as it is, so it must
    do what ``fit`` would otherwise: add ``History``, set the model and params."""

    def __init__(self, bridge: KerasBridge, model: Any, callbacks: tuple[Any, ...], params: dict[str, Any]) -> None:
        super().__init__(list(callbacks), add_history=True, add_progbar=False, model=model, **params)
        self.bridge = bridge
        bridge.set_model(model)
        bridge.set_params(params)
        self._listening = {hook: any(_overrides(cb, hook) for cb in self.callbacks) for hook in _BATCH_HOOKS}
        # Without defer_logs the bridge wants floats: convert here, as Keras would.
        self._for_bridge: Callable[[Any], Any] = (lambda logs: logs) if bridge.defer_logs else _floats

    def _batch(self, hook: str, batch: int, logs: Any) -> None:
        getattr(self.bridge, hook)(batch, self._for_bridge(logs))
        if self._listening[hook]:
            getattr(super(), hook)(batch, logs)

    def on_train_batch_begin(self, batch: int, logs: Any = None) -> None:
        self._batch("on_train_batch_begin", batch, logs)

    def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
        self._batch("on_train_batch_end", batch, logs)

    def on_test_batch_begin(self, batch: int, logs: Any = None) -> None:
        self._batch("on_test_batch_begin", batch, logs)

    def on_test_batch_end(self, batch: int, logs: Any = None) -> None:
        self._batch("on_test_batch_end", batch, logs)

    def on_predict_batch_begin(self, batch: int, logs: Any = None) -> None:
        self._batch("on_predict_batch_begin", batch, logs)

    def on_predict_batch_end(self, batch: int, logs: Any = None) -> None:
        self.bridge.on_predict_batch_end(batch, logs)  # outputs stay arrays: only their size is read
        if self._listening["on_predict_batch_end"]:
            super().on_predict_batch_end(batch, logs)

    # Train, epoch, test and predict boundaries: floats, as Keras gives them, once per epoch.

    def on_train_begin(self, logs: Any = None) -> None:
        self.bridge.on_train_begin(_floats(logs))
        super().on_train_begin(logs)

    def on_train_end(self, logs: Any = None) -> None:
        self.bridge.on_train_end(_floats(logs))
        super().on_train_end(logs)

    def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
        self.bridge.on_epoch_begin(epoch, _floats(logs))
        super().on_epoch_begin(epoch, logs)

    def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
        floats = _floats(logs)
        self.bridge.on_epoch_end(epoch, floats)
        super().on_epoch_end(epoch, floats)

    def on_test_begin(self, logs: Any = None) -> None:
        self.bridge.on_test_begin(_floats(logs))
        super().on_test_begin(logs)

    def on_test_end(self, logs: Any = None) -> None:
        self.bridge.on_test_end(_floats(logs))
        super().on_test_end(logs)

    def on_predict_begin(self, logs: Any = None) -> None:
        self.bridge.on_predict_begin(_floats(logs))
        super().on_predict_begin(logs)

    def on_predict_end(self, logs: Any = None) -> None:
        self.bridge.on_predict_end(_floats(logs))
        super().on_predict_end(logs)


def _floats(logs: Any) -> dict[str, float]:
    return floats_from(logs) if logs else {}


def _overrides(callback: Any, hook: str) -> bool:
    """Whether ``callback`` does something in ``hook``: Keras marks its empty
    defaults ``_is_default``; train batch hooks also call the legacy ones."""
    hooks = [hook]
    if hook in ("on_train_batch_begin", "on_train_batch_end"):
        hooks.append(hook.replace("train_batch", "batch"))
    return any(not getattr(getattr(callback, name, None), "_is_default", False) for name in hooks)
