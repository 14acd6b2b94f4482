"""Where the time goes: ONNX Runtime's profiler, per op type and per planned layer.

ORT renames nodes when it fuses them (``node_Conv_70`` runs as ``node_Conv_70_token_1``), so
kernel times are matched to plan nodes by the longest plan node name they start with.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

PROFILE_RUNS = 30


def profile_onnx(
    model: Path, feeds: dict[str, np.ndarray], threads: int = 1, runs: int = PROFILE_RUNS
) -> dict[str, dict[str, float]]:
    """Run ``model`` ``runs`` times with ORT's profiler; return kernel milliseconds per run,
    by op type (``op_types``) and by executed node name (``nodes``)."""
    import onnxruntime as ort

    from edgeport.runtime.ort import custom_ops_in_use, session_options_with_custom_ops

    options = ort.SessionOptions()
    options.enable_profiling = True
    options.intra_op_num_threads = threads
    options.log_severity_level = 3
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    with tempfile.TemporaryDirectory(prefix="edgeport-profile-") as tmp:
        options.profile_file_prefix = os.path.join(tmp, "ort")
        libraries, transform = custom_ops_in_use()  # a model with custom ops (edgeport/ops)
        session_options_with_custom_ops(options, libraries)
        source = transform(str(model)) if transform else str(model)
        session = ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
        inputs = {i.name: feeds[i.name] for i in session.get_inputs()}
        session.run(None, inputs)  # warm-up, excluded below
        for _ in range(runs):
            session.run(None, inputs)
        events = json.loads(Path(session.end_profiling()).read_text())
    op_types: dict[str, float] = defaultdict(float)
    nodes: dict[str, float] = defaultdict(float)
    kernel_events = [e for e in events if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time")]
    # The first run's events are the warm-up: keep the last ``runs`` runs' share.
    per_run = len(kernel_events) // (runs + 1) if kernel_events else 0
    for event in kernel_events[per_run:]:
        op_types[event["args"].get("op_name", "?")] += event["dur"] / 1000 / runs
        nodes[event["name"][: -len("_kernel_time")]] += event["dur"] / 1000 / runs
    return {"op_types": dict(sorted(op_types.items(), key=lambda kv: -kv[1])), "nodes": dict(nodes)}


def layer_time_share(nodes: dict[str, float], layer_nodes: dict[str, list[str]]) -> dict[str, float]:
    """Share (0..1) of all kernel time spent in each planned layer's nodes."""
    total = sum(nodes.values()) or 1.0
    owners = sorted(
        ((node, layer) for layer, names in layer_nodes.items() for node in names), key=lambda item: -len(item[0])
    )
    shares: dict[str, float] = defaultdict(float)
    for executed, ms in nodes.items():
        for node, layer in owners:
            if executed == node or executed.startswith(node + "_"):
                shares[layer] += ms / total
                break
    return dict(shares)


def profile_section(
    reference: Path, artifact: Path, feeds: dict[str, np.ndarray], threads: int, layer_nodes: dict[str, list[str]]
) -> dict[str, Any]:
    """The report's "profile" section for ONNX artifacts: op-type times of both models and
    each layer's share of the artifact's time."""
    ref = profile_onnx(reference, feeds, threads)
    art = profile_onnx(artifact, feeds, threads)
    return {
        "runtime": "onnxruntime profiler (kernel time per run, ms)",
        "reference_op_types": ref["op_types"],
        "artifact_op_types": art["op_types"],
        "artifact_layer_share": layer_time_share(art["nodes"], layer_nodes),
    }
