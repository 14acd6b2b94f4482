"""Reading a saved ``.mlpackage`` back: its ops, compute precisions, inputs and outputs, and how
each weight is stored, from the spec and the weight blobs' types (never the in-memory program),
so what a report says a package holds is what was written."""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from edgeport.core.errors import ConversionError, describe_exception
from edgeport.formats.coreml.match import WEIGHT_INPUTS
from edgeport.formats.coreml.tools import import_coremltools, quiet

_DTYPE_BITS = {
    "FLOAT32": 32,
    "FLOAT16": 16,
    "BFLOAT16": 16,
    "INT8": 8,
    "UINT8": 8,
    "INT4": 4,
    "UINT4": 4,
    "UINT6": 6,
    "UINT3": 3,
    "UINT2": 2,
    "UINT1": 1,
    "INT16": 16,
    "UINT16": 16,
    "INT32": 32,
    "INT64": 64,
}


def _dtype_name(tensor_type) -> str:
    from coremltools.proto import MIL_pb2

    return MIL_pb2.DataType.Name(tensor_type.dataType)


def _dims(tensor_type) -> list[int]:
    return [int(d.constant.size) for d in tensor_type.dimensions]


def _blob_bytes(tensor_type) -> int:
    bits = _DTYPE_BITS.get(_dtype_name(tensor_type), 32)
    return math.ceil(math.prod(_dims(tensor_type)) * bits / 8)


def _storage(producer) -> dict[str, Any]:
    """Describe how a weight is stored: a plain const or a constexpr decompression op (iOS16/17
    ops hold their tensors as attributes, iOS18 ops as inputs)."""
    if producer is None:
        return {"storage": "computed", "precision": "unknown", "bytes": 0}
    if producer.type == "const":
        tensor = producer.attributes["val"].type.tensorType
        dtype = _dtype_name(tensor)
        precision = {"FLOAT16": "fp16", "FLOAT32": "fp32"}.get(dtype, dtype.lower())
        return {"storage": "const", "dtype": dtype, "precision": precision, "bytes": _blob_bytes(tensor)}
    tensors = {k: v.arguments[0].value.type.tensorType for k, v in producer.inputs.items() if v.arguments}
    for key, value in producer.attributes.items():
        if key != "name" and value.type.WhichOneof("type") == "tensorType":
            tensors[key] = value.type.tensorType
    total = sum(_blob_bytes(t) for k, t in tensors.items() if k not in ("shape", "axis"))
    if producer.type == "constexpr_lut_to_dense":
        lut = _dims(tensors["lut"])
        if "shape" in tensors:  # iOS16: packed uint8 indices, a flat table of 2^bits entries
            bits = int(math.log2(lut[-1])) if lut else 0
            groups = 1
        else:  # iOS18: indices typed by their width, tables shaped [..., entries, vector]
            bits = _DTYPE_BITS.get(_dtype_name(tensors["indices"]), 0)
            groups = math.prod(lut[:-2]) if len(lut) > 2 else 1
        return {
            "storage": producer.type,
            "dtype": f"UINT{bits}",
            "bits": bits,
            "precision": f"palettize-{bits}",
            "granularity": "per tensor" if groups == 1 else f"{groups} look-up tables",
            "bytes": total,
        }
    if producer.type in ("constexpr_blockwise_shift_scale", "constexpr_affine_dequantize"):
        key = "data" if "data" in tensors else "quantized_data"
        dtype = _dtype_name(tensors[key])
        bits = _DTYPE_BITS.get(dtype, 0)
        data_shape = _dims(tensors[key])
        scale_shape = _dims(tensors["scale"]) if "scale" in tensors else []
        if not scale_shape or math.prod(scale_shape) == 1:
            granularity = "per tensor"
        elif len(scale_shape) < len(data_shape) or all(s == 1 for s in scale_shape[1:]):
            granularity = "per channel"
        else:
            granularity = f"per block of {data_shape[1] // max(scale_shape[1], 1)}"
        return {
            "storage": producer.type,
            "dtype": dtype,
            "bits": bits,
            "precision": f"int{bits}-weight",
            "granularity": granularity,
            "bytes": total,
        }
    return {"storage": producer.type, "precision": "unknown", "bytes": total}


def _immediate(op) -> list[float] | None:
    """The float values of a small ``const`` op stored in the spec itself (not in weight.bin)."""
    if op is None or op.type != "const":
        return None
    tensor = op.attributes["val"].immediateValue.tensor
    for kind in ("floats", "doubles"):
        if tensor.HasField(kind):
            return [float(v) for v in getattr(tensor, kind).values]
    if tensor.HasField("bytes"):  # fp16 values are stored as raw bytes
        return np.frombuffer(tensor.bytes.values, np.float16).astype(float).tolist()
    return None


