"""Custom operators on the Core ML route: each registered torch custom op the model calls is
lowered the way its entry's ``coreml`` lowering says (:mod:`edgeport.ops`).

- ``CoreMLComposite(fn)``: ``fn(context, node)`` is registered with coremltools'
  ``register_torch_op`` under the op's name for the duration of one conversion and removed after
  it (a previous translation of that name is put back), so nothing leaks between conversions;
- ``TorchDecompose(fn)``: the ``torch.export`` program is decomposed with ``{op: fn}`` before
  coremltools sees it;
- ``Decompose()``: the same with the op's own torch implementation (a ``torch.library.custom_op``
  written in torch ops traces into standard ATen ops).

A custom op with no Core ML lowering is refused before conversion with one line naming it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from edgeport.core.errors import ConversionError
from edgeport.ops import CoreMLComposite, Decompose, OpEntry, TorchDecompose, find_torch_op

_HINT = (
    "register the op with edgeport.ops.register_op(..., coreml=CoreMLComposite(fn) or TorchDecompose(fn)) "
    "in the --custom_ops file, or use --output_format onnx/tflite"
)


def _overload_name(target: Any) -> str | None:
    """``namespace::op`` of a non-ATen torch op overload, None for ATen/prims and Python callables."""
    name = getattr(target, "name", None)
    if not callable(name):
        return None
    try:
        qualname = str(name())
    except Exception:  # noqa: BLE001 - not an OpOverload
        return None
    namespace = qualname.split("::", 1)[0]
    return qualname.split(".", 1)[0] if "::" in qualname and namespace not in ("aten", "prims") else None


def custom_ops_in(program: Any) -> dict[str, Any]:
    """Return ``{"namespace::op": its OpOverload}`` for every non-ATen op the ``torch.export``
    program calls (registered or not)."""
    found: dict[str, Any] = {}
    for node in program.graph.nodes:
        if node.op == "call_function":
            qualname = _overload_name(node.target)
            if qualname:
                found.setdefault(qualname, node.target)
    return found


def _entries(ops: dict[str, Any]) -> dict[str, OpEntry]:
    """The registry entry of each op; ConversionError for an op with none or no Core ML lowering."""
    entries = {}
    for qualname in ops:
        entry = find_torch_op(qualname)
        if entry is None:
            raise ConversionError(f"Core ML: custom op {qualname} is not registered", hint=_HINT)
        if entry.coreml is None:
            raise ConversionError(f"Core ML: custom op {qualname} has no Core ML lowering", hint=_HINT)
        entries[qualname] = entry
    return entries


def _own_implementation(qualname: str) -> Callable[..., Any]:
    """The torch implementation a ``torch.library.custom_op`` was defined with."""
    from torch._library.custom_ops import _maybe_get_opdef

    opdef = _maybe_get_opdef(qualname)
    if opdef is None:
        raise ConversionError(
            f"Core ML: custom op {qualname} declares Decompose but is not a torch.library.custom_op, "
            "so it has no torch implementation to inline",
            hint="give it coreml=TorchDecompose(fn) with fn written in torch ops",
        )
    return opdef._init_fn  # the user's eager function: torch ops, traced by run_decompositions


def decomposition_table(program: Any) -> dict[Any, Callable[..., Any]]:
    """Return ``{OpOverload: torch function}`` for the program's custom ops whose Core ML lowering
    decomposes them (``TorchDecompose`` or ``Decompose``); ConversionError for an op that has no
    Core ML lowering (before coremltools fails on it with a less helpful message)."""
    ops = custom_ops_in(program)
    table: dict[Any, Callable[..., Any]] = {}
    for qualname, entry in _entries(ops).items():
        if isinstance(entry.coreml, TorchDecompose):
            table[ops[qualname]] = entry.coreml.fn
        elif isinstance(entry.coreml, Decompose):
            table[ops[qualname]] = _own_implementation(qualname)
    return table


def _composite_name(qualname: str) -> str:
    """The key coremltools looks a torch op up by (its ``sanitize_op_kind``: lower case, no overload)."""
    from coremltools.converters.mil.frontend.torch.utils import sanitize_op_kind

    return sanitize_op_kind(qualname)


@contextmanager
def composites_registered(entries: list[OpEntry]) -> Iterator[list[str]]:
    """Register every ``CoreMLComposite`` of ``entries`` with coremltools while the block runs and
    remove them after (restoring a translation the name had before); yields the names registered.

    coremltools keeps one process-wide table, so a composite left registered would change the
    next conversion of another model that calls an op of that name.
    """
    from coremltools.converters.mil.frontend.torch.torch_op_registry import _TORCH_OPS_REGISTRY

    table = _TORCH_OPS_REGISTRY.name_to_func_mapping
    saved: dict[str, Any] = {}
    names: list[str] = []
    try:
        for entry in entries:
            if isinstance(entry.coreml, CoreMLComposite):
                name = _composite_name(entry.torch_qualname)
                saved.setdefault(name, table.get(name))
                table[name] = entry.coreml.fn  # the same slot register_torch_op(override=True) fills
                names.append(name)
        yield names
    finally:
        for name, previous in saved.items():
            if previous is None:
                table.pop(name, None)
            else:
                table[name] = previous


def composite_entries() -> list[OpEntry]:
    """Return the registered entries whose Core ML lowering is a composite op."""
    from edgeport.ops import registered_ops

    return [e for e in registered_ops() if isinstance(e.coreml, CoreMLComposite)]


def custom_op_notes(program: Any) -> list[str]:
    """One note per custom op of the program: how it was lowered to Core ML."""
    notes = []
    for qualname, entry in _entries(custom_ops_in(program)).items():
        how = {
            CoreMLComposite: "a composite of MIL ops (coremltools register_torch_op); they run only on macOS, "
            "so off macOS the emulated fidelity computes the op as the ONNX model does",
            TorchDecompose: "its torch decomposition (TorchDecompose), before conversion",
            Decompose: "its own torch implementation, inlined before conversion",
        }[type(entry.coreml)]
        notes.append(f"custom op {qualname} lowered to Core ML as {how}")
    return notes
