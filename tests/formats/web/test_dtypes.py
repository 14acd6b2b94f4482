"""Every input dtype the page reads from .npz (float32, float16, int64, int32, uint8, int8, bool)
reaches onnxruntime-web and comes back bit-exact through an identity model."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper

DTYPES = {
    "float32": TensorProto.FLOAT, "float16": TensorProto.FLOAT16, "int64": TensorProto.INT64,
    "int32": TensorProto.INT32, "uint8": TensorProto.UINT8, "int8": TensorProto.INT8, "bool": TensorProto.BOOL,
}  # fmt: skip


def identity_model() -> onnx.ModelProto:
    """One input per dtype, each passed through Identity to an output of the same dtype."""
    shape = [2, 3]
    inputs = [helper.make_tensor_value_info(f"in_{n}", t, shape) for n, t in DTYPES.items()]
    outputs = [helper.make_tensor_value_info(f"out_{n}", t, shape) for n, t in DTYPES.items()]
    nodes = [helper.make_node("Identity", [f"in_{n}"], [f"out_{n}"]) for n in DTYPES]
    model = helper.make_model(
        helper.make_graph(nodes, "identity", inputs, outputs), opset_imports=[helper.make_opsetid("", 17)]
    )
    model.ir_version = 9
    return model


def test_every_dtype_round_trips(browser):
    onnx.save(identity_model(), browser.root / "identity.onnx")
    loaded = browser.load("identity", "identity.onnx")
    assert loaded["input_types"] == list(DTYPES)
    rng = np.random.default_rng(0)
    feeds = {
        "in_float32": rng.standard_normal((2, 3)).astype(np.float32),
        "in_float16": rng.standard_normal((2, 3)).astype(np.float16),
        "in_int64": np.array([[-(2**40), 0, 2**62], [1, -1, 7]], np.int64),  # beyond 2**53: BigInt64Array
        "in_int32": np.array([[-(2**31), 0, 2**31 - 1], [1, -1, 7]], np.int32),
        "in_uint8": np.array([[0, 128, 255], [1, 2, 3]], np.uint8),
        "in_int8": np.array([[-128, 0, 127], [1, -1, 7]], np.int8),
        "in_bool": np.array([[True, False, True], [False, False, True]]),
    }
    outputs = browser.run("identity", feeds)
    assert browser.output_names("identity") == [f"out_{n}" for n in DTYPES]
    for (name, value), out in zip(feeds.items(), outputs, strict=True):
        assert out.dtype == value.dtype and out.shape == value.shape, name
        np.testing.assert_array_equal(out, value, err_msg=name)
