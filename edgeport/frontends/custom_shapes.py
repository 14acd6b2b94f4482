"""The shapes of kept custom nodes' outputs, measured by running the model once (ONNX shape
inference cannot see through a private op, and the Q/DQ boundary cost and ORT's calibrator
need them)."""

from __future__ import annotations

import numpy as np
import onnx

from edgeport.ops.onnx import kept_custom_nodes
from edgeport.verify.custom_ops import node_activations


def kept_output_shapes(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> dict[str, list[int | str]]:
    """Return the shape of every kept custom node's output, by tensor name, from one ONNX Runtime
    run on ``feeds``; a dimension equal to the feeds' batch size is written ``"batch"``."""
    names = {name for name, _ in kept_custom_nodes(model)}
    nodes = [n for n in model.graph.node if (n.name or n.output[0]) in names]
    if not nodes or not feeds:
        return {}
    values = node_activations(model, nodes, feeds)
    batch = next(iter(feeds.values())).shape[0] if next(iter(feeds.values())).ndim else None
    shapes: dict[str, list[int | str]] = {}
    for node in nodes:
        for name in node.output:
            if name in values:
                dims = list(values[name].shape)
                shapes[name] = ["batch" if i == 0 and d == batch else d for i, d in enumerate(dims)]
    return shapes
