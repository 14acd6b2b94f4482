"""Op compatibility: which ops of an artifact the target's runtime would not run where the
profile means (fall back to the CPU, block a full-integer NPU graph, need dynamic shapes).

The checks read the artifact itself (TFLite ops and tensor types, ONNX nodes), not the plan,
so they report what will really run.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from edgeport.profiles.schema import DeviceProfile

WEIGHTED_ONNX_OPS = ("Conv", "ConvTranspose", "MatMul", "Gemm")


def _squash(name: str) -> str:
    return name.replace("_", "").upper()


def _matches_fallback(op_name: str, fallback: tuple[str, ...]) -> str | None:
    """Match a TFLite builtin name (TOPK_V2) to an ONNX fallback op type (TopK) by prefix."""
    squashed = _squash(op_name)
    aliases = {"NONZERO": "WHERE", "LOOP": "WHILE"}
    for onnx_op in fallback:
        target = aliases.get(_squash(onnx_op), _squash(onnx_op))
        if squashed.startswith(target):
            return onnx_op
    return None


def check_tflite(path: Path, profile: DeviceProfile) -> dict[str, Any]:
    """Count the ops of a .tflite file and flag those the profile's target would not run."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
    ops = interpreter._get_ops_details()  # the only listing LiteRT offers; stable since TF 2.5
    constraints = profile.constraints
    counts: Counter[str] = Counter(op["op_name"] for op in ops)
    flagged: dict[tuple[str, str], int] = Counter()
    for op in ops:
        name = op["op_name"]
        fallback = _matches_fallback(name, constraints.fallback_ops)
        if fallback:
            flagged[(name, f"{fallback} falls back to the CPU on {profile.name}")] += 1
        if name.startswith("FlexOp") or name == "CUSTOM" or name.startswith("Custom"):
            flagged[(name, "not a TFLite builtin: needs the Flex delegate or a custom op library")] += 1
        io = [tensors[i] for i in list(op["inputs"]) + list(op["outputs"]) if i >= 0 and i in tensors]
        if constraints.full_integer_only and name not in ("QUANTIZE", "DEQUANTIZE"):
            if any(np.dtype(t["dtype"]).kind == "f" for t in io):
                flagged[(name, "computes in float: runs on the CPU and splits the NPU graph")] += 1
        if constraints.static_shapes_only and any(-1 in list(t.get("shape_signature", [])) for t in io):
            flagged[(name, "has a dynamic dimension: the target needs static shapes")] += 1
    return _summary(counts, flagged)


def check_onnx(path: Path, profile: DeviceProfile) -> dict[str, Any]:
    """Count the node types of an ONNX file and flag those the profile's target would not run."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    producers = {out: node.op_type for node in model.graph.node for out in node.output}
    initializers = {i.name for i in model.graph.initializer}
    constraints = profile.constraints
    counts: Counter[str] = Counter(node.op_type for node in model.graph.node)
    flagged: dict[tuple[str, str], int] = Counter()
    for node in model.graph.node:
        if node.op_type in constraints.fallback_ops:
            flagged[(node.op_type, f"falls back to the CPU on {profile.name}")] += 1
        if constraints.full_integer_only and node.op_type in WEIGHTED_ONNX_OPS:
            weight = node.input[1] if len(node.input) > 1 else ""
            if weight in initializers or producers.get(weight) != "DequantizeLinear":
                flagged[(node.op_type, "float weights (not in a QDQ pair): runs on the CPU, not the NPU")] += 1
    if constraints.static_shapes_only:
        for value in model.graph.input:
            if any(d.dim_param or d.dim_value <= 0 for d in value.type.tensor_type.shape.dim):
                flagged[("input " + value.name, "has a dynamic dimension: the target needs static shapes")] += 1
    return _summary(counts, flagged)


def _summary(counts: Counter, flagged: Counter) -> dict[str, Any]:
    return {
        "ops": dict(sorted(counts.items())),
        "flagged": [{"op": op, "count": n, "why": why} for (op, why), n in sorted(flagged.items())],
    }


def check_coreml(path: Path, profile: DeviceProfile) -> dict[str, Any]:
    """Count the ops of a saved .mlpackage (read, not run) and flag what the profile's Core ML
    target would not run where meant: fp32 compute on an fp16-only Neural Engine, flexible
    input shapes on a static-shapes-only target."""
    from edgeport.converters.coreml_out import inspect_package

    structure = inspect_package(path)
    target = profile.formats.get("coreml")
    counts: Counter[str] = Counter(structure["ops"])
    flagged: dict[tuple[str, str], int] = Counter()
    if target is not None and "fp32" not in target.float_compute:
        for entry in structure["weights"]:
            if entry.get("compute") == "FLOAT32":
                flagged[(entry["op"], f"computes in fp32: {target.runtime} runs fp16 only, so it falls back")] += 1
    if profile.constraints.static_shapes_only:
        for feature in structure["inputs"]:
            if not feature.get("shape"):
                flagged[("input " + feature["name"], "has a flexible shape: the target needs static shapes")] += 1
    return _summary(counts, flagged)


def check_artifact(kind: str, path: Path, profile: DeviceProfile) -> dict[str, Any]:
    """Dispatch on the runner kind (``onnxruntime``, ``litert`` or ``coreml``); returns ops and flags."""
    if kind == "coreml":
        return check_coreml(path, profile)
    return check_tflite(path, profile) if kind == "litert" else check_onnx(path, profile)
