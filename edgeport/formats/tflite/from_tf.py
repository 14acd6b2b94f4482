"""TFLite from a TensorFlow/Keras source, without ONNX: the TFLite converter on the source itself.

Used by the TFLite child process (:mod:`edgeport.formats.tflite.onnx2tf_child`) when its request
names a TF source (``tf_source``) instead of relying on onnx2tf. The model is loaded the way
its ONNX export was (:func:`edgeport.frontends.tf.load_tf_model`) and traced through the
same callable, with the same input names and shapes, returning its outputs by name; so the
.tflite's signature carries the ONNX model's input and output names, and everything after the
converter (calibration, denylisted int8 quantization, layer matching by weights, the LiteRT
runner) is shared with the onnx2tf route.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def tf_source_request(path: str, form: str, inputs: list[dict[str, Any]], allow_code: bool = False) -> dict[str, Any]:
    """The ``tf_source`` entry of a TFLite child request: the source path, its form, its input
    specs (``name``, ``shape`` with None for dynamic dims, ``dtype``) in ONNX input order, and
    whether the user trusts code in the model (``--allow-pickle``: Lambda layers, file ops)."""
    return {"path": str(Path(path).resolve()), "form": form, "inputs": inputs, "allow_code": allow_code}


def tf_converter_factory(source: dict[str, Any], batch_size: int | None):
    """Return ``(make_converter, tf_inputs)`` for a ``tf_source`` request entry.

    ``make_converter()`` returns a fresh ``tf.lite.TFLiteConverter`` (from a concrete function
    of the model); ``tf_inputs`` describes its inputs (name, shape with -1 for dynamic dims,
    dtype) as the child's calibration needs them. ``batch_size`` fixes a dynamic batch dim.
    """
    import tensorflow as tf

    from edgeport.frontends.tf import load_tf_model

    tf_model = load_tf_model(Path(source["path"]), allow_code=bool(source.get("allow_code")))
    signature = []
    for spec in source["inputs"]:
        shape = [None if not isinstance(d, int) else d for d in spec["shape"]]
        if shape and shape[0] is None and batch_size:
            shape[0] = int(batch_size)
        signature.append(tf.TensorSpec(shape, tf.as_dtype(spec["dtype"]), name=spec["name"]))

    def traced(*args: Any) -> dict[str, Any]:
        return dict(tf_model.call(list(args)))

    function = tf.function(traced, input_signature=signature)
    concrete = function.get_concrete_function()
    # The converter freezes the variables the trackable object holds. Keras 3 variables wrap
    # a tf.Variable (``.value``): hold those, or the .tflite keeps unresolved READ_VARIABLE ops.
    holder = tf.Module()
    holder.held_variables = [
        v if isinstance(v, tf.Variable) else getattr(v, "value", v) for v in getattr(tf_model.model, "variables", [])
    ]
    holder.function = function

    def make_converter() -> Any:
        return tf.lite.TFLiteConverter.from_concrete_functions([concrete], holder)

    tf_inputs = [
        {"name": s.name, "shape": [d if d is not None else -1 for d in s.shape.as_list()], "dtype": s.dtype.name}
        for s in signature
    ]
    return make_converter, tf_inputs
