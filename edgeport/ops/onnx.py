"""The registry's ONNX lowerings: the torch exporter's translation table, inlining a
decomposition in place of a custom-domain node, and finding the nodes that stay custom."""

from __future__ import annotations

from typing import Any

import onnx

from edgeport.core.errors import ConversionError
from edgeport.ops.entries import CustomNode, Decompose, OpEntry
from edgeport.ops.registry import find_onnx_op, registered_ops

# What a model whose custom op is not registered is told (exit 4).
REGISTRY_HINT = "register it with edgeport.ops.register_op and pass --custom_ops FILE"


def _torch_op(qualname: str) -> Any | None:
    """``torch.ops.namespace.op.default``, or None when torch does not know the op (not loaded)."""
    import torch

    namespace, _, name = qualname.partition("::")
    try:
        return getattr(getattr(torch.ops, namespace), name).default
    except (AttributeError, RuntimeError):
        return None


def custom_node_translation(domain: str, op_type: str, inputs: int = 1, outputs: int = 1, types=("float",)) -> Any:
    """Return a torch-exporter translation that emits one node ``domain::op_type`` with ``inputs``
    inputs and ``outputs`` outputs of element ``types`` (a schema is built here: the exporter needs
    one to count inputs and outputs, and a private domain has none)."""
    import onnxscript

    formal = onnx.defs.OpSchema.FormalParameter
    schema = onnx.defs.OpSchema(
        op_type,
        domain,
        1,
        inputs=[formal(f"input{i}", "T") for i in range(inputs)],
        outputs=[formal(f"output{i}", "T") for i in range(outputs)],
        type_constraints=[("T", sorted({f"tensor({k})" for k in types}), "")],
    )
    node_op = onnxscript.values.Op(onnxscript.values.Opset(domain, 1), op_type, schema)

    def translate(*args: Any) -> Any:
        return node_op(*args)

    return translate


def torch_translation_table() -> dict[Any, Any]:
    """Return ``custom_translation_table`` for ``torch.onnx.export(dynamo=True)``: each registered
    torch op known to torch maps to its onnxscript decomposition or to one custom-domain node."""
    table: dict[Any, Any] = {}
    for entry in registered_ops():
        target = _torch_op(entry.torch_qualname)
        if target is None or entry.onnx is None:
            continue
        if isinstance(entry.onnx, Decompose) and entry.onnx.fn is not None:
            table[target] = entry.onnx.fn
        elif isinstance(entry.onnx, CustomNode):
            domain, op_type = entry.onnx_node_name()
            lowering = entry.onnx
            types = lowering.inputs + lowering.outputs
            table[target] = custom_node_translation(domain, op_type, len(lowering.inputs), len(lowering.outputs), types)
    return table


def _function_proto(entry: OpEntry, domain: str, op_type: str) -> onnx.FunctionProto:
    """The entry's decomposition as a model-local function named like the node it replaces."""
    fn = entry.onnx.fn if isinstance(entry.onnx, Decompose) else None
    if fn is None or not hasattr(fn, "to_function_proto"):
        raise ConversionError(
            f"custom op {entry.name}: its ONNX Decompose has no onnxscript function to inline",
            hint="give Decompose an @onnxscript.script() function of standard ops",
        )
    proto = onnx.FunctionProto()
    proto.CopyFrom(fn.to_function_proto())
    proto.domain, proto.name = domain, op_type
    return proto


def inline_decompositions(model: onnx.ModelProto) -> tuple[onnx.ModelProto, list[str]]:
    """Replace every custom-domain node whose registered ONNX lowering is ``Decompose`` by its
    standard ops (inlined model-local functions); return the model and the op names inlined."""
    from onnx import inliner

    known = {(f.domain, f.name) for f in model.functions}
    inlined: list[str] = []
    for node in model.graph.node:
        entry = find_onnx_op(node.domain, node.op_type)
        if entry is None or not isinstance(entry.onnx, Decompose) or (node.domain, node.op_type) in known:
            continue
        function = _function_proto(entry, node.domain, node.op_type)
        model.functions.append(function)
        known.add((node.domain, node.op_type))
        inlined.append(entry.name)
        imported = {o.domain for o in model.opset_import}
        for opset in function.opset_import:
            if opset.domain not in imported:
                model.opset_import.append(onnx.helper.make_opsetid(opset.domain, opset.version))
    if not inlined:
        return model, []
    model = inliner.inline_local_functions(model)
    # The node's domain stays imported by no node now: drop it so the file declares what it uses.
    used = {n.domain for n in model.graph.node} | {""}
    kept = [o for o in model.opset_import if o.domain in used or o.domain.startswith("ai.onnx")]
    del model.opset_import[:]
    model.opset_import.extend(kept)
    return model, sorted(set(inlined))


def kept_custom_nodes(model: onnx.ModelProto) -> list[tuple[str, OpEntry]]:
    """Return (node name, entry) for each node of ``model`` that is a registered kept custom op."""
    return [(name, entry) for name, entry, _ in _kept(model)]


_ELEM_TYPES = {
    "float": onnx.TensorProto.FLOAT,
    "double": onnx.TensorProto.DOUBLE,
    "int64": onnx.TensorProto.INT64,
    "int32": onnx.TensorProto.INT32,
    "float16": onnx.TensorProto.FLOAT16,
    "bool": onnx.TensorProto.BOOL,
}


def annotate_custom_outputs(
    model: onnx.ModelProto, shapes: dict[str, list[int | str]] | None = None
) -> onnx.ModelProto:
    """Give every kept custom node's outputs a typed ``value_info`` (shape inference knows nothing
    of a private op, and ORT's calibrator only calibrates tensors of a known float type), with the
    shape from ``shapes`` (by tensor name: measured by a run, see frontends/custom_shapes.py) when
    given, else rank unknown; return ``model``."""
    # Shape inference leaves an untyped value_info for a private op's output (after the exporter's
    # typed one): drop the untyped ones, or ORT's quantizer (last one wins) sees no type.
    untyped = [v for v in model.graph.value_info if v.type.tensor_type.elem_type == 0]
    for value in untyped:
        model.graph.value_info.remove(value)
    values = list(model.graph.value_info) + list(model.graph.input) + list(model.graph.output)
    known = {v.name: v for v in values if v.type.tensor_type.elem_type != 0}
    for _, entry, node in _kept(model):
        for index, name in enumerate(node.output):
            if name in known:
                continue
            kind = entry.onnx.outputs[index] if index < len(entry.onnx.outputs) else "float"
            elem = _ELEM_TYPES.get(kind, onnx.TensorProto.FLOAT)
            info = onnx.helper.make_tensor_value_info(name, elem, (shapes or {}).get(name))
            model.graph.value_info.append(info)
            known[name] = info
    return model


def _kept(model: onnx.ModelProto) -> list[tuple[str, OpEntry, onnx.NodeProto]]:
    found = []
    for node in model.graph.node:
        entry = find_onnx_op(node.domain, node.op_type)
        if entry is not None and isinstance(entry.onnx, CustomNode):
            found.append((node.name or node.output[0], entry, node))
    return found
