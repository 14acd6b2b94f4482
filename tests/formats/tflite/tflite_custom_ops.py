"""Op module for the TFLite custom-op tests (loaded with edgeport.ops.load_custom_ops, so that the
converter's child process can load it too): ``tfltest::rms_norm`` kept as an ONNX node with a Python
kernel and emitted as the TFLite custom op ``RmsNormNoWeight``; ``tfltest::gate2`` (two inputs)
asks for a TFLite custom op edgeport cannot emit; ``tfltest::nolower`` has no TFLite lowering."""

from __future__ import annotations

import numpy as np

from edgeport.ops import CustomNode, TFLiteCustom, register_op

EPS = 1e-6


def rms_norm_reference(x: np.ndarray) -> np.ndarray:
    """``x`` over its root mean square on the last axis (float64 inside)."""
    x64 = x.astype(np.float64)
    return (x64 / np.sqrt(np.mean(x64 * x64, axis=-1, keepdims=True) + EPS)).astype(np.float32)


def gate2_reference(x: np.ndarray, g: np.ndarray) -> np.ndarray:
    """``x * sigmoid(g)``."""
    return (x / (1.0 + np.exp(-g))).astype(np.float32)


register_op(
    "tfltest::rms_norm",
    onnx=CustomNode(op_type="RmsNormNoWeight", python_kernel=rms_norm_reference),
    tflite=TFLiteCustom("RmsNormNoWeight"),
    reference=rms_norm_reference,
)
register_op(
    "tfltest::gate2",
    onnx=CustomNode(op_type="Gate2", python_kernel=gate2_reference, inputs=("float", "float")),
    tflite=TFLiteCustom("Gate2"),
    reference=gate2_reference,
)
register_op(
    "tfltest::nolower",
    onnx=CustomNode(op_type="NoLower", python_kernel=rms_norm_reference),
    reference=rms_norm_reference,
)
