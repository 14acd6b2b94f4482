"""TFLite on models from the wild (issue 15): LiteRT failures must be one-line exit-4 errors,
never "internal error".

The model is built here (seconds): a .tflite with dynamic height and width.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgeport.errors import ConversionError
from edgeport.verify.litert_runner import LiteRTRunner


@pytest.fixture(scope="session")
def dynamic_tflite(tmp_path_factory) -> Path:
    """A .tflite with dynamic H/W (TFLite converter on a Keras CNN with max pool, upsampling
    and a skip concat): XNNPACK cannot reshape it to an odd size (pool 63 -> 31, up 62 != 63)."""
    import tensorflow as tf
    import tf_keras as keras

    layers = keras.layers
    keras.utils.set_random_seed(0)
    inputs = keras.Input((None, None, 3), batch_size=1, name="image")
    skip = layers.Conv2D(8, 3, padding="same", activation="relu")(inputs)
    x = layers.UpSampling2D(interpolation="bilinear")(layers.Conv2D(8, 3, padding="same")(layers.MaxPooling2D()(skip)))
    score = layers.Conv2D(1, 1, name="score")(layers.Concatenate()([x, skip]))
    path = tmp_path_factory.mktemp("dynamic_tflite") / "dynamic_hw.tflite"
    path.write_bytes(tf.lite.TFLiteConverter.from_keras_model(keras.Model(inputs, score)).convert())
    return path


def test_litert_failures_are_one_line_conversion_errors(dynamic_tflite):
    """ "XNNPack delegate failed to reshape" (the field error, exit 1) is now ConversionError
    (exit 4), one line with a hint; sizes the file can take still run."""
    runner = LiteRTRunner(dynamic_tflite)
    assert runner.run({"image": np.zeros((1, 64, 64, 3), np.float32)})[0].shape == (1, 64, 64, 1)
    with pytest.raises(ConversionError) as info:
        runner.run({"image": np.zeros((1, 63, 63, 3), np.float32)})
    line = info.value.one_line()
    assert info.value.exit_code == 4 and "\n" not in line
    assert "LiteRT cannot run dynamic_hw.tflite" in line and "--input_shape" in line
    with pytest.raises(ConversionError, match="LiteRT cannot load"):
        LiteRTRunner(b"not a flatbuffer")


def test_litert_runs_without_xnnpack_when_its_delegate_fails(dynamic_tflite, monkeypatch):
    """When XNNPACK fails on a file that LiteRT's own kernels run, the runner reloads without
    it, gives the same outputs, and the latency label says it ran without XNNPACK."""
    from edgeport.backends import TFLiteBackend
    from edgeport.profiles import resolve_profile
    from edgeport.recipe import Recipe

    feeds = {"image": np.random.default_rng(0).random((1, 32, 32, 3), dtype=np.float32)}
    expected = LiteRTRunner(dynamic_tflite).run(feeds)[0]
    original = LiteRTRunner._invoke_once

    def xnnpack_fails(self, batch):
        if self.delegated:
            raise RuntimeError("XNNPack delegate failed to reshape runtimeNode number 260 (TfLiteXNNPackDelegate)")
        return original(self, batch)

    monkeypatch.setattr(LiteRTRunner, "_invoke_once", xnnpack_fails)
    runner = LiteRTRunner(dynamic_tflite)
    np.testing.assert_allclose(runner.run(feeds)[0], expected, atol=1e-5)
    assert not runner.delegated and "failed to reshape" in runner.delegate_fallback
    assert runner.describe()["xnnpack_failed"] == runner.delegate_fallback
    profile, _ = resolve_profile("x86-avx2")
    label = TFLiteBackend(profile, Recipe(input_model="m.onnx")).measured_label(runner)
    assert label.startswith("measured on LiteRT without XNNPACK")
