"""A small text-like ONNX model with a dynamic sequence axis, and real-shaped token data for it.

``tokens`` [batch, seq, 8] = (embedding(ids) @ w) * mask; ``pooled`` [batch, 8] is the masked
mean over the sequence, so padding a sentence (ids with the pad id, mask with 0) leaves
``pooled`` unchanged and ``tokens`` unchanged on the real positions.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

VOCAB, WIDTH = 50, 8


def text_model(path: Path, width: int = WIDTH) -> Path:
    """Write the model to ``path`` (opset 17), ``width`` values per token, and return it."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    table = numpy_helper.from_array(rng.standard_normal((VOCAB, width)).astype(np.float32), "table")
    weight = numpy_helper.from_array(rng.standard_normal((width, width)).astype(np.float32), "w")
    axes1 = numpy_helper.from_array(np.array([1], dtype=np.int64), "axes1")
    axes2 = numpy_helper.from_array(np.array([2], dtype=np.int64), "axes2")
    nodes = [
        helper.make_node("Gather", ["table", "input_ids"], ["embedded"]),
        helper.make_node("MatMul", ["embedded", "w"], ["projected"]),
        helper.make_node("Cast", ["attention_mask"], ["mask_f"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["mask_f", "axes2"], ["mask3"]),
        helper.make_node("Mul", ["projected", "mask3"], ["tokens"]),
        helper.make_node("ReduceSum", ["tokens", "axes1"], ["summed"], keepdims=0),
        helper.make_node("ReduceSum", ["mask3", "axes1"], ["count"], keepdims=0),
        helper.make_node("Div", ["summed", "count"], ["pooled"]),
    ]
    graph = helper.make_graph(
        nodes,
        "text",
        [
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "sequence"]),
            helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "sequence"]),
        ],
        [
            helper.make_tensor_value_info("tokens", TensorProto.FLOAT, ["batch", "sequence", width]),
            helper.make_tensor_value_info("pooled", TensorProto.FLOAT, ["batch", width]),
        ],
        [table, weight, axes1, axes2],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def text_data(path: Path, count: int = 48, width: int = 40, seed: int = 0) -> Path:
    """Write ``count`` token rows padded to ``width`` (natural lengths 3..width, pad id 0, mask
    1 on the real tokens) as an npz of input_ids/attention_mask; return the path."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(3, width + 1, count)
    ids = np.zeros((count, width), dtype=np.int64)
    mask = np.zeros((count, width), dtype=np.int64)
    for row, length in enumerate(lengths):
        ids[row, :length] = rng.integers(1, VOCAB, length)
        mask[row, :length] = 1
    np.savez(path, input_ids=ids, attention_mask=mask)
    return path
