"""ONNX rewrites applied to onnx2tf's input copy before the TFLite conversion.

**Dynamic spatial dims** (:func:`spatial_dims_to_fix`, :func:`fix_input_dims`). An image-like
input (rank >= 4) declared with symbolic height/width, as tf2onnx and paddle2onnx exports
often are, converts into TFLite files that do not run: measured here (onnx2tf 1.29.24, TF
2.21) on a tf2onnx opset-12 CNN with batchnorm, max pool and bilinear upsampling, the NHWC
export failed in the converter (``'tf.Conv2D' op is neither a custom op nor a flex op``, its
channels taken for a spatial dim), the NCHW one wrote a file whose ``CONV_2D`` fails to
prepare (``input->dims->data[1] > 0``) and whose int8 calibration fails in ``CONCATENATION``;
in the field the same kind of model ended in ``XNNPack delegate failed to reshape``. With the
dims fixed to the data's size every variant converted and ran.

**CastLike** (:func:`castlike_to_cast`): onnx2tf 1.29 has no ``CastLike`` converter
(``No module named 'onnx2tf.ops.CastLike'``), and onnxscript functions use it for their
constants, so a custom op decomposed by an onnxscript function (``edgeport.ops``) brings it in.
``CastLike(x, like)`` is ``Cast(x, to=type of like)`` exactly.

Two constructs that onnx2tf converts badly are rewritten into equivalent ONNX that it
converts well, each in its own module with the measurements behind it: LSTM/GRU/RNN nodes
unrolled per time step (:mod:`edgeport.formats.tflite.onnx2tf_unroll`) and Erf-based GELU
brought into the form onnx2tf maps to TFLite's ``GELU`` builtin
(:mod:`edgeport.formats.tflite.onnx2tf_gelu`). The caller
(:mod:`edgeport.formats.tflite.onnx2tf_input`) checks every rewritten model against the
original with ONNX Runtime before using it.
"""

from __future__ import annotations

import onnx


def spatial_dims_to_fix(model: onnx.ModelProto, shapes: dict[str, list[int]]) -> dict[str, list[int]]:
    """Return ``{input: static shape}`` for the image-like inputs (rank >= 4) of ``model`` whose
    non-batch dims are symbolic and for which ``shapes`` gives a concrete shape of that rank.

    Axis 0 (the batch) keeps what ``shapes`` says only when the model declares it static; the
    caller fixes a symbolic batch its own way (onnx2tf's ``batch_size``).
    """
    initializers = {i.name for i in model.graph.initializer}
    fixed = {}
    for value in model.graph.input:
        dims = value.type.tensor_type.shape.dim
        given = shapes.get(value.name)
        if value.name in initializers or len(dims) < 4 or given is None or len(given) != len(dims):
            continue
        symbolic = [i for i, d in enumerate(dims) if i > 0 and not (d.HasField("dim_value") and d.dim_value > 0)]
        if symbolic and all(int(given[i]) > 0 for i in symbolic):
            fixed[value.name] = [
                int(d.dim_value) if d.HasField("dim_value") and d.dim_value > 0 else (-1 if i == 0 else int(given[i]))
                for i, d in enumerate(dims)
            ]
    return fixed


def fix_input_dims(model: onnx.ModelProto, shapes: dict[str, list[int]]) -> onnx.ModelProto:
    """Return a copy of ``model`` whose inputs named in ``shapes`` have those static dims (-1
    keeps a dim symbolic), with shapes re-inferred from them (stale inner shapes dropped)."""
    result = onnx.ModelProto()
    result.CopyFrom(model)
    for value in result.graph.input:
        if value.name not in shapes:
            continue
        for dim, size in zip(value.type.tensor_type.shape.dim, shapes[value.name], strict=True):
            if size > 0:
                dim.Clear()
                dim.dim_value = int(size)
    # Inner and output shapes were inferred from the symbolic dims: infer them again.
    del result.graph.value_info[:]
    for value in result.graph.output:
        for dim in value.type.tensor_type.shape.dim:
            if not dim.HasField("dim_value"):
                dim.Clear()
    try:
        return onnx.shape_inference.infer_shapes(result, strict_mode=False, data_prop=True)
    except Exception:  # noqa: BLE001 - a model shape inference cannot handle still converts
        return result


def castlike_to_cast(model: onnx.ModelProto) -> tuple[onnx.ModelProto, int]:
    """Return ``(model with each CastLike whose target type is known replaced by Cast, count)``;
    the model itself when it has none."""
    if not any(n.op_type == "CastLike" and n.domain in ("", "ai.onnx") for n in model.graph.node):
        return model, 0
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False)
    graph = inferred.graph
    types = {v.name: v.type.tensor_type.elem_type for v in [*graph.input, *graph.output, *graph.value_info]}
    types.update({t.name: t.data_type for t in graph.initializer})
    result = onnx.ModelProto()
    result.CopyFrom(model)
    count = 0
    for node in result.graph.node:
        to = types.get(node.input[1]) if node.op_type == "CastLike" and len(node.input) == 2 else None
        if to and node.domain in ("", "ai.onnx"):
            node.op_type = "Cast"
            del node.input[1:]
            del node.attribute[:]  # CastLike's only attribute (saturate) keeps its default
            node.attribute.append(onnx.helper.make_attribute("to", to))
            count += 1
    return result, count
