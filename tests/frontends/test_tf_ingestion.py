"""TensorFlow/Keras ingestion: a Keras model trained here on scikit-learn's digits, saved as a
Keras 3 ``.keras`` file, a SavedModel (``model.export``), an ``.h5`` file and a legacy
SavedModel (both written by tf_keras), each converted to fp32 and int8 ONNX with TensorFlow
as the parity reference and a real accuracy gate; input detection of folders and files.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from edgeport.api import convert
from edgeport.core.errors import InputError
from edgeport.frontends import detect_source


@pytest.fixture(scope="session")
def tf_int8(tf_digits, tmp_path_factory):
    """Each TF form converted once to int8 ONNX (its bundle also holds the fp32 ONNX)."""
    root = tmp_path_factory.mktemp("tf_int8")
    results = {}
    for form in ("keras", "saved_model", "h5", "tf_keras_saved_model"):
        results[form] = convert(
            str(tf_digits[form]),
            quantization="int8",
            optimize_for="cpu",
            calibration_data=str(tf_digits["calibration"]),
            eval_data=str(tf_digits["test"]),
            max_accuracy_drop=2.0,
            output_dir=str(root / form),
            latency_runs=10,
            warmup_runs=2,
        )
    return results


@pytest.mark.parametrize("form", ["keras", "saved_model", "h5", "tf_keras_saved_model"])
def test_tf_form_converts_to_onnx_and_int8(form, tf_digits, tf_int8):
    result = tf_int8[form]
    report = result.report
    assert report["model"]["framework"] == "tensorflow" and report["model"]["form"] == form
    assert report["model"]["exporter"].startswith("tf2onnx")
    # Parity of the fp32 ONNX against TensorFlow's own outputs, checked during conversion.
    parity = report["model"]["parity"]
    assert parity["ok"]
    assert max(o["max_abs_error"] for o in parity["outputs"].values()) < 1e-4
    (inp,) = report["model"]["inputs"]
    assert inp == {"name": "image", "shape": ["batch", 8, 8, 1], "dtype": "float32", "layout": "NHWC"}
    assert report["model"]["outputs"][0]["shape"] == ["batch", 10]
    assert report["notes"][0].startswith("input detected as")
    # The fp32 ONNX classifies the 397 held-out digits exactly as TensorFlow does.
    session = ort.InferenceSession(str(result.bundle_dir / "baseline_fp32.onnx"), providers=["CPUExecutionProvider"])
    onnx_logits = session.run(None, {"image": tf_digits["x_test"]})[0]
    onnx_accuracy = float(np.mean(onnx_logits.argmax(1) == tf_digits["y_test"]))
    assert tf_digits["tf_accuracy"] >= 0.9, tf_digits["tf_accuracy"]
    assert onnx_accuracy == pytest.approx(tf_digits["tf_accuracy"], abs=1e-9)
    # int8: within the 2-point gate on real labels, and the artifact really is quantized.
    fidelity = report["fidelity"]
    assert fidelity["samples"] == 397
    assert fidelity["reference_top1"] == pytest.approx(100 * onnx_accuracy)
    assert fidelity["reference_top1"] - fidelity["artifact_top1"] <= 2.0
    assert report["gate"]["passed"]
    assert report["precision_plan"]["layers"]["hidden"]["precision"] == "int8"  # Keras layer names
    assert result.artifact.stat().st_size < 0.5 * (result.bundle_dir / "baseline_fp32.onnx").stat().st_size


def test_named_inputs_and_outputs_keep_their_names(tmp_path):
    """Two inputs (one NHWC image, one vector) and two outputs: names, order and layouts survive."""
    import keras

    keras.utils.set_random_seed(1)
    image = keras.Input((8, 8, 3), name="photo")
    extra = keras.Input((4,), name="meta")
    x = keras.layers.Flatten()(keras.layers.Conv2D(4, 3)(image))
    x = keras.layers.Concatenate()([x, keras.layers.Dense(8)(extra)])
    model = keras.Model([image, extra], [keras.layers.Dense(5, name="scores")(x), keras.layers.Dense(2, name="box")(x)])
    path = tmp_path / "two.keras"
    model.save(path)
    result = convert(str(path), quantization="none", output_dir=str(tmp_path / "b"), latency_runs=5, warmup_runs=1)
    report = result.report
    assert [(i["name"], i.get("layout")) for i in report["model"]["inputs"]] == [("photo", "NHWC"), ("meta", None)]
    assert [o["name"] for o in report["model"]["outputs"]] == ["scores", "box"]
    assert report["model"]["parity"]["ok"]
    rng = np.random.default_rng(0)
    feeds = {"photo": rng.standard_normal((3, 8, 8, 3), np.float32), "meta": rng.standard_normal((3, 4), np.float32)}
    expected = model.predict([feeds["photo"], feeds["meta"]], verbose=0)
    session = ort.InferenceSession(str(result.artifact), providers=["CPUExecutionProvider"])
    for got, want in zip(session.run(["scores", "box"], feeds), expected, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_detection_of_each_form(tf_digits, tmp_path):
    assert detect_source(str(tf_digits["keras"])).kind == "tf_file"
    assert detect_source(str(tf_digits["h5"])).kind == "tf_file"
    for form in ("saved_model", "tf_keras_saved_model"):
        detection = detect_source(str(tf_digits[form]))
        assert detection.kind == "tf_saved_model" and "saved_model.pb" in detection.description
        # Pointing at the marker file picks the folder.
        assert detect_source(str(Path(tf_digits[form]) / "saved_model.pb")).path == Path(tf_digits[form])


def test_ambiguous_folder_lists_the_candidates(tmp_path):
    folder = tmp_path / "both"
    folder.mkdir()
    (folder / "saved_model.pb").write_bytes(b"\x00")
    (folder / "config.json").write_text('{"model_type": "bert"}')
    (folder / "model.onnx").write_bytes(b"\x00")
    with pytest.raises(InputError) as info:
        detect_source(str(folder))
    message = info.value.one_line()
    assert "ambiguous" in message and "3 models" in message
    for candidate in ("saved_model.pb", "config.json", "model.onnx"):
        assert str(folder / candidate) in message


def test_frozen_graph_and_missing_dimension_are_clear_errors(tmp_path):
    import keras

    (tmp_path / "graph.pb").write_bytes(b"\x00")
    with pytest.raises(InputError, match="frozen TensorFlow graph"):
        detect_source(str(tmp_path / "graph.pb"))
    sequence = keras.Input((None, 3), name="steps")
    path = tmp_path / "seq.keras"
    keras.Model(sequence, keras.layers.Dense(2)(sequence)).save(path)
    with pytest.raises(InputError) as info:
        convert(str(path), quantization="none", output_dir=str(tmp_path / "b"))
    assert "unknown size at axis 1" in info.value.message and "--input_shape steps:1,1,3" in info.value.one_line()
    result = convert(
        str(path), quantization="none", input_shape="steps:1,6,3", output_dir=str(tmp_path / "c"), latency_runs=5
    )
    assert result.report["model"]["inputs"][0]["shape"] == [1, 6, 3]


def test_tf_source_to_tflite_directly(tf_digits, tmp_path):
    """TF -> TFLite with tf.lite.TFLiteConverter (no onnx2tf): int8 artifact and its fp32 reference."""
    from edgeport.runtime.litert import LiteRTRunner

    result = convert(
        str(tf_digits["keras"]),
        output_format="tflite",
        quantization="int8",
        optimize_for="cpu",
        calibration_data=str(tf_digits["calibration"]),
        eval_data=str(tf_digits["test"]),
        max_accuracy_drop=2.0,
        output_dir=str(tmp_path / "tflite"),
        latency_runs=10,
        warmup_runs=2,
    )
    report = result.report
    assert "converted from the TensorFlow/Keras source by tf.lite.TFLiteConverter (no onnx2tf)" in report["notes"]
    # Layer matching by weights finds every Keras layer in the TF-converted file.
    assert report["precision_plan"]["applied"] == {"conv": "int8", "hidden": "int8", "logits": "int8"}
    assert report["gate"]["passed"]
    accuracy = {}
    for name in ("baseline_fp32.tflite", "model.tflite"):  # the fp32 reference comes from the same route
        runner = LiteRTRunner(result.bundle_dir / name, threads=1)
        logits = np.concatenate(
            [runner.run({"image": tf_digits["x_test"][i : i + 1]})[0] for i in range(len(tf_digits["x_test"]))]
        )
        accuracy[name] = float(np.mean(logits.argmax(1) == tf_digits["y_test"]))
    assert accuracy["baseline_fp32.tflite"] == pytest.approx(tf_digits["tf_accuracy"], abs=1.5 / 397)
    assert accuracy["baseline_fp32.tflite"] - accuracy["model.tflite"] <= 0.02
    assert report["fidelity"]["artifact_top1"] == pytest.approx(100 * accuracy["model.tflite"], abs=1e-6)
    assert report["size"]["ratio"] > 2.0  # int8 weights
