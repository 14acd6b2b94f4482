"""Match precision-plan layers (ONNX nodes) to the weighted ops of a ``.tflite`` file.

onnx2tf does not keep ONNX node names in the TFLite tensor names of ordinary convolutions
(they become ``tf.nn.convolution_3``), and the TF converter folds constants into weights (a
``Div`` by the input std ends up inside the first conv's filter). So layers are matched by
their *weights*: the sorted weight values are invariant under the layout transposes
(OIHW -> OHWI) and, after dividing by the largest magnitude, under a folded scalar scale.
What no weight matches is matched by position among the remaining ops with as many weight
elements, and says so.

Needs numpy, onnx and ``ai_edge_litert`` only (no TensorFlow), so both the conversion child
and the parent process use it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

# TFLite builtin ops that carry a weight tensor at input index 1.
WEIGHTED_TFLITE_OPS = (
    "CONV_2D",
    "DEPTHWISE_CONV_2D",
    "FULLY_CONNECTED",
    "TRANSPOSE_CONV",
    "CONV_3D",
    "CONV_3D_TRANSPOSE",
    "BATCH_MATMUL",
)
_INT_TYPES = (np.int8, np.uint8, np.int16, np.int32)


@dataclass
class TFLiteWeightedOp:
    """One weighted op of a .tflite file: where it is and in which precision it runs."""

    index: int
    op: str
    output_name: str
    activation_dtype: str
    weight_dtype: str  # dtype as stored: float32, float16 (via DEQUANTIZE), int8...
    weight_via_dequantize: bool
    weights: np.ndarray = field(repr=False)  # float values (dequantized when stored quantized)
    weight_scale: float = 0.0  # largest quantization step of the stored weights (0 if float)

    @property
    def precision(self) -> str:
        """Return the plan precision this op really runs in (fp32, fp16, int8, int8-dynamic, int8-weight, int16)."""
        if self.weight_dtype == "float16":
            return "fp16"
        if self.weight_dtype in ("int8", "uint8", "int4"):
            if self.weight_via_dequantize:
                return "int8-weight"
            if self.activation_dtype == "int16":
                return "int16"
            return "int8" if self.activation_dtype in ("int8", "uint8") else "int8-dynamic"
        if self.activation_dtype == "int16":
            return "int16"
        if self.activation_dtype in ("int8", "uint8"):
            return "int8"
        return "fp32"


def _dequantize(values: np.ndarray, detail: dict) -> tuple[np.ndarray, float]:
    params = detail.get("quantization_parameters") or {}
    scales = np.asarray(params.get("scales", []), np.float32)
    zeros = np.asarray(params.get("zero_points", []), np.float32)
    if scales.size == 0 or values.dtype not in _INT_TYPES:
        return values.astype(np.float32), 0.0
    axis = int(params.get("quantized_dimension", 0))
    if scales.size > 1:
        view = [1] * values.ndim
        view[axis] = -1
        scales_b, zeros_b = scales.reshape(view), zeros.reshape(view) if zeros.size > 1 else zeros
    else:
        scales_b, zeros_b = scales, zeros
    return (values.astype(np.float32) - zeros_b) * scales_b, float(scales.max())


def tflite_weighted_ops(model: str | Path | bytes) -> list[TFLiteWeightedOp]:
    """Return the weighted ops (conv, fully connected, ...) of a .tflite model in execution order.

    The model is opened without delegates so the op list is the file's own.
    """
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    kwargs = {"model_content": bytes(model)} if isinstance(model, bytes | bytearray) else {"model_path": str(model)}
    interp = Interpreter(
        **kwargs,
        experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
        experimental_preserve_all_tensors=True,
    )
    interp.allocate_tensors()
    tensors = {t["index"]: t for t in interp.get_tensor_details()}
    ops = interp._get_ops_details()  # the only op-level view LiteRT offers
    producer = {out: op for op in ops for out in op["outputs"]}
    result = []
    for op in ops:
        if op["op_name"] not in WEIGHTED_TFLITE_OPS or len(op["inputs"]) < 2:
            continue
        act_idx, w_idx = op["inputs"][0], op["inputs"][1]
        if op["op_name"] == "TRANSPOSE_CONV":  # inputs: output_shape, weights, activation
            act_idx, w_idx = op["inputs"][2], op["inputs"][1]
        if w_idx < 0 or act_idx < 0:
            continue
        via_dequantize = False
        source = w_idx
        if w_idx in producer and producer[w_idx]["op_name"] == "DEQUANTIZE":
            via_dequantize = True
            source = producer[w_idx]["inputs"][0]
        elif w_idx in producer:
            continue  # weights computed at run time (e.g. a MatMul of two activations)
        try:
            raw = interp.get_tensor(source)
        except ValueError:
            continue
        weights, step = _dequantize(np.asarray(raw), tensors[source])
        result.append(
            TFLiteWeightedOp(
                index=int(op["index"]),
                op=op["op_name"],
                output_name=tensors[op["outputs"][0]]["name"],
                activation_dtype=np.dtype(tensors[act_idx]["dtype"]).name,
                weight_dtype=np.dtype(tensors[source]["dtype"]).name,
                weight_via_dequantize=via_dequantize,
                weights=weights,
                weight_scale=step,
            )
        )
    return result


def onnx_layer_weights(model: onnx.ModelProto, layers: dict[str, list[str]]) -> dict[str, list[np.ndarray]]:
    """Return ``{layer: [weight array per ONNX node]}`` for the nodes listed per layer.

    The weight is the node's second input when it is an initializer (Conv, Gemm, MatMul).
    Nodes without a constant weight are left out.
    """
    inits = {i.name: i for i in model.graph.initializer}
    constants = {
        n.output[0]: a.t for n in model.graph.node if n.op_type == "Constant" for a in n.attribute if a.name == "value"
    }
    nodes = {n.name: n for n in model.graph.node}
    result: dict[str, list[np.ndarray]] = {}
    for layer, names in layers.items():
        arrays = []
        for name in names:
            node = nodes.get(name)
            if node is None or len(node.input) < 2:
                continue
            weight = node.input[1]
            if node.op_type == "MatMul" and weight not in inits and node.input[0] in inits:
                weight = node.input[0]
            tensor = inits.get(weight) or constants.get(weight)
            if tensor is not None:
                arrays.append(numpy_helper.to_array(tensor).astype(np.float32))
        result[layer] = arrays
    return result


def _fingerprint(values: np.ndarray) -> np.ndarray:
    flat = np.sort(values.astype(np.float32).ravel())
    peak = float(np.abs(flat).max()) if flat.size else 0.0
    return flat / peak if peak > 0 else flat


def match_layers(
    onnx_weights: dict[str, list[np.ndarray]], ops: list[TFLiteWeightedOp]
) -> tuple[dict[str, list[TFLiteWeightedOp]], dict[str, str]]:
    """Match each layer's weights to TFLite ops; return ``({layer: [ops]}, {layer: how matched})``.

    First by value (sorted weights, scale-normalized, within the stored quantization step),
    then by position among unmatched ops of the same weight size. A layer none of whose
    weights could be found maps to an empty list.
    """
    prints = [_fingerprint(op.weights) for op in ops]
    used: set[int] = set()
    matched: dict[str, list[TFLiteWeightedOp]] = {}
    how: dict[str, str] = {}
    pending: list[tuple[str, np.ndarray]] = []
    for layer, arrays in onnx_weights.items():
        matched[layer] = []
        for array in arrays:
            target = _fingerprint(array)
            peak = float(np.abs(array).max()) or 1.0
            best, best_err = None, None
            for i, op in enumerate(ops):
                if i in used or prints[i].size != target.size:
                    continue
                err = float(np.abs(prints[i] - target).max()) if target.size else 0.0
                tol = max(1e-3, 1.2 * op.weight_scale / peak) if op.weight_scale else 1e-3
                if op.weight_dtype == "float16":
                    tol = 2e-3
                if err <= tol and (best_err is None or err < best_err):
                    best, best_err = i, err
            if best is None:
                pending.append((layer, array))
                continue
            used.add(best)
            matched[layer].append(ops[best])
            how.setdefault(layer, "weights")
    for layer, array in pending:
        candidates = [i for i, op in enumerate(ops) if i not in used and op.weights.size == array.size]
        if candidates:
            used.add(candidates[0])
            matched[layer].append(ops[candidates[0]])
            how[layer] = "position (weights changed by the converter)"
    return matched, how


def layer_precisions(matched: dict[str, list[TFLiteWeightedOp]]) -> dict[str, str]:
    """Return ``{layer: precision}`` from matched ops (``mixed:a+b`` when a layer's ops differ,
    ``missing`` when none was found)."""
    result = {}
    for layer, ops in matched.items():
        kinds = sorted({op.precision for op in ops})
        result[layer] = kinds[0] if len(kinds) == 1 else ("missing" if not kinds else "mixed:" + "+".join(kinds))
    return result


def channel_last_perm(onnx_shape: list, tflite_shape: list) -> list[int] | None:
    """Return the permutation taking an ONNX (channel-first) tensor to ``tflite_shape``.

    onnx2tf turns 3-D/4-D/5-D NC... tensors into N...C. Returns ``[0, 2, ..., 1]`` when the
    TFLite shape is the channel-last one, None when the shape is unchanged (or rank < 3).
    Axis 0 (batch) is not compared; symbolic/unknown dims (str, None, -1) match anything; a
    tie prefers channel-last, which is what onnx2tf does by default.
    """
    rank = len(onnx_shape)
    if rank < 3 or len(tflite_shape) != rank:
        return None

    def same(a: list, b: list) -> bool:
        return all(
            not isinstance(x, int) or not isinstance(y, int) or x < 0 or y < 0 or x == y
            for x, y in zip(a, b, strict=True)
        )

    perm = [0, *range(2, rank), 1]
    if same([onnx_shape[p] for p in perm][1:], list(tflite_shape)[1:]):  # the batch dim may differ
        return perm
    return None
