"""TFLite without data: the random inputs edgeport makes are fed in the right layout, int8 is no
worse than the TFLite converter with its defaults, and the gate and notes say what random inputs
can and cannot show.

Measured on the fashion CNN (128 random eval samples, 64 random calibration samples): fp32
TFLite vs fp32 ONNX cosine 1.00000, top-1 100%; int8 TFLite (edgeport and the raw converter,
identical outputs) top-1 agreement 97.66%, plain cosine 0.99998, centered cosine 0.983; ONNX
int8 99.22%, 0.99998, 0.997. On the same inputs a constant output (fp32's mean) has plain cosine
0.997 and top-1 agreement 66%, H/W swapped inputs 0.9965 and 65%: the plain figures cannot tell
a broken model from int8 noise, the centered cosine can (0.00 and 0.41).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import onnx
import pytest

from edgeport.api import convert
from edgeport.pipeline.report import RANDOM_EVAL_NOTE
from edgeport.verify.gate import MEASURE_BUDGETS, centered_cosine, choose_gate, measure_value
from edgeport.verify.metrics import cosine_per_sample
from tests.conftest import EXAMPLES, REPO


def _gemm_head(classes: int = 10) -> onnx.ModelProto:
    """A one-Gemm classifier head: its output is taken for logits."""
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.ones((classes, 4), np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("Gemm", ["x", "w"], ["logits"], transB=1)],
        "head",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", classes])],
        [weight],
    )
    return helper.make_model(graph)


def _noise_like_logits(count: int = 128, seed: int = 0) -> np.ndarray:
    """Logits as a classifier gives them for noise: one large input-independent vector plus a
    small part that depends on the input (the fashion CNN: mean -15, std 30, margins ~4)."""
    rng = np.random.default_rng(seed)
    common = rng.standard_normal(10) * 30
    return (common + rng.standard_normal((count, 10)) * 3).astype(np.float32)


def test_centered_cosine_tells_a_broken_model_from_noise():
    reference = _noise_like_logits()
    constant = np.broadcast_to(reference.mean(0), reference.shape)
    unrelated = _noise_like_logits(seed=0)[::-1].copy()  # the right common vector, other samples
    noisy = reference + np.random.default_rng(1).standard_normal(reference.shape).astype(np.float32) * 0.1
    # A plain cosine passes the broken outputs (budget 1: mean cosine >= 0.99) ...
    assert cosine_per_sample(reference, constant).mean() > 0.99
    assert cosine_per_sample(reference, unrelated).mean() > 0.98
    # ... the centered cosine does not, and keeps small int8-like noise near 1.
    assert abs(centered_cosine(reference, constant)) < 0.05
    assert centered_cosine(reference, unrelated) < 0.3
    assert centered_cosine(reference, noisy) > 0.999
    drop, value = measure_value("centered_cosine", reference, noisy)
    assert value > 0.999 and drop < 0.1
    # One sample has no mean to remove: its plain cosine.
    assert centered_cosine(reference[:1], reference[:1]) == pytest.approx(1.0)


def test_gate_on_random_eval_data_is_the_centered_cosine():
    model, sample = _gemm_head(), [_noise_like_logits(8)]
    random_gate = choose_gate(model, ["logits"], sample, metric="auto", budget=None, labels=False, synthetic=True)
    measure = random_gate.measures[0]
    assert measure.measure == "centered_cosine"
    assert measure.budget == MEASURE_BUDGETS["centered_cosine"] == 5.0
    assert "the eval data is random" in random_gate.decisions[0]["why"]
    assert "--eval_data" in random_gate.decisions[0]["why"]
    # Real data keeps top-1; an explicit --metric is obeyed on random data too.
    real_gate = choose_gate(model, ["logits"], sample, metric="auto", budget=None, labels=False)
    assert real_gate.measures[0].measure == "top1"
    forced = choose_gate(model, ["logits"], sample, metric="top1", budget=None, labels=False, synthetic=True)
    assert forced.measures[0].measure == "top1"
    # A user's --max_accuracy_drop is the budget, as for every measure.
    budgeted = choose_gate(model, ["logits"], sample, metric="auto", budget=2.0, labels=False, synthetic=True)
    assert budgeted.measures[0].budget == 2.0


def test_random_eval_note_says_it_is_not_an_accuracy():
    assert "no figure here is an accuracy" in RANDOM_EVAL_NOTE
    assert "--eval_data" in RANDOM_EVAL_NOTE


RAW_CONVERTER = textwrap.dedent(
    """
    # The raw library: onnx2tf and the TFLite converter with their defaults (int8 with a
    # representative dataset) on edgeport's random calibration samples (64, seed 1, NHWC).
    import sys
    import numpy as np, onnx, onnx2tf, tensorflow as tf
    from edgeport.core.model import TensorSpec
    from edgeport.data.synthetic import synthetic_dataset
    model = onnx.load(sys.argv[1])
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 1  # batch 1, as edgeport fixes it
    onnx.save(model, "batch1.onnx")
    keras_model = onnx2tf.convert(
        input_onnx_file_path="batch1.onnx", output_folder_path="saved_model", disable_model_save=True,
        non_verbose=True,
    )
    spec = TensorSpec("x", ["batch", 1, 28, 28], "float32")
    samples = synthetic_dataset([spec], 64, 1, 1).batch(0, 64)["x"].transpose(0, 2, 3, 1)
    converter = tf.lite.TFLiteConverter.from_keras_model(keras_model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([samples[i : i + 1]] for i in range(len(samples)))
    open(sys.argv[2], "wb").write(converter.convert())
    """
)


def _random_eval_outputs(path, manifest_kwargs=None) -> np.ndarray:
    """Outputs of a .tflite on edgeport's 128 random eval samples (seed 0), fed in ONNX layout."""
    from edgeport.core.model import TensorSpec
    from edgeport.data.synthetic import synthetic_dataset
    from edgeport.runtime.litert import LiteRTRunner

    samples = synthetic_dataset([TensorSpec("x", ["batch", 1, 28, 28], "float32")], 128, 0, 1).batch(0, 128)
    kwargs = manifest_kwargs or {"transposes": {"x": [0, 2, 3, 1]}, "input_names": ["x"], "output_names": ["linear"]}
    return LiteRTRunner(path, 1, **kwargs).run(samples)[0]


def test_tflite_on_random_inputs_fp32_agrees_and_int8_matches_the_raw_converter(tmp_path):
    model = str(EXAMPLES / "fashion_cnn.pt2")
    fp32 = convert(
        model, output_format="tflite", quantization="none", output_dir=str(tmp_path / "fp32"), latency_runs=10
    )
    # fp32 TFLite on the random samples equals fp32 ONNX: they are fed in the layout they need.
    outputs = fp32.report["fidelity"]["outputs"]["linear"]
    assert outputs["cosine_min"] > 0.999
    assert fp32.report["fidelity"]["top1_agreement"] == 100.0
    assert fp32.report["fidelity"]["measures"]["outputs"]["linear"]["value"] > 0.999

    int8 = convert(
        model, output_format="tflite", quantization="int8", output_dir=str(tmp_path / "int8"), latency_runs=10
    )
    measured = int8.report["fidelity"]["measures"]["outputs"]["linear"]
    assert measured["measure"] == "centered_cosine"
    assert measured["value"] > 0.95  # measured 0.983; a layout bug gives 0.41, a constant output 0
    assert RANDOM_EVAL_NOTE in int8.report["notes"]
    assert int8.report["status"] == "passed" and int8.report["gate"]["passed"]

    raw = tmp_path / "raw_int8.tflite"
    script = tmp_path / "raw.py"
    script.write_text(RAW_CONVERTER)
    done = subprocess.run(
        [sys.executable, str(script), str(int8.bundle_dir / "baseline_fp32.onnx"), str(raw)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYTHONPATH": str(REPO), "CUDA_VISIBLE_DEVICES": ""},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    manifest = json.loads((int8.bundle_dir / "manifest.json").read_text())
    ours = _random_eval_outputs(int8.artifact, manifest["runner"]["kwargs"])
    theirs = _random_eval_outputs(raw)
    reference = _random_eval_outputs(int8.bundle_dir / "baseline_fp32.tflite")
    ours_cc, theirs_cc = centered_cosine(reference, ours), centered_cosine(reference, theirs)
    assert ours_cc >= theirs_cc - 0.002, (ours_cc, theirs_cc)  # measured: equal (0.983 both)
    ours_top1 = np.mean(ours.argmax(1) == reference.argmax(1))
    theirs_top1 = np.mean(theirs.argmax(1) == reference.argmax(1))
    assert ours_top1 >= theirs_top1 - 1 / 128, (ours_top1, theirs_top1)  # measured: 97.66% both
