"""Appending ONNX nodes and constants with unique names: the rewrites before onnx2tf build their
replacement subgraphs with it (:mod:`edgeport.formats.tflite.onnx2tf_gelu`,
:mod:`edgeport.formats.tflite.onnx2tf_unroll`)."""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


class NodeBuilder:
    """Appends nodes and constants with unique names under one prefix."""

    def __init__(self, prefix: str, taken: set[str]) -> None:
        self.prefix = prefix
        self.taken = taken
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[TensorProto] = []

    def name(self, hint: str) -> str:
        """Return a new name ``prefix/hint`` (with ``_N`` when taken) and mark it taken."""
        base = f"{self.prefix}/{hint}"
        name, i = base, 1
        while name in self.taken:
            name, i = f"{base}_{i}", i + 1
        self.taken.add(name)
        return name

    def const(self, hint: str, value: np.ndarray) -> str:
        """Add ``value`` as an initializer; return its name."""
        name = self.name(hint)
        self.initializers.append(numpy_helper.from_array(np.array(value, copy=True, order="C"), name))
        return name

    def op(self, op_type: str, inputs: list[str], hint: str, outputs: int = 1, **attrs: Any) -> list[str]:
        """Append an ``op_type`` node on ``inputs`` with ``outputs`` new outputs; return their names."""
        names = [self.name(f"{hint}_out{i}" if outputs > 1 else hint) for i in range(outputs)]
        self.nodes.append(helper.make_node(op_type, inputs, names, name=self.name(f"{hint}_node"), **attrs))
        return names

    def one(self, op_type: str, inputs: list[str], hint: str, **attrs: Any) -> str:
        """Append a single-output ``op_type`` node on ``inputs``; return its output's name."""
        return self.op(op_type, inputs, hint, **attrs)[0]
