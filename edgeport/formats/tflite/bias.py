"""Empirical bias correction of a full-integer TFLite model, measured on its own int8 kernels.

Rounding weights to int8 and activations to their calibrated grids shifts each layer's
output mean (Nagel et al., "Data-Free Quantization", 2019; Finkelstein et al., "Fighting
Quantization Bias With Bias", 2019). The analytic correction (edgeport/quantize/
bias_correction.py) predicts the shift from the weights alone; this one measures it: the
quantized model and the float model it was quantized from run on calibration samples, and
each int8 layer's int32 bias absorbs the difference of its per-channel output means. Layers
are corrected one at a time, in graph order, each measured after the layers before it were
corrected, because a correction upstream changes every mean downstream (correcting all of
them from one run diverges: measured on EfficientNet-Lite0, agreement fell to 0).

EfficientNet-Lite0, 108 held-out photos, top-1 agreement with fp32 (64 calibration crops):
plain int8 0.759 -> 0.926 corrected; mean logit cosine 0.983 -> 0.9975.

Runs in the converter's child process (it reads and writes the TFLite flatbuffer).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from edgeport.formats.tflite.ranges import pack_model, sample_feeder, unpack_model
from edgeport.formats.tflite.rounding import ConvGeometry, accumulate_hessian, round_conv

MAX_SAMPLES = 64


def _correctable(model: Any) -> list[tuple[int, int, str]]:
    """``(op index, bias tensor index, output tensor name in the float model)`` of every
    CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED op with an int32 bias, in graph order.

    An op whose int8 output feeds a DEQUANTIZE (the model's float output) is named after the
    DEQUANTIZE's output, which carries the float model's tensor name."""
    from ai_edge_litert import schema_py_generated as schema

    codes = [max(code.builtinCode, code.deprecatedBuiltinCode) for code in model.operatorCodes]
    kinds = {
        schema.BuiltinOperator.CONV_2D,
        schema.BuiltinOperator.DEPTHWISE_CONV_2D,
        schema.BuiltinOperator.FULLY_CONNECTED,
    }
    graph = model.subgraphs[0]
    dequantized = {
        op.inputs[0]: op.outputs[0]
        for op in graph.operators
        if codes[op.opcodeIndex] == schema.BuiltinOperator.DEQUANTIZE
    }
    found = []
    for index, op in enumerate(graph.operators):
        if codes[op.opcodeIndex] not in kinds or len(op.inputs) < 3 or op.inputs[2] < 0:
            continue
        bias = graph.tensors[op.inputs[2]]
        if bias.type != schema.TensorType.INT32 or bias.quantization is None or bias.quantization.scale is None:
            continue
        output = dequantized.get(op.outputs[0], op.outputs[0])
        found.append((index, op.inputs[2], graph.tensors[output].name.decode()))
    return found


def _run_tensors(
    model_bytes: bytes, samples: list[Any], names: list[str], visit: Callable[[str, np.ndarray], None]
) -> None:
    """Run ``model_bytes`` on each sample with LiteRT's default delegate (XNNPACK) and call
    ``visit(name, values)`` with each named tensor's values, dequantized when quantized.

    The tensors are made graph outputs so that the kernels that will run the model compute
    them: LiteRT's reference kernels (the only ones that keep every tensor) round int8
    differently from XNNPACK's; on the bundled CNN a bias correction measured with them left
    a logit bias of 0.02 under XNNPACK."""
    from ai_edge_litert.interpreter import Interpreter

    model = unpack_model(model_bytes)
    graph = model.subgraphs[0]
    index_of = {tensor.name.decode(): i for i, tensor in enumerate(graph.tensors)}
    wanted = [index_of[name] for name in names]
    outputs = [int(i) for i in graph.outputs]
    graph.outputs = outputs + [i for i in wanted if i not in outputs]
    interpreter = Interpreter(model_content=pack_model(model), num_threads=1)
    interpreter.allocate_tensors()
    details = {d["index"]: d for d in interpreter.get_tensor_details()}
    feed = sample_feeder(interpreter)
    for sample in samples:
        feed(sample)
        interpreter.invoke()
        for name, index in zip(names, wanted, strict=True):
            values = interpreter.get_tensor(index).astype(np.float64)
            scale, zero_point = details[index]["quantization"]
            if scale:
                values = (values - zero_point) * scale
            visit(name, values)


def channel_means(model_bytes: bytes, samples: list[Any], names: list[str]) -> dict[str, np.ndarray]:
    """Return the per-channel (last axis) mean of each named tensor of ``model_bytes`` over
    ``samples`` (dequantized, as XNNPACK computes it)."""
    sums: dict[str, np.ndarray] = {}

    def add(name: str, values: np.ndarray) -> None:
        mean = values.reshape(-1, values.shape[-1]).mean(0)
        sums[name] = sums[name] + mean if name in sums else mean

    _run_tensors(model_bytes, samples, names, add)
    return {name: total / len(samples) for name, total in sums.items()}


def _geometry(model: Any, op: Any) -> ConvGeometry | None:
    """The im2col geometry of a CONV_2D / DEPTHWISE_CONV_2D op (None: not one, or dilated)."""
    from ai_edge_litert import schema_py_generated as schema

    code = model.operatorCodes[op.opcodeIndex]
    kind = max(code.builtinCode, code.deprecatedBuiltinCode)
    if kind not in (schema.BuiltinOperator.CONV_2D, schema.BuiltinOperator.DEPTHWISE_CONV_2D):
        return None
    options = op.builtinOptions
    if options.dilationHFactor not in (0, 1) or options.dilationWFactor not in (0, 1):
        return None
    shape = model.subgraphs[0].tensors[op.inputs[1]].shape
    depthwise = kind == schema.BuiltinOperator.DEPTHWISE_CONV_2D
    return ConvGeometry(
        depthwise=depthwise,
        kernel=(int(shape[1]), int(shape[2])),
        stride=(int(options.strideH), int(options.strideW)),
        same_padding=options.padding == schema.Padding.SAME,
        multiplier=max(int(options.depthMultiplier), 1) if depthwise else 1,
    )


def _float_weights(reference: Any) -> dict[str, np.ndarray]:
    """The float weights of the reference model's convolutions, keyed by their output's name."""
    from ai_edge_litert import schema_py_generated as schema

    graph = reference.subgraphs[0]
    found = {}
    for op in graph.operators:
        if len(op.inputs) < 2 or op.inputs[1] < 0:
            continue
        tensor = graph.tensors[op.inputs[1]]
        data = reference.buffers[tensor.buffer].data
        if data is None or tensor.type != schema.TensorType.FLOAT32:
            continue
        values = np.frombuffer(np.asarray(data, np.uint8).tobytes(), np.float32)
        if values.size == int(np.prod(tensor.shape)):
            found[graph.tensors[op.outputs[0]].name.decode()] = values.reshape(tensor.shape)
    return found


def _round_weights(model: Any, op: Any, current: bytes, samples: list[Any], float_weights: np.ndarray) -> bool:
    """GPTQ-round ``op``'s int8 weights in ``model`` from ``float_weights`` with the Hessian of
    its inputs in ``current`` (the model as corrected so far); return whether it was done."""
    from ai_edge_litert import schema_py_generated as schema

    graph = model.subgraphs[0]
    geometry = _geometry(model, op)
    weight = graph.tensors[op.inputs[1]]
    if geometry is None or weight.type != schema.TensorType.INT8 or float_weights.shape != tuple(weight.shape):
        return False
    hessian: list[np.ndarray | None] = [None]

    def add(_: str, values: np.ndarray) -> None:
        hessian[0] = accumulate_hessian(hessian[0], values, geometry)

    _run_tensors(current, samples, [graph.tensors[op.inputs[0]].name.decode()], add)
    levels = round_conv(float_weights, np.asarray(weight.quantization.scale), hessian[0], geometry)
    model.buffers[weight.buffer].data = np.frombuffer(levels.tobytes(), np.uint8)
    return True


def correct_biases(
    quantized: bytes, reference: bytes, samples: Iterable[Any], round_weights: bool = False
) -> tuple[bytes, dict[str, Any]]:
    """Bias-correct the int8 layers of ``quantized`` against ``reference`` (the float model it
    was quantized from, e.g. the calibrated model) on up to MAX_SAMPLES ``samples`` (each a
    list of inputs by position or a dict by name, as the TFLite calibrator takes them).
    ``round_weights``: first re-round each convolution's int8 weights with GPTQ
    (converters/tflite_rounding.py) on its inputs as the model so far computes them.

    Returns ``(corrected model bytes, {"layers": bias-corrected, "rounded": GPTQ-rounded,
    "samples": n, "max_shift": largest |mean shift| removed, in output units})``.
    """
    kept = [sample for _, sample in zip(range(MAX_SAMPLES), samples, strict=False)]
    model = unpack_model(quantized)
    reference_model = unpack_model(reference)
    reference_names = {t.name.decode() for t in reference_model.subgraphs[0].tensors}
    targets = [t for t in _correctable(model) if t[2] in reference_names]
    if not kept or not targets:
        return quantized, {"layers": 0, "rounded": 0, "samples": len(kept), "max_shift": 0.0}
    float_means = channel_means(reference, kept, [name for _, _, name in targets])
    float_weights = _float_weights(reference_model) if round_weights else {}
    graph = model.subgraphs[0]
    largest, rounded = 0.0, 0
    current = quantized
    for op_index, bias_index, name in targets:
        op = graph.operators[op_index]
        if name in float_weights and _round_weights(model, op, current, kept, float_weights[name]):
            rounded += 1
            current = pack_model(model)
        error = channel_means(current, kept, [name])[name] - float_means[name]
        bias = graph.tensors[bias_index]
        buffer = model.buffers[bias.buffer]
        values = np.frombuffer(np.asarray(buffer.data, np.uint8).tobytes(), np.int32).copy()
        scales = np.asarray(bias.quantization.scale, np.float64)
        values -= np.round(error / scales).astype(np.int32)
        buffer.data = np.frombuffer(values.tobytes(), np.uint8)
        largest = max(largest, float(np.abs(error).max()))
        current = pack_model(model)
    return current, {"layers": len(targets), "rounded": rounded, "samples": len(kept), "max_shift": largest}
