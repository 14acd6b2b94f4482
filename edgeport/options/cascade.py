"""The ``--cascade`` grammar: which model answers when the small one is not confident enough."""

from __future__ import annotations

from edgeport.core.errors import InputError

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


def check_threshold(value: float | None, cascade: str | None) -> float | None:
    """Return the forced ``--cascade_threshold`` as a float in [0, 1], or None (edgeport picks
    it). Raises InputError when it is out of range or given without ``--cascade``."""
    if value is None:
        return None
    if cascade is None:
        raise InputError("--cascade_threshold needs --cascade", hint=HINT)
    threshold = float(value)
    if not 0.0 <= threshold <= 1.0:
        raise InputError(f"--cascade_threshold must be in [0, 1] (got {value})")
    return threshold
