"""Float islands: kept custom-domain nodes that stay float in a quantized model (edgeport/ops),
and the Q/DQ boundaries around them, which a quantized plan pays for.

Each tensor that crosses into an island from quantized ops needs a DequantizeLinear, and each
that leaves it for quantized ops a QuantizeLinear: one pass over the tensor's elements each. The
search charges those elements (at one MAC each, batch 1) to every plan that quantizes anything.
"""

from __future__ import annotations

import math
from typing import Any

import onnx

from edgeport.ops.onnx import kept_custom_nodes


def _elements(value: onnx.ValueInfoProto | None) -> int:
    """Elements of one sample of a tensor (symbolic or unknown dims count 1: the batch)."""
    if value is None or not value.type.tensor_type.HasField("shape"):
        return 1
    return math.prod(d.dim_value if d.dim_value > 0 else 1 for d in value.type.tensor_type.shape.dim)


def island_boundaries(model: onnx.ModelProto) -> list[dict[str, Any]]:
    """Return the tensors crossing into or out of float islands: ``tensor``, ``node`` (the island),
    ``direction`` ("in": a DequantizeLinear, "out": a QuantizeLinear) and ``elements`` per sample."""
    islands = {name for name, entry in kept_custom_nodes(model) if not entry.int8}
    if not islands:
        return []
    graph = model.graph
    values = {v.name: v for v in [*graph.value_info, *graph.input, *graph.output]}
    constants = {i.name for i in graph.initializer}
    producers = {out: node for node in graph.node for out in node.output}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    boundaries = []
    for node in graph.node:
        if node.name not in islands:
            continue
        for name in node.input:
            producer = producers.get(name)
            if name and name not in constants and (producer is None or producer.name not in islands):
                boundaries.append(
                    {"tensor": name, "node": node.name, "direction": "in", "elements": _elements(values.get(name))}
                )
        for name in node.output:
            if any(c.name not in islands for c in consumers.get(name, [])):
                boundaries.append(
                    {"tensor": name, "node": node.name, "direction": "out", "elements": _elements(values.get(name))}
                )
    return boundaries


def boundary_macs(model: onnx.ModelProto) -> int:
    """Return the elements (per sample) the Q/DQ boundaries of the float islands convert: the cost,
    in MACs, the search charges to a plan that quantizes anything."""
    return sum(b["elements"] for b in island_boundaries(model))
