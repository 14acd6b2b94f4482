"""Op check of a coreml artifact: what the profile's runtime would not run where meant."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from edgeport.profiles.schema import DeviceProfile
from edgeport.verify.op_check import summary


def check_coreml(path: Path, profile: DeviceProfile) -> dict[str, Any]:
    """Count the ops of a saved .mlpackage (read, not run) and flag what the profile's Core ML
    target would not run where meant: fp32 compute on an fp16-only Neural Engine, flexible
    input shapes on a static-shapes-only target."""
    from edgeport.formats.coreml.inspect import inspect_package

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
    return summary(counts, flagged)
