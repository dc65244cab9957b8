"""Tiny seeded Keras runs, for comparing the bus with Keras's own callbacks."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import keras
import numpy as np

from eventbus import EventBus, events
from eventbus.adapters.keras import KerasBridge
from eventbus.testing import Recorder

FEATURES = 16


def regression_data(n: int = 160, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, FEATURES)).astype("float32")
    w = rng.normal(size=(FEATURES, 1)).astype("float32")
    y = (x @ w + rng.normal(scale=0.5, size=(n, 1))).astype("float32")
    return x, y


def classification_data(n: int = 160, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    x, y = regression_data(n, seed)
    return x, (y > 0).astype("float32")


def regression_model(seed: int = 1, learning_rate: float | Any = 0.05) -> keras.Model:
    keras.utils.set_random_seed(seed)
    model = keras.Sequential(
        [keras.Input((FEATURES,)), keras.layers.Dense(4, activation="relu"), keras.layers.Dense(1)]
    )
    model.compile(
        optimizer=keras.optimizers.RMSprop(learning_rate=learning_rate),
        loss="mean_squared_error",
        metrics=["mean_absolute_error"],
    )
    return model


def classification_model(seed: int = 1, learning_rate: float = 0.05) -> keras.Model:
    keras.utils.set_random_seed(seed)
    model = keras.Sequential(
        [
            keras.Input((FEATURES,)),
            keras.layers.Dense(4, activation="relu"),
            keras.layers.Dense(1, activation="sigmoid"),
        ]
    )
    model.compile(
        optimizer=keras.optimizers.RMSprop(learning_rate=learning_rate),
        loss="binary_crossentropy",
        metrics=["accuracy"],
    )
    return model


@dataclass
class Run:
    history: dict[str, list[float]]
    weights: list[np.ndarray]
    events: list[events.Event] = field(default_factory=list)
    statistics: Any = None

    @property
    def epochs(self) -> int:
        return len(self.history["loss"])

    def of(self, *kinds: type[events.Event]) -> list[Any]:
        return [e for e in self.events if isinstance(e, kinds)]


FIT = {"epochs": 12, "batch_size": 32, "validation_split": 0.25, "verbose": 0, "shuffle": False}


def fit_with_keras(
    make_model: Callable[[], keras.Model], data: tuple[np.ndarray, np.ndarray], callbacks: Sequence[Any], **fit: Any
) -> Run:
    model = make_model()
    history = model.fit(*data, callbacks=list(callbacks), **{**FIT, **fit})
    return Run(history=history.history, weights=model.get_weights())


def fit_with_bus(
    make_model: Callable[[], keras.Model],
    data: tuple[np.ndarray, np.ndarray],
    subscribers: Sequence[Any],
    *,
    bus_options: dict[str, Any] | None = None,
    **fit: Any,
) -> Run:
    model = make_model()
    recorder = Recorder(lossless=True)
    with EventBus(**(bus_options or {})) as bus:
        bus.subscribe(recorder)
        for subscriber in subscribers:
            bus.subscribe(subscriber)
        history = model.fit(*data, callbacks=[KerasBridge(bus)], **{**FIT, **fit})
    return Run(
        history=history.history, weights=model.get_weights(), events=recorder.events, statistics=bus.statistics()
    )


def assert_same_weights(a: Sequence[np.ndarray], b: Sequence[np.ndarray]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
