"""Running kept custom-domain nodes in ONNX Runtime: which libraries a session registers and how
nodes are renamed so that a Python kernel (onnxruntime-extensions' PyOp) serves them.

PyOp serves only domain ``ai.onnx.contrib`` with onnxruntime 1.32 (a node in the user's domain
is "not a registered function/op"), so a Python-kernel node ``mylib::RmsNormNoWeight`` runs as
``ai.onnx.contrib::edgeport_mylib_RmsNormNoWeight`` in the copy a session loads; the artifact
keeps ``mylib``. The prefixed name keeps clear of the extensions' own contrib ops.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import onnx

from edgeport.core.errors import InputError
from edgeport.core.extras import require
from edgeport.ops.entries import PYOP_DOMAIN, CustomNode, OpEntry
from edgeport.ops.registry import custom_node_entries

# PyOp names already registered in this process (onnxruntime-extensions keeps one global table).
_REGISTERED_PYOPS: set[str] = set()


def pyop_name(domain: str, op_type: str) -> str:
    """Return the op type a Python-kernel node of ``domain::op_type`` runs as in ai.onnx.contrib."""
    return f"edgeport_{domain.replace('.', '_')}_{op_type}"


def _register_pyop(entry: OpEntry, lowering: CustomNode) -> str:
    """Register the entry's Python kernel as a PyOp (once per process); return its op type."""
    from onnxruntime_extensions import PyCustomOpDef, onnx_op

    domain, op_type = entry.onnx_node_name()
    name = pyop_name(domain, op_type)
    if name in _REGISTERED_PYOPS:
        return name

    def dtype(kind: str) -> int:
        found = getattr(PyCustomOpDef, f"dt_{kind}", None)
        if found is None:
            raise InputError(f"custom op {entry.name}: unknown element type {kind!r} in CustomNode")
        return found

    kernel = lowering.python_kernel
    onnx_op(
        op_type=name,
        inputs=[dtype(k) for k in lowering.inputs],
        outputs=[dtype(k) for k in lowering.outputs],
        attrs={a: dtype(k) for a, k in lowering.attributes.items()} or None,
    )(kernel)
    _REGISTERED_PYOPS.add(name)
    return name


def session_custom_ops(
    extra_libraries: list[str] | tuple[str, ...] = (),
) -> tuple[list[str], Callable[[Any], Any] | None]:
    """Return what every ONNX Runtime session must do to run the registered kept nodes: the custom-op
    libraries to register (each entry's ``library``, ``extra_libraries`` from --custom_op_library, and
    onnxruntime-extensions' when a node has a Python kernel and no library) and the model transform
    that renames the Python kernels' nodes (``domain::OpType`` -> ``ai.onnx.contrib::edgeport_...``),
    None when there are none (edgeport.runtime.ort.use_custom_ops takes both)."""
    libraries = [str(Path(lib).expanduser()) for lib in extra_libraries]
    renames: dict[str, str] = {}
    for entry in custom_node_entries():
        lowering = entry.onnx
        assert isinstance(lowering, CustomNode)
        domain, op_type = entry.onnx_node_name()
        if lowering.library:
            libraries.append(str(Path(lowering.library).expanduser()))
        elif lowering.python_kernel is not None and not extra_libraries:
            require("onnxruntime_extensions", f"the Python kernel of custom op {entry.name}", "custom-ops")
            renames[f"{domain}::{op_type}"] = f"{PYOP_DOMAIN}::{_register_pyop(entry, lowering)}"
    if renames:
        from onnxruntime_extensions import get_library_path

        libraries.append(get_library_path())
    for library in libraries:
        if not Path(library).is_file():
            raise InputError(f"custom op library {library} not found")
    return list(dict.fromkeys(libraries)), (partial(renamed_model, renames=renames) if renames else None)


def renamed_model(model: str | Path | bytes, renames: dict[str, str]) -> str | Path | bytes:
    """Return ``model`` with its custom-domain nodes renamed per ``renames`` (serialized bytes), or
    ``model`` itself when no node needs it."""
    if not renames:
        return model
    proto = onnx.load_from_string(model) if isinstance(model, bytes) else onnx.load(str(model))
    changed = False
    domains = {o.domain: o.version for o in proto.opset_import}
    for node in proto.graph.node:
        target = renames.get(f"{node.domain}::{node.op_type}")
        if target:
            node.domain, _, node.op_type = target.partition("::")
            changed = True
            if node.domain not in domains:
                proto.opset_import.append(onnx.helper.make_opsetid(node.domain, 1))
                domains[node.domain] = 1
    return proto.SerializeToString() if changed else model


def runtime_needs(entry: OpEntry, extra_libraries: list[str] | tuple[str, ...] = ()) -> str | None:
    """Return what the app must register to run ``entry``'s kept ONNX node (a sentence for the
    manifest and the report), or None when its ONNX lowering is a decomposition."""
    lowering = entry.onnx
    if not isinstance(lowering, CustomNode):
        return None
    domain, op_type = entry.onnx_node_name()
    if lowering.library or extra_libraries:
        library = lowering.library or ", ".join(str(x) for x in extra_libraries)
        return f"the app must register the custom op library {library} (node {domain}::{op_type})"
    return (
        f"the app must register a kernel for {domain}::{op_type}: verified here with its Python kernel "
        "through onnxruntime-extensions (PyOp); ship a compiled custom-op library for the device"
    )
