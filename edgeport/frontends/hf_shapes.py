"""The input shapes of a Hugging Face text export: batch and sequence length, dynamic by
default and fixed when asked (--sequence_length, --input_shape) or needed (a static-shapes
profile or output format)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from edgeport.core.errors import InputError
from edgeport.core.registry import format_entry
from edgeport.options.groups import SourceOptions

DEFAULT_SEQUENCE_LENGTH = 128  # when the length must be fixed and --sequence_length is not given
SEQUENCE_DIM = "sequence"  # the symbolic sequence axis of a dynamic export
# Token count of made-up inputs when no text is given (a typical sentence has 15-30 tokens).
SYNTHETIC_SEQUENCE_LENGTH = 32


@dataclass
class SequenceShapes:
    """Input shapes of the export: batch (None = dynamic) and sequence length (None = dynamic)."""

    batch: int | None
    sequence_length: int | None


def static_reason(options: SourceOptions) -> str | None:
    """Why the sequence length must be fixed although nobody asked: the profile requires static
    shapes, or the output format's converter needs them. None when dynamic shapes are fine."""
    if format_entry(options.output_format).static_shapes:
        return f"the {options.output_format} conversion here needs static input shapes"
    from edgeport.profiles import resolve_profile

    try:
        profile, _ = resolve_profile(options.optimize_for, options.output_format)
    except InputError:
        return None  # the pipeline reports the bad profile itself
    if profile.constraints.static_shapes_only:
        return f"profile {profile.name} runs static shapes only (constraints.static_shapes_only)"
    return None


def resolve_shapes(
    config: dict[str, Any], options: SourceOptions, input_names: list[str]
) -> tuple[SequenceShapes, list[str], dict[str, str]]:
    """Batch and sequence length from --input_shape / --sequence_length; dynamic by default,
    fixed at 128 (capped by the model) when the profile or the format needs static shapes.

    Returns the shapes, notes and the report decision that says which and why.
    """
    notes = []
    limit = config.get("max_position_embeddings") or config.get("n_positions")
    batch: int | None = None
    length = options.sequence_length
    shapes = options.input_shape
    asked = "--sequence_length" if length is not None else None
    if shapes:
        dims_by_input = {s.name: s.dims for s in shapes}
        dims = next(iter(dims_by_input.values()))
        if any(name not in (None, *input_names) for name in dims_by_input):
            raise InputError(f"--input_shape names an input the model does not have (inputs: {', '.join(input_names)})")
        if len({tuple(d) for d in dims_by_input.values()}) != 1 or len(dims) != 2:
            raise InputError(
                "--input_shape for a Hugging Face text model is one batch,sequence_length pair for all inputs",
                hint="e.g. --input_shape 1,128 (or --sequence_length 128 with a dynamic batch)",
            )
        if length is not None and length != dims[1]:
            raise InputError(f"--input_shape says sequence length {dims[1]}, --sequence_length says {length}")
        batch, length = (None if options.dynamic_batch else dims[0]), dims[1]
        asked = "--input_shape"
    if length is not None:
        decision = {
            "asked": f"{asked} {length}",
            "done": f"sequence length fixed at {length} tokens",
            "why": "asked for; sentences are padded or truncated to it (latency is then measured on padding)",
        }
    else:
        why = static_reason(options)
        if why is None:
            decision = {
                "asked": "Hugging Face export, no --sequence_length",
                "done": "dynamic batch and sequence axes (as optimum exports them)",
                "why": "each sentence runs at its own length, as it will on the device; "
                "--sequence_length N fixes the length when a runtime needs it",
            }
        else:
            length = min(DEFAULT_SEQUENCE_LENGTH, int(limit)) if limit else DEFAULT_SEQUENCE_LENGTH
            decision = {
                "asked": "Hugging Face export, no --sequence_length",
                "done": f"sequence length fixed at {length} tokens",
                "why": f"{why}; --sequence_length N sets another length",
            }
            notes.append(f"sequence length {length} tokens (fixed: {why}; --sequence_length changes it)")
    if limit and length is not None and length > int(limit):
        raise InputError(f"--sequence_length {length} exceeds the model's {limit} positions (max_position_embeddings)")
    return SequenceShapes(batch, None if length is None else int(length)), notes, decision
