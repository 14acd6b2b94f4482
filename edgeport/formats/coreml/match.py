"""Mapping between the plan's layers (named by source path, covering ONNX nodes) and the Core ML
program, whose ops and weights are named differently (and whose convs hold BatchNorm fused in,
as the ONNX export does).

Each planned layer is matched to the Core ML weight constant that holds the same (fused) values
as its ONNX initializer (:func:`match_layers`); after saving, the package's weights are mapped
back to the layers through those matches (:func:`applied_precisions`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

from edgeport.core.plan import PrecisionPlan

# Core ML op -> the inputs that can hold a planned layer's weight.
WEIGHT_INPUTS = {
    "conv": ("weight",),
    "conv_transpose": ("weight",),
    "linear": ("weight",),
    "matmul": ("y", "x"),
}
# ONNX op -> the input holding its weight (MatMul: whichever input is a constant).
ONNX_WEIGHT_INPUT = {"Conv": 1, "ConvTranspose": 1, "Gemm": 1}
# A Core ML constant matches an ONNX weight when max|a - b| <= this x max|b|: fp16 storage
# rounds to ~5e-4 relative per value; BatchNorm folding in two libraries differs far less.
MATCH_TOLERANCE = 2e-3


@dataclass
class WeightMatch:
    """Where one ONNX node's weight lives in the Core ML program."""

    layer: str
    onnx_node: str
    initializer: str
    const: str  # the Core ML constant's name (compressed ops are named after it)
    coreml_op: str  # the Core ML op consuming it (conv, linear, matmul...)
    coreml_op_name: str
    shape: list[int]
    transposed: bool  # Core ML holds the transpose of the ONNX initializer


def _onnx_weight(model: onnx.ModelProto, node: onnx.NodeProto, inits: dict[str, onnx.TensorProto]):
    """Return ``(initializer name, fp32 array)`` of an ONNX node's weight, or None."""
    positions = [ONNX_WEIGHT_INPUT[node.op_type]] if node.op_type in ONNX_WEIGHT_INPUT else [1, 0]
    for position in positions:
        if position < len(node.input) and node.input[position] in inits:
            name = node.input[position]
            return name, numpy_helper.to_array(inits[name]).astype(np.float32)
    return None


def walk_ops(block) -> Iterator[Any]:
    """Yield every op of a MIL block, including those in nested blocks (loops of unrolled RNNs)."""
    for op in block.operations:
        yield op
        for inner in getattr(op, "blocks", ()):
            yield from walk_ops(inner)


def _weight_consts(mlmodel) -> list[tuple[Any, Any, str]]:
    """``(weighted op, const op, input name)`` for every constant weight in the MIL program."""
    found = []
    for function in mlmodel._mil_program.functions.values():
        for op in walk_ops(function):
            for input_name in WEIGHT_INPUTS.get(op.op_type, ()):
                var = op.inputs.get(input_name)
                producer = getattr(var, "op", None)
                if producer is not None and producer.op_type == "const" and var.val is not None and var.rank >= 2:
                    found.append((op, producer, input_name))
    return found


def _closeness(onnx_value: np.ndarray, coreml_value: np.ndarray) -> float:
    scale = float(np.abs(onnx_value).max()) or 1.0
    return float(np.abs(onnx_value - coreml_value).max()) / scale


