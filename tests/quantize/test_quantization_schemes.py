"""fp16, int8-dynamic and fp32 artifacts of the example: valid, runnable, faithful."""

from __future__ import annotations

import onnx
import pytest

from edgeport.api import convert
from tests.conftest import EXAMPLES


@pytest.mark.parametrize("scheme", ["fp16", "int8-dynamic", "none"])
def test_scheme_artifact(scheme, tmp_path):
    result = convert(
        str(EXAMPLES / "fashion_cnn.pt2"),
        quantization=scheme,
        optimize_for="cpu",
        eval_data=str(EXAMPLES / "fashion_mnist_test_1k.npz"),
        eval_samples=300,
        output_dir=str(tmp_path / scheme),
        latency_runs=10,
    )
    model = onnx.load(str(result.artifact))
    onnx.checker.check_model(model)
    fidelity = result.report["fidelity"]
    drop = fidelity["reference_top1"] - fidelity["artifact_top1"]
    # Inputs and outputs stay float32 whatever the internal precision.
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert model.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    initializer_types = {i.data_type for i in model.graph.initializer}
    if scheme == "fp16":
        assert onnx.TensorProto.FLOAT16 in initializer_types
        assert abs(drop) <= 0.34  # at most one of 300 predictions flips
        assert next(iter(fidelity["outputs"].values()))["cosine_min"] > 0.9999
    elif scheme == "int8-dynamic":
        assert onnx.TensorProto.INT8 in initializer_types
        assert drop <= 1.0
    else:
        assert fidelity["top1_agreement"] == 100.0
        assert next(iter(fidelity["outputs"].values()))["max_abs_error"] == 0.0
