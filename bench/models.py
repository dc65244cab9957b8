"""The small models and data the benchmarks train: local only, never a download."""

from __future__ import annotations

from typing import Any

import numpy as np


def digits(rows: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's bundled 8x8 digits (1,797 images), scaled to [0, 1]."""
    from sklearn.datasets import load_digits

    data = load_digits()
    x = (data.data / 16.0).astype("float32")
    y = data.target.astype("int32")
    if rows is not None:
        x, y = x[:rows], y[:rows]
    return x, y


def mlp(seed: int = 0) -> Any:
    """A small MLP for the digits: a Keras step of a few hundred microseconds on a CPU."""
    import keras

    keras.utils.set_random_seed(seed)
    model = keras.Sequential(
        [
            keras.Input((64,)),
            keras.layers.Dense(64, activation="relu"),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def tiny_regressor() -> Any:
    """A compiled one-layer model, enough for ``Callback.set_model`` and a learning rate."""
    import keras

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    model.compile(optimizer="adam", loss="mse", metrics=["mean_absolute_error"])
    return model


def repeated_batches(x: np.ndarray, y: np.ndarray, batch_size: int) -> tuple[Any, int]:
    """``x``, ``y`` as one shuffled, repeated ``tf.data`` pipeline, and the steps of one pass.

    ``fit`` on it with ``steps_per_epoch`` builds one iterator per fit, where
    arrays get a new one each epoch, whose start-up time varies several-fold
    from epoch to epoch and would drown a callback's cost.
    """
    import tensorflow as tf

    steps = -(-len(x) // batch_size)
    data = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(len(x), seed=0).batch(batch_size).repeat()
    return data, steps
