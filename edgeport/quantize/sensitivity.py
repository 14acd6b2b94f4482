"""Per-layer sensitivity from one calibrated pass.

The fp32 model runs once on a few calibration samples with every weighted layer's inputs
captured. Each layer is then re-computed in PyTorch twice from the same captured inputs:
in fp32 and with the planned quantization simulated (per-channel / block-wise weights,
calibrated or dynamic activation ranges). The SQNR between the two says how much error that
layer alone adds; its MACs say what keeping it in float costs. Nothing is quantized or
evaluated end to end here, so this stays cheap however many layers there are.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

from edgeport.core.extras import require
from edgeport.core.plan import PrecisionPlan

CAPTURED_OPS = ("Conv", "MatMul", "Gemm")


@dataclass
class LayerSensitivity:
    """How much one layer suffers from its planned precision, and what it computes."""

    layer: str
    op: str
    sqnr_db: float  # of the layer's output, quantized vs fp32, from the same inputs
    macs: int  # multiply-accumulates for one sample
    depthwise: bool = False

    @property
    def noise_ratio(self) -> float:
        """Noise-to-signal power ratio (0 = exact)."""
        return 0.0 if math.isinf(self.sqnr_db) and self.sqnr_db > 0 else 10 ** (-self.sqnr_db / 10)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready data."""
        return {
            "layer": self.layer,
            "op": self.op,
            "sqnr_db": self.sqnr_db,
            "macs": self.macs,
            "depthwise": self.depthwise,
        }


def _attrs(node: onnx.NodeProto) -> dict[str, Any]:
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _fake_quant(x, lo, hi, bits: int, symmetric: bool, signed: bool):
    """Quantize-dequantize ``x`` (torch) into the integer grid spanning [lo, hi] (broadcastable)."""
    import torch

    if symmetric:
        bound = torch.maximum(lo.abs(), hi.abs()).clamp_min(1e-12)
        levels = 2 ** (bits - 1) - 1
        scale = bound / levels
        return torch.clamp(torch.round(x / scale), -levels, levels) * scale
    lo, hi = torch.minimum(lo, torch.zeros_like(lo)), torch.maximum(hi, torch.zeros_like(hi))
    qmax = 2**bits - 1
    scale = ((hi - lo) / qmax).clamp_min(1e-12)
    zero = torch.round(-lo / scale)
    q = torch.clamp(torch.round(x / scale) + zero, 0, qmax)
    del signed  # the grid is the same; signedness only shifts the zero point
    return (q - zero) * scale


def quantize_weight(weight, axis: int | None, bits: int, block: int | None = None, block_axis: int = 0):
    """Symmetric fake-quantization of a weight: per-channel along ``axis`` (None: per tensor),
    or block-wise (``block`` elements along ``block_axis``, one scale per block and column)."""
    import torch

    if block:
        moved = weight.movedim(block_axis, 0)
        k = moved.shape[0]
        pad = (-k) % block
        padded = torch.nn.functional.pad(moved.reshape(k, -1), (0, 0, 0, pad))
        blocks = padded.reshape(-1, block, padded.shape[-1])
        bound = blocks.abs().amax(dim=1, keepdim=True)
        quant = _fake_quant(blocks, -bound, bound, bits, True, True)
        return quant.reshape(-1, padded.shape[-1])[:k].reshape(moved.shape).movedim(0, block_axis)
    if axis is None:
        bound = weight.abs().amax()
    else:
        dims = [d for d in range(weight.ndim) if d != axis]
        bound = weight.abs().amax(dim=dims, keepdim=True)
    return _fake_quant(weight, -bound, bound, bits, True, True)


def _quantize_activation(x, mode: str, calibrated: tuple[float, float] | None):
    import torch

    if mode == "fp16":
        return x.half().float()
    if mode == "static" and calibrated is not None:
        lo, hi = (torch.tensor(v, dtype=x.dtype) for v in calibrated)
    else:  # dynamic: the range of this very tensor
        lo, hi = x.amin(), x.amax()
    return _fake_quant(x, lo, hi, 8, False, False)


