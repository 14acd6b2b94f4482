"""Unstructured magnitude pruning on the ONNX weights of Conv/ConvTranspose/MatMul/Gemm layers.

Works on any source (the normalized ModelProto). The smallest-|w| fraction of each layer's
weight tensor becomes exactly zero. Dense kernels (ONNX Runtime, LiteRT/XNNPACK on CPU) do
the same work on zeros, so this buys compressed size (zeros gzip well), not speed; the
pipeline measures both and says so.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import numpy_helper

from edgeport.core.layers import layer_name

PRUNABLE_OPS = {"Conv": (1,), "ConvTranspose": (1,), "Gemm": (1, 0), "MatMul": (1, 0)}
MIN_WEIGHTS = 64  # smaller tensors (a 1x1 projection of a handful of channels) are left alone
LADDER = [round(0.05 * i, 2) for i in range(20)]  # 0, 0.05, ... 0.95


@dataclass
class WeightLayer:
    """One prunable weight tensor: its source layer name, its initializer and op, its size."""

    name: str
    initializer: str
    op: str
    size: int


def prunable_weights(model: onnx.ModelProto) -> list[WeightLayer]:
    """Return the float weight initializers of Conv/ConvTranspose/MatMul/Gemm nodes, one entry
    per tensor (a tensor shared by several nodes is pruned once), named by source layer."""
    inits = {i.name: i for i in model.graph.initializer}
    layers: list[WeightLayer] = []
    seen: set[str] = set()
    names: dict[str, int] = {}
    for node in model.graph.node:
        for index in PRUNABLE_OPS.get(node.op_type, ()):
            if index >= len(node.input) or node.input[index] not in inits:
                continue
            init = inits[node.input[index]]
            if init.data_type not in (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16):
                continue
            size = int(np.prod(init.dims)) if init.dims else 1
            if init.name in seen or size < MIN_WEIGHTS:
                break
            seen.add(init.name)
            name = layer_name(node)
            names[name] = names.get(name, 0) + 1
            if names[name] > 1:  # two weights under one module path (e.g. MatMul pairs)
                name = f"{name}#{names[name]}"
            layers.append(WeightLayer(name, init.name, node.op_type, size))
            break
    return layers


def _pruned(array: np.ndarray, ratio: float) -> np.ndarray:
    """``array`` with its ``ratio`` smallest-magnitude entries set to zero."""
    count = int(round(ratio * array.size))
    if count <= 0:
        return array
    flat = array.reshape(-1).copy()
    if count >= flat.size:
        return np.zeros_like(array)
    smallest = np.argpartition(np.abs(flat.astype(np.float32)), count - 1)[:count]
    flat[smallest] = 0
    return flat.reshape(array.shape)


class WeightEditor:
    """Prunes weights of one ModelProto in place and restores them: sensitivity trials change
    one tensor at a time without copying the whole model."""

    def __init__(self, model: onnx.ModelProto, layers: list[WeightLayer]) -> None:
        self.model = onnx.ModelProto()
        self.model.CopyFrom(model)
        self.layers = {layer.name: layer for layer in layers}
        self._protos = {i.name: i for i in self.model.graph.initializer}
        self.original = {layer.name: numpy_helper.to_array(self._protos[layer.initializer]) for layer in layers}

    def _write(self, layer: WeightLayer, array: np.ndarray) -> None:
        self._protos[layer.initializer].CopyFrom(numpy_helper.from_array(array, layer.initializer))

    def apply(self, ratios: dict[str, float]) -> dict[str, float]:
        """Prune each named layer to its ratio (from the original weights; others restored).
        Returns the achieved sparsity (fraction of exact zeros) per pruned layer."""
        achieved = {}
        for name, layer in self.layers.items():
            ratio = ratios.get(name, 0.0)
            array = _pruned(self.original[name], ratio) if ratio > 0 else self.original[name]
            self._write(layer, array)
            if ratio > 0:
                achieved[name] = float(np.mean(array == 0))
        return achieved

    def serialized(self) -> bytes:
        """The current model as bytes (for an ONNX Runtime session)."""
        return self.model.SerializeToString()

    def snapshot(self) -> onnx.ModelProto:
        """A copy of the current model."""
        copy = onnx.ModelProto()
        copy.CopyFrom(self.model)
        return copy


def masks_by_initializer(model: onnx.ModelProto, layers: list[WeightLayer]) -> dict[str, np.ndarray]:
    """Return ``{initializer name: boolean keep-mask}`` of the pruned layers (True = kept)."""
    inits = {i.name: i for i in model.graph.initializer}
    return {layer.initializer: numpy_helper.to_array(inits[layer.initializer]) != 0 for layer in layers}


def sparsity(model: onnx.ModelProto, layers: list[WeightLayer]) -> dict[str, float]:
    """Fraction of exact zeros in each layer's weight tensor."""
    inits = {i.name: i for i in model.graph.initializer}
    return {layer.name: float(np.mean(numpy_helper.to_array(inits[layer.initializer]) == 0)) for layer in layers}
