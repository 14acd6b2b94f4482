"""Which ops of an ONNX artifact onnxruntime-web would not run where the profile means.

The wasm backend is ONNX Runtime's CPU provider compiled to WebAssembly, so the CPU check of
``formats/onnx/op_check.py`` applies as it is. The WebGPU backend implements a subset of the
ops; any other node runs on the wasm CPU kernels, with a GPU<->CPU copy on each side.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from edgeport.formats.onnx.op_check import check_onnx
from edgeport.verify.op_check import summary

# The WebGPU backend's operators, from onnxruntime's js/web/docs/webgpu-operators.md
# (https://github.com/microsoft/onnxruntime/blob/main/js/web/docs/webgpu-operators.md, read at
# commit 51f6177), plus the com.microsoft contrib ops it lists.
WEBGPU_OPS = frozenset(
    """Abs Acos Acosh Add ArgMax ArgMin Asin Asinh Atan Atanh AveragePool BatchNormalization BiasAdd
    BiasSplitGelu Cast Ceil Clip Concat Conv ConvTranspose Cos Cosh Div Einsum Elu Equal Erf Exp Expand
    Flatten Floor FusedConv Gather GatherElements Gelu Gemm GlobalAveragePool GlobalMaxPool Greater
    GreaterOrEqual If InstanceNormalization LayerNormalization LeakyRelu Less LessOrEqual Log MatMul
    MaxPool MemcpyFromHost MemcpyToHost Mul Neg Not Pad Pow Range Reciprocal ReduceL1 ReduceL2
    ReduceLogSum ReduceLogSumExp ReduceMax ReduceMean ReduceMin ReduceProd ReduceSum ReduceSumSquare
    Relu Reshape Resize Shape Sigmoid Sin Sinh SkipLayerNormalization Slice Softmax Split Sqrt Squeeze
    Sub Tan Tanh ThresholdedRelu Tile Transpose Unsqueeze Where""".split()
)


def check_web_ops(path: Path, profile: Any, web_backend: str) -> dict[str, Any]:
    """Count the nodes of the ONNX file ``path`` and flag those ``web_backend`` would not run
    where meant: for wasm, what the CPU check flags; for webgpu, also every op the WebGPU
    backend lacks (it runs on the wasm CPU kernels). Returns the op-check section."""
    section = check_onnx(path, profile)
    if web_backend != "webgpu":
        return section
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    counts: Counter[str] = Counter(node.op_type for node in model.graph.node)
    flagged: Counter[tuple[str, str]] = Counter(
        {(entry["op"], entry["why"]): entry["count"] for entry in section["flagged"]}
    )
    for node in model.graph.node:
        if node.op_type not in WEBGPU_OPS:
            flagged[(node.op_type, "no WebGPU kernel in onnxruntime-web: runs on the wasm CPU kernels")] += 1
    return summary(counts, flagged)
