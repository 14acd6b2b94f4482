"""The precision plan: which layer runs in which precision, with the scheme details.

The plan is data shared by every backend. Layers are named by their source path (e.g.
``features.1.0``) recovered from the exporter's node metadata, so one plan can be matched
to ONNX nodes, TFLite tensors and Core ML ops alike.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import onnx

from edgeport.core.layers import layer_name
from edgeport.core.vocabulary import CALIBRATED_SCHEMES, PRECISIONS, SCHEMES  # noqa: F401  (CALIBRATED_SCHEMES: re-exported)

if TYPE_CHECKING:  # annotations only: profiles sit above core
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
    """Return the details of ``scheme`` on ``profile`` (signedness, granularity, range, blocks)."""
    if scheme == "int8":
        return {**asdict(profile.int8), "format": "QDQ", "calibration": "minmax"}
    if scheme == "int8-dynamic":
        return {**asdict(profile.int8_dynamic), "format": "dynamic (weights int8 offline, activations at run time)"}
    if scheme == "int16":
        return {
            "activation_type": "int16",
            "weight_type": "int8",
            "per_channel": True,
            "activation_symmetric": True,
            "format": "QDQ with int16 activations (ONNX); 16x8 full integer (TFLite)",
            "calibration": "minmax",
        }
    if scheme == "fp16":
        return {"weights": "float16", "compute": "float16", "io": "float32 (cast at the graph edges)"}
    if scheme in ("int8-weight", "int4-weight"):
        block = profile.int4_weight.block_size if scheme == "int4-weight" else 128
        symmetric = profile.int4_weight.symmetric if scheme == "int4-weight" else True
        return {
            "weights": scheme.split("-")[0],
            "block_size": block,
            "symmetric": symmetric,
            "compute": "float",
            "format": "block-wise weight-only (ONNX: MatMulNBits)",
        }
    if scheme.startswith("palettize-"):
        bits = int(scheme.rsplit("-", 1)[1])
        return {
            "weights": f"{bits}-bit indices into a {2**bits}-entry look-up table",
            "clustering": "k-means",
            "granularity": "per tensor",
            "compute": "float",
            "format": "Core ML palettization (constexpr_lut_to_dense)",
        }
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


# Precisions only some output formats can express (the others express every precision, or map
# it and say so): palettization is a Core ML storage format (constexpr_lut_to_dense); neither
# ONNX nor TFLite has a look-up-table weight type.
FORMAT_ONLY_PRECISIONS = {"palettize-8": ("coreml",), "palettize-6": ("coreml",), "palettize-4": ("coreml",)}


def check_plan_format(plan: PrecisionPlan, output_format: str, where: str = "the precision plan") -> None:
    """Raise InputError (one line) when ``plan`` asks ``output_format`` for a precision it cannot
    express, naming the layers and the formats that can; return None when the format fits."""
    from edgeport.core.errors import InputError

    def fits(precision: str) -> bool:
        return output_format in FORMAT_ONLY_PRECISIONS.get(precision, (output_format,))

    offending: dict[str, list[str]] = {}
    for name, layer in plan.layers.items():
        if not fits(layer.precision):
            offending.setdefault(layer.precision, []).append(name)
    if not fits(plan.scheme):  # the scheme picks the quantizer even when no layer uses it
        offending.setdefault(plan.scheme, [])
    if not offending:
        return
    parts = []
    for precision, layers in sorted(offending.items()):
        shown = ", ".join(layers[:5]) + (f" and {len(layers) - 5} more" if len(layers) > 5 else "")
        formats = " or ".join(FORMAT_ONLY_PRECISIONS[precision])
        holders = f"layers {shown}" if layers else "the plan's scheme"
        parts.append(f"{precision} ({holders}) is expressible only in --output_format {formats}")
    supported = sorted({f for p in offending for f in FORMAT_ONLY_PRECISIONS[p]})
    raise InputError(
        f"{where}: --output_format {output_format} cannot express " + "; ".join(parts),
        hint=f"use --output_format {' or '.join(supported)}, or give those layers a precision "
        f"{output_format} runs (e.g. int8-weight or fp16) in the plan",
    )


def load_plan(path: Path, model: onnx.ModelProto, output_format: str | None = None) -> PrecisionPlan:
    """Read a ``precision_plan.json`` and match it to ``model``'s layers.

    The layer -> precision choices and scheme details come from the file; the ONNX node
    names are re-derived from ``model`` so the plan follows the model, not stale node ids.
    With ``output_format``, the plan is also checked against what that format can express
    (:func:`check_plan_format`: palettization is Core ML only). Returns the plan. Raises
    InputError when the file is invalid, names layers the model does not have, or asks the
    format for a precision it cannot express.
    """
    from edgeport.core.errors import InputError

    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read precision plan {path}: {exc}") from exc
    if not isinstance(data, dict) or data.get("version") != PLAN_VERSION:
        raise InputError(f"{path} is not an edgeport precision plan (version {PLAN_VERSION})")
    scheme = data.get("scheme")
    if scheme not in SCHEMES:
        raise InputError(f"{path}: field 'scheme': {scheme!r} is not one of {', '.join(SCHEMES)}")
    layers = data.get("layers")
    if not isinstance(layers, dict) or not isinstance(data.get("details"), dict):
        raise InputError(f"{path}: fields 'layers' and 'details' must be mappings")
    ensure_node_names(model)
    template = PrecisionPlan(scheme=scheme, profile=str(data.get("profile", "")), details=data["details"])
    for node in model.graph.node:
        if node.op_type in WEIGHTED_OPS:
            name = layer_name(node)
            template.layers.setdefault(name, LayerPrecision("", node.op_type, [])).nodes.append(node.name)
    unknown = sorted(set(layers) - set(template.layers))
    if unknown:
        raise InputError(
            f"{path}: layers not in this model: {', '.join(unknown[:5])}",
            hint="a plan re-applies only to the model it was made for",
        )
    for name, layer in template.layers.items():
        entry = layers.get(name)
        precision = entry.get("precision") if isinstance(entry, dict) else None
        if precision is None:
            raise InputError(f"{path}: layer {name!r} of the model has no precision in the plan")
        if precision not in PRECISIONS:
            raise InputError(f"{path}: layers.{name}.precision: {precision!r} is not one of {', '.join(PRECISIONS)}")
        layer.precision = precision
    if output_format is not None:
        check_plan_format(template, output_format, where=str(path))
    return template
