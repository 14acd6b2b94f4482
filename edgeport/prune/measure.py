"""What pruning costs and buys, measured: parameters, MACs, file and gzip size, latency side by
side in ONNX Runtime, and accuracy against the original model."""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

from edgeport.core.model import TensorSpec
from edgeport.runtime.ort import OrtRunner
from edgeport.verify.latency import measure_side_by_side


def gzip_size(data: bytes | str | Path) -> int:
    """Bytes after gzip (level 9) of ``data`` or of a file, or of every file under a folder
    (an .mlpackage): what the artifact costs to download or store compressed."""
    if isinstance(data, bytes):
        return len(gzip.compress(data, compresslevel=9, mtime=0))
    path = Path(data)
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    return sum(len(gzip.compress(f.read_bytes(), compresslevel=9, mtime=0)) for f in files)


def _concrete(model: onnx.ModelProto, inputs: list[TensorSpec]) -> onnx.ModelProto:
    """A copy of ``model`` with batch 1 on every input, shape-inferred, to read layer shapes."""
    fixed = onnx.ModelProto()
    fixed.CopyFrom(model)
    specs = {s.name: s for s in inputs}
    for value in fixed.graph.input:
        spec = specs.get(value.name)
        if spec is None:
            continue
        try:
            dims = spec.concrete_shape(1)
        except ValueError:
            continue  # a symbolic non-batch dim: its layers' MACs stay unknown
        for dim, size in zip(value.type.tensor_type.shape.dim, dims, strict=False):
            dim.ClearField("dim_param")
            dim.dim_value = size
    try:
        return onnx.shape_inference.infer_shapes(fixed, strict_mode=False, data_prop=True)
    except Exception:
        return fixed


def onnx_stats(model: onnx.ModelProto, inputs: list[TensorSpec]) -> dict[str, Any]:
    """Count a model's float parameters (all and non-zero) and its multiply-accumulates per
    sample in Conv/ConvTranspose/MatMul/Gemm (None when a shape is unknown).

    Returns ``{"params", "nonzero_params", "macs"}``.
    """
    params = nonzero = 0
    constants: dict[str, list[int]] = {}
    for init in model.graph.initializer:
        array = numpy_helper.to_array(init)
        constants[init.name] = list(array.shape)
        if array.dtype.kind == "f":
            params += int(array.size)
            nonzero += int(np.count_nonzero(array))
    inferred = _concrete(model, inputs)
    shapes: dict[str, list[int] | None] = dict(constants)
    for value in [*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output]:
        dims = value.type.tensor_type.shape.dim
        shapes[value.name] = [d.dim_value if d.HasField("dim_value") else -1 for d in dims]
    macs: int | None = 0
    for node in inferred.graph.node:
        if node.op_type not in ("Conv", "ConvTranspose", "MatMul", "Gemm"):
            continue
        count = _node_macs(node, shapes)
        if count is None:
            macs = None
            break
        macs += count
    return {"params": params, "nonzero_params": nonzero, "macs": macs}


def _node_macs(node: onnx.NodeProto, shapes: dict[str, list[int] | None]) -> int | None:
    def shape(name: str) -> list[int] | None:
        dims = shapes.get(name)
        return None if dims is None or any(d < 0 for d in dims) else dims

    out = shape(node.output[0])
    if node.op_type == "Conv":
        weight = shape(node.input[1])
        return None if out is None or weight is None else int(np.prod(out)) * int(np.prod(weight[1:]))
    if node.op_type == "ConvTranspose":
        source, weight = shape(node.input[0]), shape(node.input[1])
        return None if source is None or weight is None else int(np.prod(source)) * int(np.prod(weight[1:]))
    a = shape(node.input[0])
    if out is None or a is None or not a:
        return None
    if node.op_type == "Gemm":
        trans_a = next((attr.i for attr in node.attribute if attr.name == "transA"), 0)
        k = a[0] if trans_a else a[-1]
        return int(np.prod(out)) * int(k)
    return int(np.prod(out)) * int(a[-1])  # MatMul


def side_by_side_ms(
    models: dict[str, bytes | str | Path], feeds: dict[str, np.ndarray], threads: int, runs: int, warmup: int
) -> dict[str, float]:
    """Median latency in ms of each ONNX model on ``feeds``, timed interleaved in one run after
    a warm-up (ONNX Runtime, CPU, ``threads`` threads, no spinning)."""
    runners = {name: OrtRunner(model, threads) for name, model in models.items()}
    timings = measure_side_by_side(runners, feeds, runs, warmup)
    return {name: t["p50_ms"] for name, t in timings.items()}
