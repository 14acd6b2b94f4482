"""ONNX ingestion: a ``.onnx`` file (with external data beside it), validated and described."""

from __future__ import annotations

from pathlib import Path

import onnx
from google.protobuf.message import DecodeError

from edgeport.errors import InputError, describe_exception
from edgeport.hashing import sha256_file
from edgeport.model_bundle import Dim, SourceModel, TensorSpec
from edgeport.recipe import Recipe

_ONNX_DTYPES = {
    onnx.TensorProto.FLOAT: "float32",
    onnx.TensorProto.FLOAT16: "float16",
    onnx.TensorProto.INT64: "int64",
    onnx.TensorProto.INT32: "int32",
    onnx.TensorProto.UINT8: "uint8",
    onnx.TensorProto.INT8: "int8",
    onnx.TensorProto.BOOL: "bool",
    onnx.TensorProto.DOUBLE: "float64",
}


def value_info_spec(value: onnx.ValueInfoProto) -> TensorSpec:
    """Return the TensorSpec of an ONNX graph input/output (symbolic dims kept as names)."""
    tensor_type = value.type.tensor_type
    shape: list[Dim] = []
    for i, dim in enumerate(tensor_type.shape.dim):
        if dim.HasField("dim_value") and dim.dim_value > 0:
            shape.append(int(dim.dim_value))
        else:
            shape.append(dim.dim_param or ("batch" if i == 0 else f"dim{i}"))
    return TensorSpec(value.name, shape, _ONNX_DTYPES.get(tensor_type.elem_type, "float32"))


def graph_input_specs(model: onnx.ModelProto) -> list[TensorSpec]:
    """Return the specs of the graph's real inputs (initializers listed as inputs are skipped)."""
    initializers = {init.name for init in model.graph.initializer}
    return [value_info_spec(v) for v in model.graph.input if v.name not in initializers]


def graph_output_specs(model: onnx.ModelProto) -> list[TensorSpec]:
    """Return the specs of the graph's outputs."""
    return [value_info_spec(v) for v in model.graph.output]


def read_onnx(path: Path) -> onnx.ModelProto:
    """Load an ONNX file with its external data; raise InputError when it is not valid ONNX."""
    try:
        model = onnx.load(str(path), load_external_data=True)
    except (DecodeError, RuntimeWarning) as exc:
        raise InputError(f"{path} is not a valid ONNX file (it does not parse): {exc}") from exc
    except FileNotFoundError as exc:
        raise InputError(f"{path}: external data file missing: {exc.filename or exc}") from exc
    except Exception as exc:
        raise InputError(f"{path} could not be loaded as ONNX: {describe_exception(exc)}") from exc
    if not model.graph.node:
        raise InputError(f"{path} is not a usable ONNX model: its graph has no nodes")
    return model


def load_onnx_file(path: Path, recipe: Recipe) -> tuple[SourceModel, onnx.ModelProto]:
    """Ingest an ONNX file: returns the SourceModel (no framework runner) and the ModelProto.

    ``--input_shape`` fixes symbolic dimensions; ``--dynamic_batch`` keeps/makes axis 0 symbolic.
    """
    model = read_onnx(path)
    specs = graph_input_specs(model)
    by_name = {s.name: s for s in specs}
    for shape in recipe.input_shape:
        name = shape.name or (specs[0].name if len(specs) == 1 else None)
        if name not in by_name:
            raise InputError(f"--input_shape names {shape.name!r}, but the model's inputs are {', '.join(by_name)}")
        spec = by_name[name]
        if len(shape.dims) != len(spec.shape):
            raise InputError(
                f"--input_shape for {name!r} has {len(shape.dims)} dims, the model declares {len(spec.shape)}"
            )
        for declared, given in zip(spec.shape, shape.dims, strict=False):
            if isinstance(declared, int) and declared != given:
                raise InputError(f"--input_shape for {name!r} is {shape.dims}, the model declares {spec.shape}")
        spec.shape = [("batch" if recipe.dynamic_batch and i == 0 else d) for i, d in enumerate(shape.dims)]
    source = SourceModel("onnx", "onnx", str(path), sha256_file(path), specs)
    return source, model
