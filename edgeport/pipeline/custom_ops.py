"""The run's custom operators (edgeport/ops): load the op modules the recipe names and the
installed entry points, and make every ONNX Runtime session of the run able to execute the
registered custom-domain nodes (their libraries, or their Python kernels through PyOp)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from edgeport.core.errors import InputError
from edgeport.core.model import SourceModel
from edgeport.ops import Decompose, OpEntry, find_onnx_op, load_custom_ops, load_entry_points, registered_ops
from edgeport.ops.onnx import kept_custom_nodes
from edgeport.ops.ort import runtime_needs, session_custom_ops
from edgeport.options.recipe import Recipe
from edgeport.quantize.islands import island_boundaries
from edgeport.runtime.ort import custom_ops_in_use, use_custom_ops
from edgeport.verify.custom_ops import decomposition_outputs, node_activations, node_attributes, parity
from edgeport.verify.memory import CUSTOM_OPS_ENV


@contextmanager
def custom_ops_session(specs: list[str], libraries: list[str]) -> Iterator[list[str]]:
    """Load the op modules ``specs`` and the ``edgeport.custom_ops`` entry points, make every ONNX
    Runtime session of this process run the registered kept nodes (with ``libraries``), restore
    the previous setting on exit, and yield the names of the ops loaded."""
    names: list[str] = []
    for spec in specs:
        names += load_custom_ops(spec)
    names += load_entry_points()
    previous, previous_env = custom_ops_in_use(), os.environ.get(CUSTOM_OPS_ENV)
    if registered_ops() or libraries:
        use_custom_ops(*session_custom_ops(libraries))
    if specs or libraries:  # the memory probe's child process loads them too
        os.environ[CUSTOM_OPS_ENV] = json.dumps({"specs": [str(s) for s in specs], "libraries": list(libraries)})
    try:
        yield sorted(set(names))
    finally:
        use_custom_ops(*previous)
        if previous_env is None:
            os.environ.pop(CUSTOM_OPS_ENV, None)
        else:
            os.environ[CUSTOM_OPS_ENV] = previous_env


@contextmanager
def custom_ops_active(recipe: Recipe) -> Iterator[list[str]]:
    """:func:`custom_ops_session` for a conversion's ``--custom_ops`` and ``--custom_op_library``."""
    options = recipe.options_for("custom_ops")
    with custom_ops_session(options.custom_ops, options.custom_op_library) as names:
        yield names


def require_custom_ops(bundle_dir: Path, given: bool) -> None:
    """Raise InputError (one line) when the bundle's artifact holds custom ops this host cannot run:
    a .tflite with TFLite custom ops (LiteRT's Python API registers no kernels), or kept ONNX
    custom nodes and no implementation ``given`` (--custom_ops / --custom_op_library)."""
    try:
        manifest = json.loads((Path(bundle_dir) / "manifest.json").read_text())
    except (OSError, ValueError):
        return  # verify_bundle reports a missing or unreadable manifest itself
    needs = manifest.get("custom_ops") or {}
    kept = sorted(name for name, need in needs.items() if need)
    if not kept:
        return
    if (manifest.get("runner") or {}).get("kind") == "litert":
        raise InputError(
            f"the bundle's .tflite holds TFLite custom ops whose kernels the app registers ({', '.join(kept)}); "
            "LiteRT's Python API cannot register kernels, so edgeport verify cannot re-run it",
            hint="run it in an app that registers the kernels (MutableOpResolver::AddCustom); the conversion's "
            "fidelity was emulated with the ops' references (report.json fidelity.emulated)",
        )
    if not given:
        raise InputError(
            f"the bundle's artifact keeps custom ops that ONNX Runtime needs an implementation of: {', '.join(kept)}",
            hint="pass --custom_ops FILE (the op module the conversion used) or --custom_op_library LIB",
        )


def custom_ops_decision(recipe: Recipe, names: list[str]) -> dict[str, str] | None:
    """Return the report's decision line for the custom ops loaded (None when there are none)."""
    if not names:
        return None
    return {
        "asked": "--custom_ops " + ",".join(recipe.custom_ops) if recipe.custom_ops else "entry points",
        "done": "registered " + ", ".join(names),
        "why": "custom ops are lowered as their entries say and verified against their reference",
    }


def _torch_inputs(source: SourceModel, feeds: dict[str, np.ndarray], entries: list[OpEntry]) -> dict[str, list]:
    if source.framework != "pytorch" or source.run is None or not entries:
        return {}
    from edgeport.frontends.torch_capture import capture_custom_op_inputs

    return capture_custom_op_inputs(source.run, feeds, {e.torch_qualname for e in entries})


