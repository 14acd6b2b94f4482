"""Input shapes for TFLite conversion: the static sizes to convert with, and ONNX shapes as lists."""

from __future__ import annotations

from typing import Any

import onnx


def static_shapes(specs: list[Any], samples: dict[str, Any]) -> dict[str, list[int]]:
    """Return ``{input: shape}`` with each symbolic dim taken from the sample of that input
    (``samples``: arrays by input name), -1 where neither the spec nor a sample knows it."""
    shapes = {}
    for spec in specs:
        sample = samples.get(spec.name)
        sample_shape = list(getattr(sample, "shape", ()))
        shapes[spec.name] = [
            d if isinstance(d, int) else (int(sample_shape[i]) if len(sample_shape) == len(spec.shape) else -1)
            for i, d in enumerate(spec.shape)
        ]
    return shapes


def onnx_shape(value: onnx.ValueInfoProto) -> list:
    """Return the shape of an ONNX input/output: each dim its size, else its symbolic name, else -1."""
    return [
        d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else (d.dim_param or -1)
        for d in value.type.tensor_type.shape.dim
    ]
