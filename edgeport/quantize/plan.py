"""The precision plan: which layer runs in which precision, with the scheme details.

The plan is data shared by every backend. Layers are named by their source path (e.g.
``features.1.0``) recovered from the exporter's node metadata, so one plan can be matched
to ONNX nodes, TFLite tensors and Core ML ops alike.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import onnx

from edgeport.layers import layer_name
from edgeport.profiles.schema import DeviceProfile

PLAN_VERSION = 1
# Op types whose weights/compute a plan assigns a precision to (ORT quantizes these).
WEIGHTED_OPS = ("Conv", "ConvTranspose", "MatMul", "Gemm")


@dataclass
class LayerPrecision:
    """One planned layer: its precision, its op type and the ONNX nodes it covers."""

    precision: str
    op: str
    nodes: list[str]


@dataclass
class PrecisionPlan:
    """``{layer: precision}`` plus the scheme details; saved as ``precision_plan.json``."""

    scheme: str
    profile: str
    details: dict[str, Any]
    layers: dict[str, LayerPrecision] = field(default_factory=dict)
    version: int = PLAN_VERSION

    def nodes_in(self, precision: str) -> list[str]:
        """Return the ONNX node names planned in ``precision``."""
        return [n for layer in self.layers.values() if layer.precision == precision for n in layer.nodes]

    def nodes_not_in(self, precision: str) -> list[str]:
        """Return the ONNX node names of planned layers kept out of ``precision``."""
        return [n for layer in self.layers.values() if layer.precision != precision for n in layer.nodes]

    def to_json(self) -> str:
        """Serialize the plan (stable key order)."""
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    def save(self, path: Path) -> None:
        """Write the plan to ``path`` as JSON."""
        path.write_text(self.to_json() + "\n")


def ensure_node_names(model: onnx.ModelProto) -> None:
    """Give every unnamed node a unique name (quantizers select nodes by name)."""
    used = {n.name for n in model.graph.node if n.name}
    for i, node in enumerate(model.graph.node):
        if not node.name:
            name = f"{node.op_type}_{i}"
            while name in used:
                name += "_"
            node.name = name
            used.add(name)


def scheme_details(scheme: str, profile: DeviceProfile) -> dict[str, Any]:
    """Return the details of ``scheme`` on ``profile`` (signedness, granularity, range)."""
    if scheme == "int8":
        return {**asdict(profile.int8), "format": "QDQ", "calibration": "minmax"}
    if scheme == "int8-dynamic":
        return {**asdict(profile.int8_dynamic), "format": "dynamic (weights int8 offline, activations at run time)"}
    if scheme == "fp16":
        return {"weights": "float16", "compute": "float16", "io": "float32 (cast at the graph edges)"}
    return {"weights": "float32", "compute": "float32"}


def uniform_plan(model: onnx.ModelProto, scheme: str, profile: DeviceProfile) -> PrecisionPlan:
    """Plan every weighted layer of ``model`` in one precision (``scheme``); return the plan."""
    ensure_node_names(model)
    precision = "fp32" if scheme == "none" else scheme
    plan = PrecisionPlan(scheme=scheme, profile=profile.name, details=scheme_details(scheme, profile))
    for node in model.graph.node:
        if node.op_type not in WEIGHTED_OPS:
            continue
        name = layer_name(node)
        layer = plan.layers.get(name)
        if layer is None:
            plan.layers[name] = LayerPrecision(precision, node.op_type, [node.name])
        else:
            layer.nodes.append(node.name)
    return plan
