"""--custom_op_library: a compiled custom-op library registered in every ONNX Runtime session.
The library here is onnxruntime-extensions' own (its C++ kernel ai.onnx.contrib::NegPos), so the
kept node runs native code, not a Python kernel."""

from __future__ import annotations

import json

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper, save

from edgeport import convert, ops
from edgeport.core.errors import ConversionError, InputError


def _neg_pos(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return np.minimum(x, 0).astype(np.float32), np.maximum(x, 0).astype(np.float32)


@pytest.fixture
def library_model(tmp_path):
    """x[batch,16] -> Gemm -> NegPos -> 0.1 * neg + pos (a leaky ReLU) -> Gemm -> y[batch,4]."""
    from onnxruntime_extensions import get_library_path

    ops.register_op("ai.onnx.contrib::NegPos", onnx=ops.CustomNode(outputs=("float", "float")), reference=_neg_pos)
    rng = np.random.default_rng(0)
    init = [
        numpy_helper.from_array(rng.standard_normal((32, 16)).astype(np.float32), "w1"),
        numpy_helper.from_array(rng.standard_normal((4, 32)).astype(np.float32), "w2"),
        numpy_helper.from_array(np.array(0.1, np.float32), "slope"),
    ]
    nodes = [
        helper.make_node("Gemm", ["x", "w1"], ["h"], name="fc1", transB=1),
        helper.make_node("NegPos", ["h"], ["neg", "pos"], name="negpos", domain="ai.onnx.contrib"),
        helper.make_node("Mul", ["neg", "slope"], ["leak"], name="leak"),
        helper.make_node("Add", ["leak", "pos"], ["act"], name="act"),
        helper.make_node("Gemm", ["act", "w2"], ["y"], name="fc2", transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "leaky",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])],
        init,
    )
    opsets = [helper.make_opsetid("", 18), helper.make_opsetid("ai.onnx.contrib", 1)]
    path = tmp_path / "leaky.onnx"
    save(helper.make_model(graph, opset_imports=opsets), str(path))
    yield path, get_library_path()
    ops.unregister_op("ai.onnx.contrib::NegPos")


def test_a_kept_node_runs_through_the_library_and_is_verified(library_model, tmp_path):
    path, library = library_model
    result = convert(
        str(path), output_format="onnx", quantization="int8", optimize_for="cpu", output_dir=str(tmp_path / "b"),
        latency_runs=10, custom_op_library=library,
    )  # fmt: skip
    section = result.report["custom_ops"]
    parity = section["ops"]["ai.onnx.contrib::NegPos"]["parity"]
    assert parity["measured_on"] == "ONNX Runtime, the custom-op library"
    assert parity["max_abs_diff"] == 0.0  # min/max are exact in float32
    assert section["float_islands"] == ["negpos"]
    assert [b["elements"] for b in section["qdq_boundaries"]] == [32, 32, 32]  # h in; neg and pos out
    manifest = json.loads((result.bundle_dir / "manifest.json").read_text())
    assert manifest["custom_ops"]["ai.onnx.contrib::NegPos"].startswith(
        f"the app must register the custom op library {library}"
    )
    assert result.report["fidelity"]["outputs"]["y"]["cosine_mean"] > 0.99


def test_a_missing_library_is_one_input_error(library_model, tmp_path):
    path, _ = library_model
    with pytest.raises(InputError, match=r"custom op library .*absent\.so not found"):
        convert(str(path), output_dir=str(tmp_path / "b"), custom_op_library=str(tmp_path / "absent.so"))


def test_a_kept_node_without_any_implementation_is_refused(library_model, tmp_path):
    """NegPos registered with no kernel and no library: nothing could run it, so nothing is verified (exit 4)."""
    path, _ = library_model
    with pytest.raises(ConversionError, match=r"ai.onnx.contrib::NegPos, registered without an implementation") as e:
        convert(str(path), output_dir=str(tmp_path / "b"))
    assert e.value.exit_code == 4
    assert not (tmp_path / "b").exists()
