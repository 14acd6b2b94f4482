"""The .tflite an export wrote: checked to load in LiteRT, described under its ONNX names and
layouts (:class:`TFLiteExport`, what the runner and the report need), and put in place atomically."""

from __future__ import annotations

import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from edgeport.core.errors import ConversionError, describe_exception
from edgeport.formats.tflite.layers import TFLiteWeightedOp, channel_last_perm, tflite_weighted_ops
from edgeport.formats.tflite.shapes import onnx_shape


@dataclass
class TFLiteTensor:
    """A TFLite model input or output, under its ONNX name."""

    name: str  # the ONNX input/output name it stands for
    tflite_name: str  # the tensor name inside the .tflite
    shape: list[int]  # -1 for a dynamic dim
    dtype: str
    layout: str | None = None  # NHWC/NCHW/... for 3-5-D tensors
    scale: float | None = None  # quantization of int8/uint8 io
    zero_point: int | None = None


@dataclass
class TFLiteExport:
    """What :func:`edgeport.formats.tflite.export.export_tflite` wrote and how to feed it."""

    path: Path
    scheme: str  # the plan's scheme
    mode: str  # what the TFLite converter produced: fp32, fp16, dynamic, int8
    io_dtype: str
    notes: list[str] = field(default_factory=list)
    applied: dict[str, str] = field(default_factory=dict)  # planned layer -> precision in the file
    not_expressible: dict[str, str] = field(default_factory=dict)  # layer -> why the plan was not followed
    matched_by: dict[str, str] = field(default_factory=dict)  # layer -> how its TFLite ops were found
    input_layout: dict[str, str] = field(default_factory=dict)
    inputs: list[TFLiteTensor] = field(default_factory=list)  # in ONNX input order
    outputs: list[TFLiteTensor] = field(default_factory=list)  # in ONNX output order
    transposes: dict[str, list[int]] = field(default_factory=dict)  # ONNX input -> perm to the TFLite input
    output_transposes: dict[str, list[int]] = field(default_factory=dict)  # TFLite output -> perm to ONNX layout
    seconds: float = 0.0
    versions: dict[str, str] = field(default_factory=dict)
    custom_ops: list[dict[str, Any]] = field(default_factory=list)  # CustomSite.to_dict() per TFLite custom op

    def runner_kwargs(self) -> dict[str, Any]:
        """Return the keyword arguments :class:`LiteRTRunner` needs to take ONNX-layout feeds."""
        return {
            "transposes": dict(self.transposes),
            "output_transposes": dict(self.output_transposes),
            "input_names": [t.name for t in self.inputs],
            "output_names": [t.name for t in self.outputs],
        }

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready description (for the manifest and report)."""
        data = asdict(self)
        data["path"] = str(self.path)
        return data


def converter_versions() -> dict[str, str]:
    """Return ``{distribution: version}`` of the converter libraries installed (for the manifest)."""
    from importlib.metadata import PackageNotFoundError, version

    result = {}
    for dist in ("onnx2tf", "tensorflow-cpu", "tensorflow", "tf-keras", "ai-edge-litert"):
        try:
            result[dist] = version(dist)
        except PackageNotFoundError:
            continue
    return result


def _layout(rank: int, channel_last: bool) -> str | None:
    names = {3: ("NCW", "NWC"), 4: ("NCHW", "NHWC"), 5: ("NCDHW", "NDHWC")}
    return names[rank][1 if channel_last else 0] if rank in names else None


def describe_artifact(
    path: Path, model: onnx.ModelProto, mode: str
) -> tuple[list[TFLiteTensor], list[TFLiteTensor], list[str], list[TFLiteWeightedOp]]:
    """Load the converted ``path`` in LiteRT; return ``(inputs, outputs, notes, weighted ops)``.

    Raises ConversionError when LiteRT cannot prepare the file (naming ``--input_shape`` when
    an input has dynamic non-batch dims).
    """
    try:
        inputs, outputs, io_notes = io_tensors(path, model)
        ops = tflite_weighted_ops(path)
    except (RuntimeError, ValueError) as exc:  # LiteRT cannot prepare the file it was given
        raise ConversionError(
            f"the converted .tflite ({mode}) does not load in LiteRT: {describe_exception(exc)}",
            hint=dynamic_dims_hint(model) or "try another --quantization or --output_format onnx",
        ) from exc
    return inputs, outputs, io_notes, ops


def io_tensors(path: Path, model: onnx.ModelProto) -> tuple[list[TFLiteTensor], list[TFLiteTensor], list[str]]:
    """Describe the .tflite inputs/outputs under their ONNX names (by signature name, else order)."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    interp = Interpreter(
        model_path=str(path), experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    )
    notes: list[str] = []
    details_in = {d["index"]: d for d in interp.get_input_details()}
    details_out = {d["index"]: d for d in interp.get_output_details()}
    signatures = interp._get_full_signature_list()  # {key: {"inputs": {name: index}, "outputs": {...}}}
    signature = next(iter(signatures.values()), {"inputs": {}, "outputs": {}})
    initializers = {i.name for i in model.graph.initializer}
    onnx_inputs = [v for v in model.graph.input if v.name not in initializers]

    def pair(onnx_values: list, by_sig: dict[str, int], details: dict[int, dict], kind: str) -> list[TFLiteTensor]:
        names = [v.name for v in onnx_values]
        if set(names) <= set(by_sig):
            indices = [by_sig[n] for n in names]
        else:
            indices = list(details)
            notes.append(f"TFLite {kind} matched to ONNX {kind} by order (signature names {sorted(by_sig)})")
        if len(indices) != len(names):
            raise ConversionError(f"the .tflite has {len(indices)} {kind}, the ONNX model {len(names)}")
        tensors = []
        for value, index in zip(onnx_values, indices, strict=True):
            d = details[index]
            shape = [int(s) for s in d.get("shape_signature", d["shape"])]
            perm = channel_last_perm(onnx_shape(value), shape)
            scale, zero = d["quantization"]
            dtype = np.dtype(d["dtype"]).name
            quantized = dtype in ("int8", "uint8", "int16") and scale > 0
            tensors.append(
                TFLiteTensor(
                    name=value.name,
                    tflite_name=d["name"],
                    shape=shape,
                    dtype=dtype,
                    layout=_layout(len(shape), perm is not None),
                    scale=float(scale) if quantized else None,
                    zero_point=int(zero) if quantized else None,
                )
            )
        return tensors

    inputs = pair(onnx_inputs, signature.get("inputs", {}), details_in, "inputs")
    outputs = pair(list(model.graph.output), signature.get("outputs", {}), details_out, "outputs")
    return inputs, outputs, notes


