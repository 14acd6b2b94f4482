"""Custom operators on the TFLite route (issue 20), the ONNX side: which custom-domain nodes of
the model the TFLite file keeps as TFLite custom ops, and the stand-ins onnx2tf converts for them.

onnx2tf cannot convert a node of an unknown domain, and TensorFlow 2.21's converter has no hook
that turns a function into a named custom op. So each node whose entry says
``tflite=TFLiteCustom(name)`` is replaced in onnx2tf's copy by a *marker*: a standard
shape-preserving unary op (``Sin``, then ``Cos``) that the model does not use otherwise and that
becomes exactly one TFLite builtin (``SIN``/``COS``). After conversion and quantization the
child rewrites those builtins into ``CUSTOM`` ops named ``name``, with the node's attributes as
their flexbuffer options (:mod:`edgeport.formats.tflite.custom_flatbuffer`). Int8 leaves the
marker float (it has no int8 kernel), so the custom op is a float island with
dequantize/quantize around it, and the ranges after it are calibrated with the op's reference
(:mod:`edgeport.formats.tflite.custom_calibration`).

A decomposable op (``Decompose``) never reaches this module: the ONNX model the backend receives
already holds its standard ops. A custom node left in the model whose entry gives no TFLite
lowering, or which the marker cannot stand in for (not one float input and one output of its
shape), is refused with one line (exit 4).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import onnx
from onnx import helper

from edgeport.core.errors import ConversionError
from edgeport.core.runner_spec import RunnerSpec
from edgeport.formats.tflite.shapes import onnx_shape
from edgeport.ops import OpEntry, TFLiteCustom, find_onnx_op

# ONNX marker op -> the TFLite builtin it becomes (one op each, no int8 kernel: stays float).
MARKERS = {"Sin": "SIN", "Cos": "COS"}
STANDARD_DOMAINS = ("", "ai.onnx", "ai.onnx.ml")
_HINT = (
    "register it with edgeport.ops.register_op(..., tflite=TFLiteCustom(name)) for a TFLite custom op the app "
    "implements, or onnx=Decompose(fn) so that standard ops reach TFLite; or use --output_format onnx"
)


@dataclass
class CustomSite:
    """The custom nodes of one TFLite custom op (same entry, same attributes): one marker each."""

    entry: str  # the registry name, "namespace::op"
    custom_code: str  # the TFLite custom op's name (TFLiteCustom.name)
    marker: str  # the ONNX marker op type ("Sin") ...
    builtin: str  # ... and the TFLite builtin it becomes ("SIN")
    nodes: list[str] = field(default_factory=list)  # the ONNX node names
    shapes: list[list[Any]] = field(default_factory=list)  # each node's ONNX input shape
    attributes: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (for the conversion child's request and the artifact's facts)."""
        return asdict(self)


def _attributes(node: onnx.NodeProto) -> dict[str, Any]:
    """The node's attributes as plain Python values (bytes decoded)."""
    values = {}
    for attribute in node.attribute:
        value = helper.get_attribute_value(attribute)
        if isinstance(value, bytes):
            value = value.decode()
        elif isinstance(value, list):
            value = [v.decode() if isinstance(v, bytes) else v for v in value]
        values[attribute.name] = value
    return values


def _shapes(model: onnx.ModelProto) -> dict[str, tuple[list[Any], int]]:
    """``{value name: (shape, element type)}`` of the graph's inputs, outputs and value_info."""
    values = [*model.graph.input, *model.graph.output, *model.graph.value_info]
    return {v.name: (onnx_shape(v), v.type.tensor_type.elem_type) for v in values if v.type.HasField("tensor_type")}


def _registered(node: onnx.NodeProto) -> bool:
    """Whether ``node`` is a registered custom op (other non-standard nodes, such as
    ``com.microsoft`` ones onnx2tf knows by op type, are left to onnx2tf as before)."""
    return node.domain not in STANDARD_DOMAINS and find_onnx_op(node.domain, node.op_type) is not None


def has_tflite_custom_ops(model: onnx.ModelProto) -> bool:
    """Whether the .tflite of ``model`` will hold TFLite custom ops (it then cannot run in LiteRT here)."""
    return any(
        _registered(n) and isinstance(find_onnx_op(n.domain, n.op_type).tflite, TFLiteCustom) for n in model.graph.node
    )


def _tflite_entry(node: onnx.NodeProto) -> OpEntry:
    """The registry entry of a registered custom node; ConversionError when TFLite cannot keep it."""
    entry = find_onnx_op(node.domain, node.op_type)
    assert entry is not None
    name = f"{node.domain}::{node.op_type}"
    if not isinstance(entry.tflite, TFLiteCustom):
        why = (
            "its TFLite lowering is Decompose, but its ONNX lowering keeps the node (the decomposition that "
            "reaches TFLite is the ONNX one)"
            if entry.tflite is not None
            else "it has no TFLite lowering (a TFLite custom op or a decomposition into standard ops)"
        )
        raise ConversionError(f"TFLite: custom op {entry.name} stays a {name} node in ONNX and {why}", hint=_HINT)
    return entry


