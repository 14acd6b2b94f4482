"""Source layer names for ONNX nodes: the PyTorch module path (e.g. ``features.1.0``) that
the exporter recorded, kept on each node as ``edgeport.layer`` metadata so that simplifiers
(which drop the exporter's metadata) do not lose it."""

from __future__ import annotations

import ast

import onnx

LAYER_KEY = "edgeport.layer"
_SCOPES_KEY = "pkg.torch.onnx.name_scopes"
_HIERARCHY_KEY = "pkg.torch.onnx.class_hierarchy"


def _literal_list(value: str | None) -> list[str]:
    if not value:
        return []
    try:
        parsed = ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return []
    return [str(v) for v in parsed] if isinstance(parsed, (list, tuple)) else []


def exporter_layer_name(node: onnx.NodeProto) -> str | None:
    """Return the module path the exporter recorded for ``node``, or None when there is none.

    The last scope is the aten op, the one before it the deepest module. A Conv into which
    the exporter fused a BatchNorm carries the BatchNorm's scope: its parent block is named.
    """
    props = {p.key: p.value for p in node.metadata_props}
    if LAYER_KEY in props:
        return props[LAYER_KEY]
    scopes = _literal_list(props.get(_SCOPES_KEY))
    modules = [s for s in scopes[:-1] if s]
    if not modules:
        return None
    hierarchy = _literal_list(props.get(_HIERARCHY_KEY))
    if (
        node.op_type.startswith("Conv")
        and len(hierarchy) >= 2
        and "batchnorm" in hierarchy[-2].lower()
        and len(modules) > 1
    ):
        return modules[-2]
    return modules[-1]


def layer_name(node: onnx.NodeProto) -> str:
    """Return the node's source layer name: exporter metadata, the TorchScript exporter's
    ``/features/features.1/Conv`` naming, else the node name."""
    name = exporter_layer_name(node)
    if name:
        return name
    if node.name.startswith("/") and node.name.count("/") > 1:
        return torchscript_scope_path(node.name)
    return node.name or node.op_type


def torchscript_scope_path(node_name: str) -> str:
    """``/bert/encoder/layer.0/attention/self/query/MatMul`` -> ``bert.encoder.layer.0.attention.self.query``.

    Older exporter versions repeat the full path in each scope (``/features/features.1/Conv``);
    then the last scope is already the module path.
    """
    scopes = node_name.strip("/").split("/")[:-1]
    if len(scopes) > 1 and all(b.startswith(a + ".") for a, b in zip(scopes, scopes[1:], strict=False)):
        return scopes[-1]
    return ".".join(scopes)


def record_layer_names(model: onnx.ModelProto) -> dict[str, str]:
    """Return ``{first output tensor name: layer name}`` for nodes with exporter metadata."""
    names = {}
    for node in model.graph.node:
        name = exporter_layer_name(node)
        if name and node.output:
            names[node.output[0]] = name
    return names


def restore_layer_names(model: onnx.ModelProto, names: dict[str, str]) -> None:
    """Write ``edgeport.layer`` metadata onto nodes whose first output is in ``names``."""
    for node in model.graph.node:
        if node.output and node.output[0] in names and not any(p.key == LAYER_KEY for p in node.metadata_props):
            entry = node.metadata_props.add()
            entry.key, entry.value = LAYER_KEY, names[node.output[0]]
