"""Op check of a tflite artifact: what the profile's runtime would not run where meant."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from edgeport.profiles.schema import DeviceProfile
from edgeport.verify.op_check import matches_fallback, summary


def check_tflite(path: Path, profile: DeviceProfile) -> dict[str, Any]:
    """Count the ops of a .tflite file and flag those the profile's target would not run."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
    ops = interpreter._get_ops_details()  # the only listing LiteRT offers; stable since TF 2.5
    constraints = profile.constraints
    custom = _custom_codes(path)
    counts: Counter[str] = Counter(op["op_name"] for op in ops)
    flagged: dict[tuple[str, str], int] = Counter()
    for op in ops:
        name = op["op_name"]
        fallback = matches_fallback(name, constraints.fallback_ops)
        if fallback:
            flagged[(name, f"{fallback} falls back to the CPU on {profile.name}")] += 1
        if name in custom:
            flagged[(name, "TFLite custom op: the app must register its kernel (LiteRT here has none)")] += 1
        elif name.startswith("FlexOp") or name == "CUSTOM" or name.startswith("Custom"):
            flagged[(name, "not a TFLite builtin: needs the Flex delegate or a custom op library")] += 1
        io = [tensors[i] for i in list(op["inputs"]) + list(op["outputs"]) if i >= 0 and i in tensors]
        if constraints.full_integer_only and name not in ("QUANTIZE", "DEQUANTIZE"):
            if any(np.dtype(t["dtype"]).kind == "f" for t in io):
                flagged[(name, "computes in float: runs on the CPU and splits the NPU graph")] += 1
        if constraints.static_shapes_only and any(-1 in list(t.get("shape_signature", [])) for t in io):
            flagged[(name, "has a dynamic dimension: the target needs static shapes")] += 1
    return summary(counts, flagged)


def _custom_codes(path: Path) -> set[str]:
    """The names of the file's custom ops (LiteRT lists a custom op under its custom code)."""
    from edgeport.formats.tflite.ranges import unpack_model

    model = unpack_model(Path(path).read_bytes())
    return {code.customCode.decode() for code in model.operatorCodes if code.customCode}
