"""Python kernels for the TFLite custom ops edgeport emits: the registered ``reference`` (or the
ONNX ``CustomNode``'s Python kernel) of each op, fed and answered in the .tflite's layout.

The conversion child (a fresh process) and an emulation runner need them; the child gets the
op modules to load from :func:`op_sources` (what the user named with ``--custom_ops``, as
absolute paths: the child runs in another folder)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgeport.core.errors import ConversionError
from edgeport.formats.tflite.layers import channel_last_perm
from edgeport.ops import CustomNode, OpEntry, load_custom_ops, load_entry_points, registered_ops

ENTRY_POINT_PREFIX = "entry point "


def op_sources(names: list[str], strict: bool = True) -> list[str]:
    """Return the op modules (absolute ``.py`` paths, module names, or ``"entry point ..."``) that
    registered ``names``. An op registered from no module (in-process code another process cannot
    load) is skipped, or with ``strict`` a ConversionError."""
    by_name = {e.name: e for e in registered_ops()}
    sources = []
    for name in names:
        source = by_name[name].source
        if not source and not strict:
            continue
        if not source:
            raise ConversionError(
                f"TFLite custom op {name} was registered in this process, not from a module: the converter's "
                "child process cannot load its reference to calibrate or emulate it",
                hint="register it in a file or module passed with --custom_ops (or an edgeport.custom_ops entry point)",
            )
        if source.endswith(".py") or "/" in source:
            source = str(Path(source).expanduser().resolve())
        if source not in sources:
            sources.append(source)
    return sources


def load_sources(sources: list[str]) -> None:
    """Load the op modules ``sources`` (from :func:`op_sources`) into this process."""
    for source in sources:
        if source.startswith(ENTRY_POINT_PREFIX):
            load_entry_points()
        else:
            load_custom_ops(source)


def _implementation(entry: OpEntry) -> Any:
    """The op's Python implementation: its reference, else its ONNX CustomNode's Python kernel."""
    if entry.reference is not None:
        return entry.reference
    if isinstance(entry.onnx, CustomNode) and entry.onnx.python_kernel is not None:
        return entry.onnx.python_kernel
    raise ConversionError(
        f"TFLite custom op {entry.name} has no reference or Python kernel: nothing can compute it outside the app",
        hint="give register_op a reference= (numpy in, numpy out)",
    )


def site_kernel(site: dict[str, Any]) -> Any:
    """Return ``kernel(array, options) -> array`` for one custom op site (``CustomSite.to_dict()``):
    the array comes in the .tflite's layout, goes to the implementation in the ONNX layout (the
    site's ONNX shapes say which), and its result is returned in the .tflite's layout."""
    entry = next((e for e in registered_ops() if e.name == site["entry"]), None)
    if entry is None:
        raise ConversionError(f"TFLite custom op {site['custom_code']}: op {site['entry']} is not registered here")
    implementation = _implementation(entry)
    attributes = dict(site.get("attributes") or {})
    shapes = site.get("shapes") or []

    def kernel(array: np.ndarray, options: bytes | None = None) -> np.ndarray:
        perm = next((p for p in (channel_last_perm(s, list(array.shape)) for s in shapes) if p), None)
        value = array.transpose(np.argsort(perm)) if perm else array
        result = np.asarray(implementation(value.astype(np.float32), **attributes), dtype=np.float32)
        return np.ascontiguousarray(result.transpose(perm) if perm else result)

    return kernel
