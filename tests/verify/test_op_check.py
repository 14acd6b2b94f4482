"""The op-compatibility report flags what the target would not run."""

from __future__ import annotations

from edgeport.api import convert
from tests.conftest import factory


def test_float_only_op_is_flagged_for_the_npu_in_tflite(tmp_path):
    result = convert(
        factory("make_sine"),
        output_format="tflite",
        quantization="int8",
        optimize_for="npu",
        input_shape="1,3,8,8",
        output_dir=str(tmp_path / "npu"),
        latency_runs=5,
    )
    check = result.report["op_check"]
    sine = [f for f in check["flagged"] if f["op"] == "SIN"]
    assert sine and sine[0]["count"] == 1 and "float" in sine[0]["why"]
    assert any("SIN" in note for note in result.report["notes"])
    # The convolutions themselves are full-integer: they are not flagged.
    assert check["ops"]["CONV_2D"] == 2
    assert not any(f["op"] == "CONV_2D" for f in check["flagged"])


def test_quantized_onnx_is_clean_for_the_npu_and_cpu(tmp_path):
    result = convert(
        factory("make_tiny"),
        output_format="onnx",
        quantization="int8",
        optimize_for="npu",
        input_shape="1,3,16,16",
        output_dir=str(tmp_path / "onnx"),
        latency_runs=5,
    )
    flagged = {f["op"] for f in result.report["op_check"]["flagged"]}
    assert not flagged & {"Conv", "Gemm"}  # quantized: QDQ pairs everywhere
    cpu = convert(
        factory("make_tiny"),
        output_format="onnx",
        quantization="int8",
        optimize_for="cpu",
        input_shape="1,3,16,16",
        output_dir=str(tmp_path / "cpu"),
        latency_runs=5,
    )
    assert cpu.report["op_check"]["flagged"] == []