def match_layers(mlmodel, model: onnx.ModelProto, plan: PrecisionPlan) -> tuple[list[WeightMatch], dict[str, str]]:
    """Match each planned ONNX node's weight to the Core ML constant with the same values.

    Returns the matches and ``{layer: why}`` for layers with no match (left uncompressed). Each
    Core ML op's weight is matched once; ties go to the closest values, then program order.
    Layers with identical weights (cloned transformer layers) match different ops that share
    one constant: coremltools stores identical weights once.
    """
    inits = {i.name: i for i in model.graph.initializer}
    nodes = {n.name: n for n in model.graph.node}
    candidates = []
    for op, const, _ in _weight_consts(mlmodel):
        value = np.asarray(const.outputs[0].val, dtype=np.float32)
        candidates.append((op, const, value))
    taken: set[str] = set()  # Core ML ops whose weight is matched
    matches: list[WeightMatch] = []
    missing: dict[str, str] = {}
    for layer_name, layer in plan.layers.items():
        found_here, weightless, unmatched = 0, [], []
        for node_name in layer.nodes:
            node = nodes.get(node_name)
            weight = _onnx_weight(model, node, inits) if node is not None else None
            if weight is None:
                has_constant = node is not None and any(i in inits for i in node.input)
                if node is not None and node.op_type == "MatMul" and not has_constant:
                    weightless.append(node_name)  # activation x activation: nothing to compress
                else:
                    unmatched.append(f"{node_name}: its weight is computed in the graph, not a constant")
                continue
            init_name, value = weight
            best: tuple[float, Any, Any, bool] | None = None
            for op, const, coreml_value in candidates:
                if op.outputs[0].name in taken or coreml_value.size != value.size:
                    continue
                for transposed in (False, True):
                    reference = value.T if transposed else value
                    if transposed and value.ndim != 2:
                        continue
                    if reference.shape != coreml_value.shape:
                        continue
                    error = _closeness(reference, coreml_value)
                    if error <= MATCH_TOLERANCE and (best is None or error < best[0]):
                        best = (error, op, const, transposed)
            if best is None:
                unmatched.append(f"{node_name}: no Core ML weight holds the values of its ONNX weight")
                continue
            _, op, const, transposed = best
            taken.add(op.outputs[0].name)
            found_here += 1
            matches.append(
                WeightMatch(
                    layer_name,
                    node_name,
                    init_name,
                    const.name,
                    op.op_type,
                    op.outputs[0].name,
                    list(const.outputs[0].val.shape),
                    transposed,
                )
            )
        if unmatched:
            missing[layer_name] = "left uncompressed: " + "; ".join(unmatched)
        elif weightless and not found_here:
            missing[layer_name] = (
                "it multiplies two activations (no weight): weight compression does not apply, it runs in the "
                "model's float precision"
            )
    return matches, missing


def fp32_selector(model: onnx.ModelProto, plan: PrecisionPlan, layers: set[str]) -> Callable[[Any], bool]:
    """An op predicate for FP16ComputePrecision: true for Core ML ops whose weight holds the
    values of one of ``layers``' ONNX weights (those ops keep fp32 compute)."""
    inits = {i.name: i for i in model.graph.initializer}
    nodes = {n.name: n for n in model.graph.node}
    weights = []
    for name in layers:
        for node_name in plan.layers[name].nodes:
            node = nodes.get(node_name)
            found = _onnx_weight(model, node, inits) if node is not None else None
            if found is not None:
                weights.append(found[1])

    def keep(op) -> bool:
        for input_name in WEIGHT_INPUTS.get(op.op_type, ()):
            var = op.inputs.get(input_name)
            if var is None or var.val is None:
                continue
            value = np.asarray(var.val, dtype=np.float32)
            for weight in weights:
                for candidate in (weight, weight.T if weight.ndim == 2 else None):
                    if candidate is not None and candidate.shape == value.shape:
                        if _closeness(candidate, value) <= MATCH_TOLERANCE:
                            return True
        return False

    return keep


def const_of(weight_name: str, consts: set[str]) -> str | None:
    """Return the original constant (one of ``consts``) a possibly compressed weight came from,
    or None: compression ops are named ``<const>_palettized`` / ``<const>_quantized``."""
    if weight_name in consts:
        return weight_name
    for const in consts:
        if weight_name.startswith(const + "_"):
            return const
    return None


def applied_precisions(
    structure: dict[str, Any], matches: list[WeightMatch], plan: PrecisionPlan
) -> tuple[dict[str, str], dict[str, dict[str, Any]]]:
    """From the package's structure: ``{layer: precision found}`` and ``{onnx node: weight entry}``."""
    by_op = {m.coreml_op_name: m for m in matches}
    by_const = {m.const: m for m in matches}
    found_by_node: dict[str, dict[str, Any]] = {}
    for entry in structure["weights"]:
        match = by_op.get(entry["name"])
        if match is None:  # the op was renamed: fall back on the weight's name
            const = const_of(entry["weight"], set(by_const))
            match = by_const.get(const) if const is not None else None
        if match is not None:
            found_by_node[match.onnx_node] = {**entry, "layer": match.layer}
    applied: dict[str, str] = {}
    for layer_name, layer in plan.layers.items():
        found = {found_by_node[n]["precision"] for n in layer.nodes if n in found_by_node}
        if found:
            applied[layer_name] = found.pop() if len(found) == 1 else "mixed: " + ", ".join(sorted(found))
    return applied, found_by_node