def _source_nodes(source: SourceModel) -> list[onnx.NodeProto]:
    """The registered custom-domain nodes of an ONNX source file, as the user wrote them."""
    if source.framework != "onnx":
        return []
    graph = onnx.load(source.path, load_external_data=False).graph
    return [n for n in graph.node if find_onnx_op(n.domain, n.op_type) is not None]


def custom_ops_section(
    source: SourceModel, model: onnx.ModelProto, feeds: dict[str, np.ndarray], libraries: list[str]
) -> dict[str, Any] | None:
    """Return the report's "custom ops" section: for each registered op the model uses, its
    lowering, what the app must register, and its parity against ``reference`` on the activations
    that reach it with ``feeds`` (None when the model uses no registered op)."""
    if not registered_ops():
        return None
    kept = {entry.name: (name, entry) for name, entry in kept_custom_nodes(model)}
    source_nodes = _source_nodes(source)
    decomposed = [e for e in registered_ops() if isinstance(e.onnx, Decompose) and e.name not in kept]
    captured = _torch_inputs(source, feeds, decomposed)
    from_source = {find_onnx_op(n.domain, n.op_type).name: n for n in source_nodes}  # type: ignore[union-attr]
    used = [e for e in registered_ops() if e.name in kept or e.name in captured or e.name in from_source]
    if not used:
        return None
    probes = [n for n in model.graph.node if n.name in {name for name, _ in kept.values()}]
    probes += [n for e in used if (n := from_source.get(e.name)) is not None and e.name not in kept]
    values = node_activations(model, probes, feeds) if probes else {}
    ops: dict[str, Any] = {}
    for entry in used:
        ops[entry.name] = {**entry.describe(), "runtime_needs": runtime_needs(entry, libraries)}
        ops[entry.name]["parity"] = _op_parity(entry, kept, from_source, captured, values, model, bool(libraries))
    islands = sorted(name for name, e in kept.values() if not e.int8)
    # The Q/DQ a quantized artifact pays around them (the auto search charges these to its plans).
    python_kernels = [n for n, o in ops.items() if "PyOp" in str(o["parity"].get("measured_on"))]
    notes = [
        f"latency includes the Python kernel of {name} (PyOp): a compiled kernel in the app will time differently"
        for name in python_kernels
    ]
    return {"ops": ops, "float_islands": islands, "qdq_boundaries": island_boundaries(model), "notes": notes}


def _op_parity(entry, kept, from_source, captured, values, model, with_library) -> dict[str, Any]:  # noqa: ANN001
    """One op's parity: the kept node's ORT outputs, or the decomposition run alone, vs reference."""
    if entry.name in kept:
        node = next(n for n in model.graph.node if n.name == kept[entry.name][0])
        library = entry.onnx.library or with_library  # session_custom_ops: a library wins over a Python kernel
        how = "ONNX Runtime, " + ("the custom-op library" if library else "the Python kernel (PyOp)")
        inputs = [values[t] for t in node.input]
        return parity(entry, inputs, [values[t] for t in node.output], how, node_attributes(node))
    node = from_source.get(entry.name)
    if node is not None and all(t in values for t in [*node.input, *node.output]):
        how = "ONNX Runtime, the inlined decomposition in the model"
        outputs = [values[t] for t in node.output]
        return parity(entry, [values[t] for t in node.input], outputs, how, node_attributes(node))
    inputs = captured.get(entry.name)
    if inputs is None:
        return {"error": "the activations at the op were not found: parity not measured"}
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 18)
    return parity(entry, inputs, decomposition_outputs(entry, inputs, opset), "ONNX Runtime, the decomposition alone")


def manifest_needs(section: dict[str, Any], output_format: str, facts: dict[str, Any]) -> dict[str, str | None]:
    """Return the manifest's ``custom_ops``: per registered op the model uses, what the app must
    register to run this artifact (None: nothing, the op became standard ops or MIL ops). An ONNX
    artifact needs the kept node's kernel or library; a .tflite needs the kernel of the TFLite custom
    op it holds (``facts["custom_ops"]``, written by the TFLite backend); a Core ML package holds
    the op as MIL ops."""
    if output_format == "onnx":
        return {name: op["runtime_needs"] for name, op in section["ops"].items()}
    tflite = {c.get("registered_op"): c.get("app_must_register") for c in facts.get("custom_ops") or []}
    return {name: tflite.get(name) if output_format == "tflite" else None for name in section["ops"]}
