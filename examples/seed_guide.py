"""The Keras guide "Writing your own callbacks", run with the event bus.

    python examples/seed_guide.py        (or: python -m eventbus.examples.seed_guide)

Each of the guide's scenarios runs as the guide runs it, except that the
callbacks are subscribers (:mod:`eventbus.examples.seed_callbacks`) on an
:class:`~eventbus.EventBus`, and ``fit``/``evaluate``/``predict`` get one
:class:`~eventbus.adapters.keras.KerasBridge` instead of the callbacks::

    with EventBus() as bus:
        bus.subscribe(LossAndErrorPrintingCallback())
        bus.subscribe(EarlyStoppingAtMinLoss())
        model.fit(..., callbacks=[KerasBridge(bus)])

Differences from the guide:

- Data: the handwritten digits shipped with scikit-learn
  (``sklearn.datasets.load_digits``: 1797 images of 8x8 pixels, scaled to
  [0, 1]) stand in for MNIST, which would need a download. The model is the
  guide's, with 64 inputs instead of 784; the first 1000 images train, the
  other 797 test.
- Keras 3 stops ``fit`` with a warning when the input runs out before
  ``steps_per_epoch * epochs`` batches, so the two scenarios with
  ``steps_per_epoch=5`` read a shuffled, repeating ``tf.data`` pipeline of
  the training images.
- ``predict`` runs with ``verbose=0``, so no progress bar mixes with the lines.

Subscribers print from the bus's thread. Each one prints its own lines in
order; when two print in the same scenario, their lines interleave in the
order the bus's loop runs them, which follows the order they were subscribed.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402

from eventbus import EventBus  # noqa: E402
from eventbus.adapters.keras import KerasBridge  # noqa: E402
from eventbus.examples.seed_callbacks import (  # noqa: E402
    CustomCallback,
    CustomLearningRateScheduler,
    EarlyStoppingAtMinLoss,
    LossAndErrorPrintingCallback,
    lr_schedule,
)

FEATURES = 64


def get_model() -> keras.Model:
    """The guide's model: one Dense unit, RMSprop(0.1), mean squared error."""
    model = keras.Sequential([keras.Input(shape=(FEATURES,)), keras.layers.Dense(1)])
    model.compile(
        optimizer=keras.optimizers.RMSprop(learning_rate=0.1),
        loss="mean_squared_error",
        metrics=["mean_absolute_error"],
    )
    return model


def load_data() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Digits in place of MNIST: pixels scaled to [0, 1], the digit as the target."""
    digits = load_digits()
    x = digits.data.astype("float32") / 16.0
    y = digits.target.astype("float32")
    return x[:1000], y[:1000], x[1000:], y[1000:]


def repeating(x: np.ndarray, y: np.ndarray, batch_size: int) -> tf.data.Dataset:
    """Shuffled batches that never run out, for ``steps_per_epoch``."""
    return tf.data.Dataset.from_tensor_slices((x, y)).shuffle(len(x)).repeat().batch(batch_size)


def heading(title: str) -> None:
    print(f"\n=== {title} ===\n", flush=True)


def a_basic_example(x_train, y_train, x_test, y_test) -> None:
    heading("A basic example: CustomCallback")
    model = get_model()
    with EventBus() as bus:
        bus.subscribe(CustomCallback())
        bridge = KerasBridge(bus)
        model.fit(
            x_train,
            y_train,
            batch_size=128,
            epochs=1,
            verbose=0,
            validation_split=0.5,
            callbacks=[bridge],
        )
        model.evaluate(x_test, y_test, batch_size=128, verbose=0, callbacks=[bridge])
        model.predict(x_test, batch_size=128, verbose=0, callbacks=[bridge])


def usage_of_logs(x_train, y_train, x_test, y_test) -> None:
    heading("Usage of logs dict: LossAndErrorPrintingCallback")
    model = get_model()
    with EventBus() as bus:
        bus.subscribe(LossAndErrorPrintingCallback())
        bridge = KerasBridge(bus)
        model.fit(x_train, y_train, batch_size=128, epochs=2, verbose=0, callbacks=[bridge])
        model.evaluate(x_test, y_test, batch_size=128, verbose=0, callbacks=[bridge])


def early_stopping_at_min_loss(x_train, y_train) -> None:
    heading("Early stopping at minimum loss: EarlyStoppingAtMinLoss")
    model = get_model()
    with EventBus() as bus:
        bus.subscribe(LossAndErrorPrintingCallback())
        bus.subscribe(EarlyStoppingAtMinLoss())
        model.fit(
            repeating(x_train, y_train, batch_size=64),
            steps_per_epoch=5,
            shuffle=False,  # the dataset shuffles itself
            epochs=30,
            verbose=0,
            callbacks=[KerasBridge(bus)],
        )


def learning_rate_scheduling(x_train, y_train) -> None:
    heading("Learning rate scheduling: CustomLearningRateScheduler")
    model = get_model()
    with EventBus() as bus:
        bus.subscribe(LossAndErrorPrintingCallback())
        bus.subscribe(CustomLearningRateScheduler(lr_schedule))
        model.fit(
            repeating(x_train, y_train, batch_size=64),
            steps_per_epoch=5,
            shuffle=False,  # the dataset shuffles itself
            epochs=15,
            verbose=0,
            callbacks=[KerasBridge(bus)],
        )


def main() -> None:
    keras.utils.set_random_seed(0)
    x_train, y_train, x_test, y_test = load_data()
    a_basic_example(x_train, y_train, x_test, y_test)
    usage_of_logs(x_train, y_train, x_test, y_test)
    early_stopping_at_min_loss(x_train, y_train)
    learning_rate_scheduling(x_train, y_train)


if __name__ == "__main__":
    main()