def _check_node(node: onnx.NodeProto, entry: OpEntry, shapes: dict[str, tuple[list[Any], int]]) -> list[Any]:
    """Return the node's input shape; ConversionError when a marker cannot stand in for it."""
    if len([i for i in node.input if i]) != 1 or len(node.output) != 1:
        raise ConversionError(
            f"TFLite custom op {entry.name}: node {node.name!r} has {len(node.input)} inputs and "
            f"{len(node.output)} outputs; edgeport emits TFLite custom ops for one float input and one output "
            "of the same shape only",
            hint="decompose the op (onnx=Decompose(fn)) or use --output_format onnx",
        )
    shape, dtype = shapes.get(node.input[0], ([], onnx.TensorProto.FLOAT))
    out_shape, out_dtype = shapes.get(node.output[0], (shape, dtype))
    # A symbolic dim matches any (the exporter names the output's batch anew: 'batch' -> 's77').
    same = len(out_shape) == len(shape) and all(
        not isinstance(a, int) or not isinstance(b, int) or a < 0 or b < 0 or a == b
        for a, b in zip(shape, out_shape, strict=True)
    )
    if dtype != onnx.TensorProto.FLOAT or out_dtype != onnx.TensorProto.FLOAT or (out_shape and not same):
        raise ConversionError(
            f"TFLite custom op {entry.name}: node {node.name!r} maps {shape} "
            f"({onnx.TensorProto.DataType.Name(dtype)}) to {out_shape} "
            f"({onnx.TensorProto.DataType.Name(out_dtype)}); edgeport emits TFLite custom ops for float ops "
            "that keep their input's shape only",
            hint="decompose the op (onnx=Decompose(fn)) or use --output_format onnx",
        )
    return shape


def mark_custom_nodes(model: onnx.ModelProto) -> tuple[onnx.ModelProto, list[CustomSite]]:
    """Return ``(a copy of model with each TFLite custom node replaced by its marker, the sites)``;
    the model itself when it has no registered custom node. Raises ConversionError (exit 4, one
    line) for a registered node with no TFLite lowering or that a marker cannot stand in for, and
    when the model already uses every marker op."""
    if not any(_registered(n) for n in model.graph.node):
        return model, []
    model = onnx.shape_inference.infer_shapes(model)  # input shapes for the layouts
    shapes = _shapes(model)
    free = [m for m in MARKERS if not any(n.op_type == m and n.domain in STANDARD_DOMAINS for n in model.graph.node)]
    sites: dict[tuple[str, str], CustomSite] = {}
    marked = onnx.ModelProto()
    marked.CopyFrom(model)
    for node in marked.graph.node:
        if not _registered(node):
            continue
        entry = _tflite_entry(node)
        shape = _check_node(node, entry, shapes)
        attributes = _attributes(node)
        key = (entry.name, repr(sorted(attributes.items())))
        if key not in sites:
            if not free:
                raise ConversionError(
                    f"TFLite custom ops: the model needs {len(sites) + 1} distinct custom ops and uses "
                    "every marker op edgeport can stand in with (Sin, Cos)",
                    hint="decompose one of the ops (onnx=Decompose(fn)) or use --output_format onnx",
                )
            marker = free.pop(0)
            assert isinstance(entry.tflite, TFLiteCustom)
            sites[key] = CustomSite(entry.name, entry.tflite.name, marker, MARKERS[marker], attributes=attributes)
        site = sites[key]
        site.nodes.append(node.name)
        site.shapes.append(shape)
        node.op_type, node.domain = site.marker, ""
        del node.attribute[:]
    # The custom domain's opset import goes with its last node (onnx2tf's checker would refuse it).
    used = {n.domain for n in marked.graph.node}
    kept = [o for o in marked.opset_import if o.domain in used or o.domain in STANDARD_DOMAINS]
    del marked.opset_import[:]
    marked.opset_import.extend(kept)
    return marked, list(sites.values())


def save_marked(model: onnx.ModelProto, copy: Path) -> None:
    """Write the marked model over onnx2tf's input copy (weights inline: the copy's folder has its data)."""
    onnx.save(model, str(copy))


def custom_op_facts(sites: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The artifact's ``custom_ops`` facts (manifest and report): per TFLite custom op, its name,
    the registered op, the nodes it stands for, its options, and what the app must do."""
    return [
        {
            "tflite_custom_op": site["custom_code"],
            "registered_op": site["entry"],
            "onnx_nodes": site["nodes"],
            "custom_options": ("flexbuffer map: " + ", ".join(sorted(site["attributes"])))
            if site["attributes"]
            else None,
            "app_must_register": (
                f"the app must register a kernel for TFLite custom op {site['custom_code']!r} "
                "(LiteRT C++: MutableOpResolver::AddCustom); it receives the float tensor in the .tflite's layout"
            ),
        }
        for site in sites
    ]


def not_run_reason(sites: list[dict[str, Any]]) -> str:
    """Why the latency of a .tflite with custom ops is not measured here."""
    names = ", ".join(repr(s["custom_code"]) for s in sites)
    return (
        f"not run: the .tflite holds TFLite custom op(s) {names}, whose kernels the app registers; "
        "LiteRT's Python API cannot register custom kernels, so the file does not run here "
        "(fidelity: LiteRT with the ops' Python references)"
    )


def custom_op_emulation(
    sites: list[dict[str, Any]], path: Path, runner_kwargs: dict[str, Any]
) -> tuple[list[dict[str, Any]], RunnerSpec]:
    """Return ``(the custom_ops facts, the emulation RunnerSpec)`` of a .tflite with custom ops:
    LiteRT runs its builtins and Python its custom ops
    (:class:`edgeport.formats.tflite.custom_emulation.CustomOpEmulationRunner`)."""
    from edgeport.formats.tflite.custom_kernels import op_sources

    kwargs = dict(runner_kwargs)
    kwargs.update(
        custom_ops=sites,
        op_sources=op_sources([s["entry"] for s in sites], strict=False),
        not_run=not_run_reason(sites),
    )
    return custom_op_facts(sites), RunnerSpec("litert-custom-emulated", str(path), kwargs)