def io_transposes(
    input_values: list[onnx.ValueInfoProto],
    output_values: list[onnx.ValueInfoProto],
    inputs: list[TFLiteTensor],
    outputs: list[TFLiteTensor],
) -> tuple[dict[str, list[int]], dict[str, list[int]]]:
    """Return ``({ONNX input: perm to the TFLite input}, {TFLite output: perm back to the ONNX
    layout})`` for the tensors whose layout the converter changed (channel-first to -last)."""
    transposes = {}
    for tensor, value in zip(inputs, input_values, strict=True):
        perm = channel_last_perm(onnx_shape(value), tensor.shape)
        if perm:
            transposes[tensor.name] = perm
    output_transposes = {}
    for tensor, value in zip(outputs, output_values, strict=True):
        perm = channel_last_perm(onnx_shape(value), tensor.shape)
        if perm:
            output_transposes[tensor.name] = [int(i) for i in np.argsort(perm)]
    return transposes, output_transposes


def write_atomically(produced: Path, out_path: Path) -> None:
    """Copy ``produced`` to ``out_path`` through a temporary name, so no half-written file is left."""
    tmp = out_path.with_name(out_path.name + ".tmp")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(produced, tmp)
    os.replace(tmp, out_path)


def dynamic_dims_hint(model: onnx.ModelProto) -> str | None:
    """A hint naming ``--input_shape`` when an input has symbolic non-batch dims, else None."""
    initializers = {i.name for i in model.graph.initializer}
    for value in model.graph.input:
        shape = onnx_shape(value)
        if value.name not in initializers and any(not isinstance(d, int) or d < 0 for d in shape[1:]):
            example = ",".join(str(d) if isinstance(d, int) and d > 0 else "N" for d in shape)
            return f"input {value.name!r} has dynamic dims {shape}: fix them with --input_shape {value.name}:{example}"
    return None
