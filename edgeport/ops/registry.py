"""The custom-op registry: one table of :class:`~edgeport.ops.entries.OpEntry`, filled by
``register_op`` (from the user's op module, loaded with ``--custom_ops`` or the
``edgeport.custom_ops`` entry-point group) and read by the frontends, formats and verification."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from edgeport.core.errors import InputError
from edgeport.ops.entries import (
    CoreMLLowering,
    CustomNode,
    OnnxLowering,
    OpEntry,
    TFLiteLowering,
)

_REGISTRY: dict[str, OpEntry] = {}
# The file or module being loaded by load_custom_ops, recorded on each entry it registers.
_LOADING: list[str] = []


def _split(name: str) -> tuple[str, str]:
    namespace, sep, op = name.partition("::")
    if not sep or not namespace or not op or "::" in op:
        raise InputError(f"custom op name {name!r} is not 'namespace::op'", hint="e.g. 'mylib::fused_gated_gelu'")
    return namespace, op


def register_op(
    name: str,
    *,
    onnx: OnnxLowering | None = None,
    tflite: TFLiteLowering | None = None,
    coreml: CoreMLLowering | None = None,
    reference: Callable[..., Any] | None = None,
    int8: bool = False,
    onnx_domain: str | None = None,
    onnx_op_type: str | None = None,
) -> OpEntry:
    """Register (or replace) the custom op ``name`` (``"namespace::op"``: the torch qualname, and
    the ONNX ``domain::OpType`` unless ``onnx_domain``/``onnx_op_type`` are given) and return its entry.

    ``onnx``: ``Decompose(onnxscript_fn)`` or ``CustomNode(...)``; ``tflite``: ``Decompose()`` or
    ``TFLiteCustom(name)``; ``coreml``: ``CoreMLComposite(fn)``, ``TorchDecompose(fn)`` or
    ``Decompose()``. ``reference``: numpy in, numpy out, used by the parity check. ``int8``: the op
    has an int8 form (otherwise it stays float when the model around it is quantized)."""
    namespace, op = _split(name)
    entry = OpEntry(
        name=name,
        onnx=onnx,
        tflite=tflite,
        coreml=coreml,
        reference=reference,
        int8=int8,
        onnx_domain=onnx_domain or namespace,
        onnx_op_type=onnx_op_type or op,
        source=_LOADING[-1] if _LOADING else None,
    )
    _REGISTRY[name] = entry
    return entry


def add_entry(entry: OpEntry) -> None:
    """Register an entry made earlier (``register_op``'s result), replacing one of the same name."""
    _REGISTRY[entry.name] = entry


def unregister_op(name: str) -> None:
    """Remove ``name`` from the registry (no error when it is absent); tests use it."""
    _REGISTRY.pop(name, None)


def registered_ops() -> list[OpEntry]:
    """Return every registered entry, sorted by name."""
    return [_REGISTRY[k] for k in sorted(_REGISTRY)]


def find_torch_op(qualname: str) -> OpEntry | None:
    """Return the entry of the torch op ``namespace::op`` (an overload suffix ``.default`` is ignored), or None."""
    return _REGISTRY.get(qualname.split(".", 1)[0])


def find_onnx_op(domain: str, op_type: str) -> OpEntry | None:
    """Return the entry whose ONNX node is ``domain::op_type`` (its declared ONNX name or, for a
    ``CustomNode``, the node it keeps), or None."""
    for entry in _REGISTRY.values():
        if (domain, op_type) in {(entry.onnx_domain, entry.onnx_op_type), entry.onnx_node_name()}:
            return entry
    return None


def custom_node_entries() -> list[OpEntry]:
    """Return the entries whose ONNX lowering keeps a custom-domain node."""
    return [e for e in registered_ops() if isinstance(e.onnx, CustomNode)]