def _image_preprocessing(name: str, producers: dict[str, Any]) -> dict[str, Any]:
    """The scale and bias an image input's preprocessing ops apply, read from the program:
    coremltools inserts ``<input>__scaled__`` (mul) and ``<input>__biased__`` (add) after it."""

    def operand(op_name: str) -> list[float] | None:
        op = producers.get(op_name)
        if op is None:
            return None
        argument = op.inputs.get("y")
        const = producers.get(argument.arguments[0].name) if argument is not None and argument.arguments else None
        return _immediate(const)

    scale = operand(f"{name}__scaled__")
    bias = operand(f"{name}__biased__")
    return {"scale": scale[0] if scale else 1.0, "bias": bias if bias else [0.0]}


def _package_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def inspect_package(path: Path) -> dict[str, Any]:
    """Read a saved ``.mlpackage`` without running it and describe what it holds.

    Returns ``{"loads": True, "spec_version", "inputs", "outputs", "ops" (type -> count),
    "compute_dtypes" (dtype -> op count), "weights" (one entry per weighted op: op, name,
    weight, storage, dtype, bits, precision, granularity, bytes, compute), "weight_bin_bytes",
    "package_bytes"}``. Raises ConversionError when coremltools cannot load the package.
    """
    ct = import_coremltools()
    try:
        with quiet():
            model = ct.models.MLModel(str(path), skip_model_load=True)
        spec = model.get_spec()
    except Exception as exc:
        raise ConversionError(f"coremltools cannot load {path.name}: {describe_exception(exc)}") from exc
    function = spec.mlProgram.functions["main"]
    block = function.block_specializations[function.opset]
    producers = {out.name: op for op in block.operations for out in op.outputs}
    ops = Counter(op.type for op in block.operations)
    compute: Counter[str] = Counter()
    weights = []
    for op in block.operations:
        if op.type.startswith("const"):
            continue
        if op.outputs and op.outputs[0].type.WhichOneof("type") == "tensorType":
            compute[_dtype_name(op.outputs[0].type.tensorType)] += 1
        for input_name in WEIGHT_INPUTS.get(op.type, ()):
            argument = op.inputs.get(input_name)
            if argument is None or not argument.arguments or not argument.arguments[0].name:
                continue
            weight_name = argument.arguments[0].name
            producer = producers.get(weight_name)
            if producer is None or not producer.type.startswith("const"):
                continue
            entry = {"op": op.type, "name": op.outputs[0].name, "weight": weight_name}
            entry.update(_storage(producer))
            entry["compute"] = _dtype_name(op.outputs[0].type.tensorType)
            # W8A8: the activation arrives through a dequantize op.
            x = op.inputs.get("x")
            x_name = x.arguments[0].name if x is not None and x.arguments else ""
            if producers.get(x_name) is not None and producers[x_name].type == "dequantize":
                entry["precision"] = "int8"
                entry["activations"] = "int8"
            weights.append(entry)
    weight_bin = path / "Data" / "com.apple.CoreML" / "weights" / "weight.bin"

    def feature(description) -> dict[str, Any]:
        kind = description.type.WhichOneof("Type")
        entry: dict[str, Any] = {"name": description.name, "type": kind}
        if kind == "multiArrayType":
            array = description.type.multiArrayType
            entry["shape"] = list(array.shape)
            entry["dtype"] = ct.proto.FeatureTypes_pb2.ArrayFeatureType.ArrayDataType.Name(array.dataType)
        elif kind == "imageType":
            image = description.type.imageType
            color = ct.proto.FeatureTypes_pb2.ImageFeatureType.ColorSpace.Name(image.colorSpace)
            entry.update({"color_layout": color, "height": int(image.height), "width": int(image.width)})
            entry.update(_image_preprocessing(description.name, producers))
        return entry

    return {
        "loads": True,
        "spec_version": int(spec.specificationVersion),
        "opset": function.opset,
        "inputs": [feature(i) for i in spec.description.input],
        "outputs": [feature(o) for o in spec.description.output],
        "ops": dict(sorted(ops.items())),
        "compute_dtypes": dict(sorted(compute.items())),
        "weights": weights,
        "weight_bin_bytes": weight_bin.stat().st_size if weight_bin.is_file() else 0,
        "package_bytes": _package_bytes(path),
    }
