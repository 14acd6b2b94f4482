"""Two custom operators, declared once for edgeport (``--custom_ops examples/custom_ops/ops.py``).

- ``mylib::fused_gated_gelu(x, g) = gelu_tanh(x) * sigmoid(g)``: decomposable. ONNX gets an
  onnxscript function of standard ops, so it is quantized like any other ops.
- ``mylib::rms_norm(x) = x / sqrt(mean(x^2, last axis) + 1e-6)``: kept as one node of domain
  ``mylib`` (op type ``RmsNormNoWeight``) with a Python kernel; the app must register a kernel.
  TFLite keeps it as the custom op ``RmsNormNoWeight`` (the app registers that kernel too);
  Core ML gets it as a composite of MIL ops (``rms_norm_coreml``).

Both are real ``torch.library.custom_op`` ops with a fake (meta) implementation, so
``torch.export`` traces them as single ops. Loading this file defines them (once per process).
"""

from __future__ import annotations

import numpy as np
import onnxscript
import torch
from onnxscript import FLOAT
from onnxscript import opset18 as op

from edgeport.ops import CoreMLComposite, CustomNode, Decompose, TFLiteCustom, register_op

EPS = 1e-6
_GELU_C = 0.7978845608028654  # sqrt(2 / pi)


@torch.library.custom_op("mylib::fused_gated_gelu", mutates_args=())
def fused_gated_gelu(x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """gelu (tanh form) of ``x`` gated by sigmoid(``g``)."""
    return torch.nn.functional.gelu(x, approximate="tanh") * torch.sigmoid(g)


@fused_gated_gelu.register_fake
def _(x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    return torch.empty_like(x)


@torch.library.custom_op("mylib::rms_norm", mutates_args=())
def rms_norm(x: torch.Tensor) -> torch.Tensor:
    """``x`` divided by its root mean square over the last axis (no weight)."""
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + EPS)


@rms_norm.register_fake
def _(x: torch.Tensor) -> torch.Tensor:
    return torch.empty_like(x)


@onnxscript.script()
def fused_gated_gelu_onnx(x: FLOAT, g: FLOAT) -> FLOAT:
    """The ONNX decomposition: standard ops only (Mul, Add, Tanh, Sigmoid). The type annotations
    tell the torch exporter the function has one output."""
    cube = op.Mul(op.Mul(x, x), x)
    inner = op.Mul(op.Add(x, op.Mul(cube, op.CastLike(0.044715, x))), op.CastLike(_GELU_C, x))
    half = op.Mul(x, op.CastLike(0.5, x))
    return op.Mul(op.Mul(half, op.Add(op.Tanh(inner), op.CastLike(1.0, x))), op.Sigmoid(g))


def fused_gated_gelu_reference(x: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Numpy reference of mylib::fused_gated_gelu (float64 inside)."""
    x64, g64 = x.astype(np.float64), g.astype(np.float64)
    gelu = 0.5 * x64 * (1.0 + np.tanh(_GELU_C * (x64 + 0.044715 * x64**3)))
    return (gelu / (1.0 + np.exp(-g64))).astype(np.float32)


def rms_norm_reference(x: np.ndarray) -> np.ndarray:
    """Numpy reference of mylib::rms_norm (float64 inside)."""
    x64 = x.astype(np.float64)
    return (x64 / np.sqrt(np.mean(x64 * x64, axis=-1, keepdims=True) + EPS)).astype(np.float32)


def rms_norm_kernel(x: np.ndarray) -> np.ndarray:
    """The Python kernel ONNX Runtime runs for the kept node (float32 throughout, unlike the
    float64 reference, so the parity check compares two implementations)."""
    scale = np.float32(1.0) / np.sqrt(np.mean(np.square(x), axis=-1, keepdims=True) + np.float32(EPS))
    return (x * scale).astype(np.float32)


register_op(
    "mylib::fused_gated_gelu",
    onnx=Decompose(fused_gated_gelu_onnx),
    tflite=Decompose(),
    coreml=Decompose(),
    reference=fused_gated_gelu_reference,
    onnx_op_type="FusedGatedGelu",
)
def rms_norm_coreml(context, node) -> None:
    """Core ML composite of mylib::rms_norm (coremltools ``register_torch_op`` signature): MIL ops
    x * rsqrt(mean(x^2, last axis) + eps). coremltools is imported only when Core ML converts."""
    from coremltools.converters.mil import Builder as mb
    from coremltools.converters.mil.frontend.torch.ops import _get_inputs

    (x,) = _get_inputs(context, node, expected=1)
    mean = mb.reduce_mean(x=mb.mul(x=x, y=x), axes=[-1], keep_dims=True)
    context.add(mb.mul(x=x, y=mb.rsqrt(x=mean, epsilon=EPS), name=node.name))


register_op(
    "mylib::rms_norm",
    onnx=CustomNode(op_type="RmsNormNoWeight", python_kernel=rms_norm_kernel),
    tflite=TFLiteCustom("RmsNormNoWeight"),
    coreml=CoreMLComposite(rms_norm_coreml),
    reference=rms_norm_reference,
)
