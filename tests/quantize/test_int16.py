"""16-bit activations with int8 weights (scheme ``int16``): only where the profile runs them
(qualcomm-htp), ONNX (QDQ int16) and TFLite (16x8), each more faithful than int8."""

from __future__ import annotations

import numpy as np
import onnx

from edgeport.api import convert
from edgeport.profiles import resolve_profile, resolve_scheme
from tests.conftest import factory


def _convert(tiny_files, tmp_path, output_format: str, quantization: str, optimize_for: str):
    return convert(
        factory("make_feature_net"),
        output_format=output_format,
        quantization=quantization,
        optimize_for=optimize_for,
        input_shape="x:1,3,16,16",
        calibration_data=str(tiny_files["data"]),
        eval_data=str(tiny_files["data"]),
        output_dir=str(tmp_path / f"{output_format}-{quantization}"),
        latency_runs=5,
    )


def _cosine(result) -> float:
    return next(iter(result.report["fidelity"]["outputs"].values()))["cosine_min"]


def test_int16_resolves_to_int8_where_the_device_has_no_16_bit_kernels():
    profile, _ = resolve_profile("x86-avx512-vnni")
    resolution = resolve_scheme(profile, "int16", "onnx")
    assert resolution.scheme == "int8"
    assert "int16_activations: false" in resolution.decision["why"]
    htp, _ = resolve_profile("htp")
    assert resolve_scheme(htp, "int16", "tflite").scheme == "int16"
    assert resolve_scheme(htp, "int16", "onnx").scheme == "int16"


def test_onnx_int16_activations(tiny_files, tmp_path):
    int16 = _convert(tiny_files, tmp_path, "onnx", "int16", "htp")
    int8 = _convert(tiny_files, tmp_path, "onnx", "int8", "htp")
    model = onnx.load(str(int16.artifact))
    quantize_nodes = [n for n in model.graph.node if n.op_type == "QuantizeLinear"]
    assert quantize_nodes
    zero_points = {i.name: i for i in model.graph.initializer}
    activation_types = {zero_points[n.input[2]].data_type for n in quantize_nodes if len(n.input) > 2}
    assert activation_types == {onnx.TensorProto.INT16}
    assert int16.report["target"]["scheme"] == "int16"
    # 16-bit activations leave only the weights' rounding: far closer than int8.
    assert _cosine(int16) > 0.9995
    assert 1 - _cosine(int16) < (1 - _cosine(int8)) / 2


def test_tflite_int16_activations(tiny_files, tmp_path):
    from ai_edge_litert.interpreter import Interpreter

    result = _convert(tiny_files, tmp_path, "tflite", "int16", "htp")
    interpreter = Interpreter(model_path=str(result.artifact))
    tensor_types = {np.dtype(t["dtype"]).name for t in interpreter.get_tensor_details()}
    assert "int16" in tensor_types
    applied = result.report["precision_plan"]["applied"]
    assert applied and set(applied.values()) == {"int16"}
    assert _cosine(result) > 0.999
