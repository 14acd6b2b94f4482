"""A small Keras model for the TensorFlow tests: a digits CNN (scikit-learn's 8x8 digits)
trained here in seconds and saved in the four TF forms edgeport reads."""

from __future__ import annotations

from pathlib import Path

import numpy as np

TRAIN = 1400  # the first 1400 of scikit-learn's 1797 digits train; the other 397 test
EPOCHS = 15


def digits_data() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    return (digits.images / 16.0).astype(np.float32)[..., None], digits.target.astype(np.int64)  # NHWC


def digits_layers(keras_module):
    """The same architecture in Keras 3 or tf_keras, so trained weights move between them."""
    layers = keras_module.layers
    inputs = keras_module.Input((8, 8, 1), name="image")
    x = layers.Conv2D(16, 3, padding="same", activation="relu", name="conv")(inputs)
    x = layers.MaxPooling2D(name="pool")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(64, activation="relu", name="hidden")(x)
    return keras_module.Model(inputs, layers.Dense(10, name="logits")(x))


def train_digits(root: Path) -> dict[str, Path | float]:
    """Train the digits CNN (Keras 3, a few seconds) and save it under ``root`` in the four TF
    forms, plus its data; return the paths, TF's test accuracy and the test arrays."""
    import keras
    import tensorflow as tf
    import tf_keras

    x, y = digits_data()
    keras.utils.set_random_seed(0)
    model = digits_layers(keras)
    model.compile(
        optimizer=keras.optimizers.Adam(3e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    model.fit(x[:TRAIN], y[:TRAIN], epochs=EPOCHS, batch_size=32, verbose=0)
    files: dict[str, Path | float] = {
        "keras": root / "digits.keras",
        "saved_model": root / "digits_savedmodel",
        "h5": root / "digits.h5",
        "tf_keras_saved_model": root / "digits_tf_keras_savedmodel",
    }
    model.save(files["keras"])
    model.export(str(files["saved_model"]), verbose=False)
    legacy = digits_layers(tf_keras)
    legacy.set_weights(model.get_weights())
    legacy.save(files["h5"])
    legacy.save(str(files["tf_keras_saved_model"]))  # a folder: tf_keras's SavedModel format
    logits = model.predict(x[TRAIN:], verbose=0)
    files["tf_accuracy"] = float(np.mean(logits.argmax(1) == y[TRAIN:]))
    np.testing.assert_allclose(legacy(tf.constant(x[TRAIN:])).numpy(), logits, atol=1e-4)
    files["test"] = root / "digits_test.npz"
    np.savez(files["test"], x=x[TRAIN:], y=y[TRAIN:])
    files["calibration"] = root / "digits_calibration.npz"
    np.savez(files["calibration"], x=x[:256])
    files["x_test"], files["y_test"] = x[TRAIN:], y[TRAIN:]  # type: ignore[assignment]
    return files