@dataclass
class _Recipe:
    """What is simulated for one precision."""

    activations: str  # "static", "dynamic", "fp16" or "none"
    weight_bits: int | None  # None: float weights
    per_channel: bool
    reduce_range: bool
    block: int | None = None
    fp16_weights: bool = False
    palette: bool = False  # weight_bits-bit k-means look-up table per tensor (Core ML palettization)


def _recipe(precision: str, details: dict[str, Any]) -> _Recipe:
    per_channel = bool(details.get("per_channel", True))
    reduce_range = bool(details.get("reduce_range", False))
    if precision == "int8":
        return _Recipe("static", 8, per_channel, reduce_range)
    if precision == "int8-dynamic":
        return _Recipe("dynamic", 8, per_channel, reduce_range)
    if precision == "int8-weight":
        return _Recipe("none", 8, True, False)
    if precision == "int4-weight":
        return _Recipe("none", 4, False, False, block=int(details.get("block_size", 32)))
    if precision == "fp16":
        return _Recipe("fp16", None, False, False, fp16_weights=True)
    if precision.startswith("palettize-"):
        return _Recipe("none", int(precision.rsplit("-", 1)[1]), False, False, palette=True)
    return _Recipe("none", None, False, False)


def _run_op(node: onnx.NodeProto, inputs: list, attrs: dict[str, Any]):
    """Compute Conv / MatMul / Gemm in torch from ONNX semantics."""
    import torch
    import torch.nn.functional as F

    if node.op_type == "MatMul":
        return torch.matmul(inputs[0], inputs[1])
    if node.op_type == "Gemm":
        a = inputs[0].t() if attrs.get("transA", 0) else inputs[0]
        b = inputs[1].t() if attrs.get("transB", 0) else inputs[1]
        out = attrs.get("alpha", 1.0) * (a @ b)
        if len(inputs) > 2 and inputs[2] is not None:
            out = out + attrs.get("beta", 1.0) * inputs[2]
        return out
    x, w = inputs[0], inputs[1]
    bias = inputs[2] if len(inputs) > 2 else None
    spatial = w.ndim - 2
    pads = attrs.get("pads", [0] * (2 * spatial))
    torch_pad = []
    for i in reversed(range(spatial)):
        torch_pad += [pads[i], pads[i + spatial]]
    if any(torch_pad):
        x = F.pad(x, torch_pad)
    conv = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[spatial]
    return conv(
        x, w, bias, stride=attrs.get("strides", 1), dilation=attrs.get("dilations", 1), groups=attrs.get("group", 1)
    )


def _macs(node: onnx.NodeProto, inputs: list, output) -> int:
    if node.op_type == "Conv":
        w = inputs[1]
        return int(output[0].numel() * w[0].numel())
    k = inputs[1].shape[-2] if node.op_type == "MatMul" else inputs[0].shape[-1]
    return int(output[0].numel() * k) if output.ndim > 1 else int(output.numel() * k)


def _sqnr(reference, candidate) -> float:
    noise = float(((reference - candidate) ** 2).sum())
    signal = float((reference**2).sum())
    if noise == 0:
        return float("inf")
    return 10 * math.log10(signal / noise) if signal > 0 else float("-inf")


def capture_inputs(
    model: onnx.ModelProto, feeds: list[dict[str, np.ndarray]], names: list[str]
) -> dict[str, list[np.ndarray]]:
    """Run ``model`` on each feed dict and return the values of tensors ``names`` per feed."""
    from edgeport.runtime.ort import OrtRunner

    augmented = onnx.ModelProto()
    augmented.CopyFrom(model)
    existing = {o.name for o in augmented.graph.output}
    for name in names:
        if name not in existing:
            augmented.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    runner = OrtRunner(augmented.SerializeToString())
    index = {name: runner.output_names.index(name) for name in names}
    captured: dict[str, list[np.ndarray]] = {name: [] for name in names}
    for feed in feeds:
        outputs = runner.run(feed)
        for name in names:
            captured[name].append(outputs[index[name]])
    return captured


