"""The ``--cascade`` and ``--route`` grammar: the large model of a routed pair, and the rule that
routes between it and the small one (the small one's confidence, or the input's size)."""

from __future__ import annotations

from edgeport.core.errors import InputError
from edgeport.runtime.cascade import CONFIDENCE, RULES, SIZE

# The large models a cascade can name. "fp32": the run's own fp32 baseline (baseline_fp32.onnx,
# already in the bundle), so a cascade needs no second conversion.
LARGE_MODELS = ("fp32",)
HINT = "write --cascade fp32 (the run's artifact is the small model, its fp32 baseline the large one)"


def parse_cascade(value: str | None) -> str | None:
    """Return the canonical large-model name of ``--cascade`` (``"fp32"``), or None for no cascade.
    Raises InputError (one line) for any other value."""
    if value is None or not str(value).strip():
        return None
    text = str(value).strip().lower()
    if text not in LARGE_MODELS:
        raise InputError(f"bad --cascade {value!r}", hint=HINT)
    return text


def parse_route(value: str | None, cascade: str | None) -> str:
    """Return the canonical ``--route`` rule (``"confidence"``, the default, or ``"size"``).
    Raises InputError (one line) for another rule or for ``size`` without ``--cascade``."""
    text = CONFIDENCE if value is None or not str(value).strip() else str(value).strip().lower()
    if text not in RULES:
        raise InputError(f"bad --route {value!r}", hint=f"choose one of {', '.join(RULES)}")
    if text == SIZE and cascade is None:
        raise InputError("--route size needs --cascade", hint="add --cascade fp32 (the large model of the pair)")
    return text


def check_threshold(value: float | None, cascade: str | None, route: str = CONFIDENCE) -> float | None:
    """Return the forced ``--cascade_threshold`` as a float, or None (edgeport picks it): a
    confidence in [0, 1], or for ``--route size`` a size >= 0 (inputs above it go to the small
    model). Raises InputError when it is out of range or given without ``--cascade``."""
    if value is None:
        return None
    if cascade is None:
        raise InputError("--cascade_threshold needs --cascade", hint=HINT)
    threshold = float(value)
    if route == SIZE:
        if threshold < 0:
            raise InputError(f"--cascade_threshold must be a size >= 0 with --route size (got {value})")
        return threshold
    if not 0.0 <= threshold <= 1.0:
        raise InputError(f"--cascade_threshold must be in [0, 1] (got {value})")
    return threshold
