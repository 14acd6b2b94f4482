"""Op check of a onnx artifact: what the profile's runtime would not run where meant."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from edgeport.ops.ort import runtime_needs
from edgeport.ops.registry import find_onnx_op
from edgeport.profiles.schema import DeviceProfile
from edgeport.verify.op_check import WEIGHTED_ONNX_OPS, summary


def check_onnx(path: Path, profile: DeviceProfile) -> dict[str, Any]:
    """Count the node types of an ONNX file and flag those the profile's target would not run."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    producers = {out: node.op_type for node in model.graph.node for out in node.output}
    initializers = {i.name for i in model.graph.initializer}
    constraints = profile.constraints
    counts: Counter[str] = Counter(node.op_type for node in model.graph.node)
    flagged: dict[tuple[str, str], int] = Counter()
    for node in model.graph.node:
        if node.domain not in ("", "ai.onnx", "ai.onnx.ml", "com.microsoft"):
            entry = find_onnx_op(node.domain, node.op_type)
            needs = runtime_needs(entry) if entry is not None else None
            flagged[(f"{node.domain}::{node.op_type}", needs or "a custom op no runtime implements")] += 1
        if node.op_type in constraints.fallback_ops:
            flagged[(node.op_type, f"falls back to the CPU on {profile.name}")] += 1
        if constraints.full_integer_only and node.op_type in WEIGHTED_ONNX_OPS:
            weight = node.input[1] if len(node.input) > 1 else ""
            if weight in initializers or producers.get(weight) != "DequantizeLinear":
                flagged[(node.op_type, "float weights (not in a QDQ pair): runs on the CPU, not the NPU")] += 1
    if constraints.static_shapes_only:
        for value in model.graph.input:
            if any(d.dim_param or d.dim_value <= 0 for d in value.type.tensor_type.shape.dim):
                flagged[("input " + value.name, "has a dynamic dimension: the target needs static shapes")] += 1
    return summary(counts, flagged)