def layer_sensitivity(
    model: onnx.ModelProto, plan: PrecisionPlan, feeds: list[dict[str, np.ndarray]], precision: str | None = None
) -> dict[str, LayerSensitivity]:
    """Simulate ``precision`` (default: the plan's scheme) on every planned layer; return,
    per layer, the SQNR of its output against fp32 and its MACs per sample."""
    torch = require("torch", "--quantization auto (layers are simulated in PyTorch)", "torch")

    precision = precision or plan.scheme
    recipe = _recipe(precision, plan.details)
    initializers = {i.name: i for i in model.graph.initializer}
    nodes = {n.name: n for n in model.graph.node}
    wanted = []
    for layer in plan.layers.values():
        for node_name in layer.nodes:
            node = nodes.get(node_name)
            if node is not None and node.op_type in CAPTURED_OPS:
                wanted += [i for i in node.input[:2] if i and i not in initializers]
    captured = capture_inputs(model, feeds, sorted(set(wanted)))
    ranges = {
        name: (min(float(v.min()) for v in values), max(float(v.max()) for v in values))
        for name, values in captured.items()
    }
    results: dict[str, LayerSensitivity] = {}
    for layer_name, layer in plan.layers.items():
        sqnrs, macs, depthwise = [], 0, False
        for node_name in layer.nodes:
            node = nodes.get(node_name)
            if node is None or node.op_type not in CAPTURED_OPS:
                continue
            attrs = _attrs(node)
            constant = [name in initializers for name in node.input]
            const_values = {
                name: torch.from_numpy(numpy_helper.to_array(initializers[name]).astype(np.float32))
                for name, is_const in zip(node.input, constant, strict=True)
                if is_const and name
            }
            reference_outs, quant_outs = [], []
            for sample in range(len(feeds)):
                fp32_inputs = [
                    const_values[n]
                    if n in const_values
                    else torch.from_numpy(captured[n][sample].astype(np.float32))
                    if n
                    else None
                    for n in node.input
                ]
                quant_inputs = list(fp32_inputs)
                for position in (0, 1):
                    name = node.input[position]
                    if name in const_values:
                        if recipe.palette:
                            from edgeport.quantize.palettize import palettize_tensor

                            quant_inputs[position] = palettize_tensor(fp32_inputs[position], recipe.weight_bits)
                        elif recipe.weight_bits:
                            axis = _weight_axis(node, attrs) if recipe.per_channel else None
                            bits = recipe.weight_bits - (1 if recipe.reduce_range else 0)
                            quant_inputs[position] = quantize_weight(
                                fp32_inputs[position], axis, bits, recipe.block, block_axis=0
                            )
                        elif recipe.fp16_weights:
                            quant_inputs[position] = fp32_inputs[position].half().float()
                    elif recipe.activations != "none":
                        quant_inputs[position] = _quantize_activation(
                            fp32_inputs[position], recipe.activations, ranges.get(name)
                        )
                with torch.no_grad():
                    reference_outs.append(_run_op(node, fp32_inputs, attrs))
                    quant_outs.append(_run_op(node, quant_inputs, attrs))
            reference = torch.cat([o.reshape(-1) for o in reference_outs])
            sqnrs.append(_sqnr(reference, torch.cat([o.reshape(-1) for o in quant_outs])))
            macs += _macs(node, fp32_inputs, reference_outs[0])
            if node.op_type == "Conv" and attrs.get("group", 1) > 1:
                depthwise = True
        if sqnrs:
            results[layer_name] = LayerSensitivity(layer_name, layer.op, min(sqnrs), macs, depthwise)
    return results


def _weight_axis(node: onnx.NodeProto, attrs: dict[str, Any]) -> int:
    """The output-channel axis of a node's weight (what per-channel scales run along)."""
    if node.op_type == "Conv":
        return 0
    if node.op_type == "Gemm":
        return 0 if attrs.get("transB", 0) else 1
    return 1  # MatMul weight [K, N]: one scale per output column
