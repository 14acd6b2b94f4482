"""Op compatibility: which ops of an artifact the target's runtime would not run where the
profile means (fall back to the CPU, block a full-integer NPU graph, need dynamic shapes).

The checks read the artifact itself (TFLite ops and tensor types, ONNX nodes), not the plan,
so they report what will really run.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

WEIGHTED_ONNX_OPS = ("Conv", "ConvTranspose", "MatMul", "Gemm")


def squash(name: str) -> str:
    """An op name without underscores, upper case: TFLite and ONNX spellings compare equal."""
    return name.replace("_", "").upper()


def matches_fallback(op_name: str, fallback: tuple[str, ...]) -> str | None:
    """Match a TFLite builtin name (TOPK_V2) to an ONNX fallback op type (TopK) by prefix."""
    squashed = squash(op_name)
    aliases = {"NONZERO": "WHERE", "LOOP": "WHILE"}
    for onnx_op in fallback:
        target = aliases.get(squash(onnx_op), squash(onnx_op))
        if squashed.startswith(target):
            return onnx_op
    return None


def summary(counts: Counter, flagged: Counter) -> dict[str, Any]:
    """Return the op-check section: op counts and the flagged ops with why."""
    return {
        "ops": dict(sorted(counts.items())),
        "flagged": [{"op": op, "count": n, "why": why} for (op, why), n in sorted(flagged.items())],
    }
