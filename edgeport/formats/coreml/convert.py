"""Core ML conversion: the source model -> an (uncompressed) ML Program.

coremltools has no ONNX frontend, so the package is converted from the live PyTorch model the
CanonicalModel holds, trying routes in order: ``torch.export`` (ATen ops kept), ``torch.export``
with the core-ATen decompositions (LSTM/GRU become loops of matmuls), then ``torch.jit.trace``
(what coremltools converted LSTM/GRU and a U-Net's ``max_pool2d`` through here). The report
says which route worked.

TensorFlow/Keras sources convert through coremltools' TF2 frontend (a concrete ``tf.function`` of
the model with static shapes); ``--coreml_image_input`` makes image-like inputs Core ML image
types whose scale and bias come from ``--preprocess`` (:mod:`edgeport.formats.coreml.images`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgeport.core.errors import ConversionError, InputError, describe_exception
from edgeport.core.model import SourceModel, TensorSpec
from edgeport.formats.coreml.custom_ops import (
    composite_entries,
    composites_registered,
    custom_op_notes,
    decomposition_table,
)
from edgeport.formats.coreml.images import ImageInput
from edgeport.formats.coreml.tools import enable_tf_frontend, import_coremltools, quiet
from edgeport.profiles.schema import FormatTarget
from edgeport.runtime.coreml import coreml_version

ROUTES = ("torch.export", "torch.export + core ATen decompositions", "torch.jit.trace")
TF_ROUTE = "coremltools TensorFlow 2 frontend (concrete tf.function)"
_TARGETS = {
    "iOS15": "iOS15",
    "macOS12": "macOS12",
    "iOS16": "iOS16",
    "macOS13": "macOS13",
    "iOS17": "iOS17",
    "macOS14": "macOS14",
    "iOS18": "iOS18",
    "macOS15": "macOS15",
}


def check_source(source: SourceModel) -> None:
    """Raise InputError naming the supported routes unless ``source`` is a live PyTorch or
    TensorFlow/Keras model (the two frontends coremltools has)."""
    if source.framework in ("pytorch", "tensorflow") and source.live_model is not None:
        return
    raise InputError(
        f"Core ML export converts from the PyTorch or TensorFlow/Keras source, and this model is {source.framework} "
        f"({source.form}): coremltools has no ONNX frontend (removed in coremltools 6)",
        hint="pass the PyTorch model (.pt2, TorchScript, state_dict + --model_class, or module:factory) "
        "or the TensorFlow/Keras model (SavedModel, .keras, .h5)",
    )


def _example_inputs(specs: list[TensorSpec], batch: int) -> tuple:
    """Seeded example tensors for export/tracing: token ids are zeros (valid indices)."""
    import torch

    generator = torch.Generator().manual_seed(0)
    tensors = []
    for spec in specs:
        shape = spec.concrete_shape(batch)
        dtype = getattr(torch, spec.dtype)
        if dtype.is_floating_point:
            tensors.append(torch.rand(shape, generator=generator).to(dtype))
        else:
            tensors.append(torch.zeros(shape, dtype=dtype))
    return tuple(tensors)


def _tensor_types(ct, specs: list[TensorSpec], batch: int, images: dict[str, ImageInput] | None = None) -> list:
    """Core ML input types named like the source: image types for ``images``, else tensors (Core
    ML has no int64 inputs: int32 instead)."""
    types = []
    for spec in specs:
        if images and spec.name in images:
            types.append(images[spec.name].to_coreml(ct, spec.concrete_shape(batch)))
            continue
        dtype = np.dtype(spec.dtype)
        if dtype.kind in "iu":
            dtype = np.dtype(np.int32)
        elif dtype == np.float64:
            dtype = np.dtype(np.float32)
        types.append(ct.TensorType(name=spec.name, shape=spec.concrete_shape(batch), dtype=dtype.type))
    return types


def _module_of(source: SourceModel):
    """The nn.Module to export or trace (an ExportedProgram's module(); a ScriptModule as is)."""
    import torch

    model = source.live_model
    if isinstance(model, torch.export.ExportedProgram):
        return model.module()
    return model


@dataclass
class RouteFailure:
    """One conversion route that failed: the op it names, its module and the message."""

    route: str
    op: str | None
    module: str | None
    message: str


_OP_PATTERNS = (
    re.compile(r"Unsupported fx node (?P<node>[\w.]+), kind (?P<op>[\w.]+)"),
    re.compile(r"convert function for op '(?P<op>[^']+)' not implemented"),
    re.compile(r"Conversion for TF op '(?P<op>[^']+)' not implemented"),
    re.compile(r"node (?P<node>[\w.]+) \((?P<op>[\w.]+)\)"),
    re.compile(r"lowering for Torch `(?P<op>[\w.]+)` op"),
    re.compile(r"[Oo]p '?(?P<op>aten::\w+|[\w.]+)'? is not supported"),
)


def _failed_op(message: str) -> tuple[str | None, str | None]:
    """The (op, graph node) a coremltools error names, when it names one."""
    for pattern in _OP_PATTERNS:
        match = pattern.search(message)
        if match:
            groups = match.groupdict()
            return groups.get("op"), groups.get("node") or groups.get("op")
    return None, None


def _module_in_export(program, node_name: str | None, op: str | None) -> str | None:
    """The source module path (and class) of an fx node, from its nn_module_stack."""
    if program is None:
        return None
    for node in program.graph.nodes:
        target = str(getattr(node.target, "__name__", node.target))
        if node.name == node_name or (op and (target.split(".")[0] == op.split(".")[0] or node.name == op)):
            stack = node.meta.get("nn_module_stack") or {}
            if stack:
                path, cls = list(stack.values())[-1]
                cls_name = getattr(cls, "__name__", str(cls)).rsplit(".", 1)[-1]
                return f"{path} ({cls_name})" if path else f"the top-level module ({cls_name})"
    return None


def _module_in_trace(traced, op: str | None) -> str | None:
    """The scope (module path) of the first traced node of kind ``aten::op``."""
    if traced is None or not op:
        return None
    wanted = op if "::" in op else f"aten::{op.split('.')[0]}"
    for node in traced.inlined_graph.nodes():
        if node.kind() == wanted:
            scope = node.scopeName()
            # "__module.rnn/__module.rnn.cell" -> rnn.cell
            parts = [p.split("__module.")[-1] for p in scope.split("/") if p and p != "__module"]
            return parts[-1] if parts else "the top-level module"
    return None


def convert_source(
    source: SourceModel,
    output_names: list[str],
    batch: int,
    target: FormatTarget,
    fp16: bool,
    keep_fp32=None,
    images: dict[str, ImageInput] | None = None,
) -> tuple[Any, str, list[str]]:
    """Convert the source to an (uncompressed) ML Program MLModel: a PyTorch model through the
    routes in order, a TensorFlow/Keras model through coremltools' TF2 frontend.

    ``fp16``: compute precision FLOAT16, except ops for which ``keep_fp32(op)`` is true (they stay
    fp32). ``images``: inputs given as Core ML image types. Returns ``(mlmodel, route, notes)``.
    Raises InputError when the source is neither and ConversionError naming the op, the module
    and what to try when every route fails.
    """
    check_source(source)
    ct = import_coremltools()

    precision = (
        ct.transform.FP16ComputePrecision(op_selector=(lambda op: not keep_fp32(op)) if keep_fp32 else None)
        if fp16
        else ct.precision.FLOAT32
    )
    common = dict(
        convert_to="mlprogram",
        minimum_deployment_target=getattr(ct.target, _TARGETS[target.minimum_deployment_target or "iOS16"]),
        compute_precision=precision,
        compute_units=getattr(ct.ComputeUnit, target.compute_units or "ALL"),
        skip_model_load=True,  # loading compiles with Core ML: macOS only
    )
    if source.framework == "tensorflow":
        return _convert_tf(ct, source, output_names, batch, common, images)
    import torch

    outputs = [ct.TensorType(name=name) for name in output_names]
    specs = source.inputs
    model = source.live_model
    failures: list[RouteFailure] = []
    notes: list[str] = []
    # torch.export programs carry their own input specs; image inputs must be declared anyway.
    export_inputs = {"inputs": _tensor_types(ct, specs, batch, images)} if images else {}

    if isinstance(model, torch.jit.ScriptModule):
        routes = ["TorchScript"]
    else:
        routes = list(ROUTES)
        module = _module_of(source)
        args = _example_inputs(specs, batch)
    for route in routes:
        program = traced = None
        try:
            # Composites are registered only while coremltools converts (custom_ops.py says why).
            with quiet(), torch.no_grad(), composites_registered(composite_entries()):
                if route == "TorchScript":
                    converted = ct.convert(
                        model, inputs=_tensor_types(ct, specs, batch, images), outputs=outputs, **common
                    )
                elif route.startswith("torch.export"):
                    program = torch.export.export(module, args)
                    decomposed = _decomposed(program, core_aten="core ATen" in route, notes=notes)
                    converted = ct.convert(decomposed, outputs=outputs, **export_inputs, **common)
                else:
                    traced = torch.jit.trace(module, args, check_trace=False)
                    converted = ct.convert(
                        traced, inputs=_tensor_types(ct, specs, batch, images), outputs=outputs, **common
                    )
        except ConversionError:
            raise  # a custom op without a Core ML lowering: no other route can lower it either
        except Exception as exc:  # coremltools raises many types; each becomes one line
            message = describe_exception(exc)
            op, node = _failed_op(str(exc))
            where = _module_in_export(program, node, op) if program is not None else _module_in_trace(traced, op)
            failures.append(RouteFailure(route, op, where, message))
            continue
        for failure in failures:
            notes.append(f"Core ML route {failure.route} failed ({failure.message}); {route} worked")
        return converted, route, notes
    raise _conversion_error(failures)


def _convert_tf(ct, source: SourceModel, output_names: list[str], batch: int, common: dict, images):
    """TensorFlow/Keras -> ML Program through coremltools' TF2 frontend; returns (mlmodel, route, notes).

    The frontend takes a Keras model or a list of concrete functions. edgeport gives it one
    concrete ``tf.function`` around the same callable the ONNX export traced (the Keras model, or
    a SavedModel's serving signature), with the batch fixed. Its graph outputs are TF's
    ``Identity`` ops (a Keras model converted directly came out as ``Identity_1, Identity``, in
    another order), so the program is converted to MIL first, its outputs renamed like the
    source's, and then converted to the ML Program.
    """
    from coremltools._deps import _TF_2_MAX_VERSION

    from edgeport.frontends import tf as tf_in

    tf_version = enable_tf_frontend(ct)
    import tensorflow as tf

    # The live model wrapped as load_tf_model wraps it (not reloaded: no second load, and no
    # second code check for a model the user allowed with --allow-pickle). Its call() is traceable.
    model = source.live_model
    if source.form in ("saved_model", "tf_keras_saved_model") and getattr(model, "signatures", None):
        tf_model = tf_in._signature_model(model, Path(source.path), source.form)
    else:
        tf_model = tf_in._keras_model(model, source.form)
    signature = [
        tf.TensorSpec(spec.concrete_shape(batch), tf.as_dtype(spec.dtype), name=spec.name) for spec in source.inputs
    ]

    def call(*args):
        result = tf_model.call(list(args))
        return [result[name] for name in tf_model.output_names]  # the order of output_names (tf_in keeps it)

    notes = [f"coremltools {coreml_version()} was tested with TensorFlow <= {_TF_2_MAX_VERSION}; this is {tf_version}"]
    # The concrete function fixes the shapes; only image inputs need declaring.
    inputs = {"inputs": _tensor_types(ct, source.inputs, batch, images)} if images else {}
    try:
        with quiet():
            concrete = tf.function(call, input_signature=signature).get_concrete_function()
            graph_outputs = [t.name.split(":")[0] for t in concrete.outputs]
            program = ct.convert(
                [concrete],
                source="tensorflow",
                convert_to="milinternal",
                outputs=[ct.TensorType(name=name) for name in graph_outputs],
                minimum_deployment_target=common["minimum_deployment_target"],
                compute_precision=ct.precision.FLOAT32,  # the second conversion applies the real one
                **inputs,
            )
            for var, name in zip(program.functions["main"].outputs, output_names, strict=True):
                var.set_name(name)
            mlmodel = ct.convert(program, **common)
    except Exception as exc:  # coremltools raises many types; each becomes one line
        message = describe_exception(exc)
        op, _ = _failed_op(str(exc))
        raise ConversionError(
            f"Core ML cannot convert the TensorFlow model ({TF_ROUTE}"
            + (f", op {op!r}" if op else "")
            + f"): {message[:300]}",
            hint="replace that layer with standard ops, convert from a PyTorch version of the model, "
            "or use --output_format tflite/onnx",
        ) from exc
    got = [o.name for o in mlmodel.get_spec().description.output]
    if got != list(output_names):
        raise ConversionError(f"the Core ML package's outputs are {got}, the model's are {list(output_names)}")
    return mlmodel, TF_ROUTE, notes


def _decomposed(program, core_aten: bool, notes: list[str]):
    """The program with its custom ops decomposed as their Core ML lowering says (plus the
    core-ATen decompositions when ``core_aten``); adds a note per custom op to ``notes``."""
    import torch

    table = torch.export.default_decompositions() if core_aten else {}
    table.update(decomposition_table(program))
    for note in custom_op_notes(program):
        if note not in notes:
            notes.append(note)
    return program.run_decompositions(table)


def _conversion_error(failures: list[RouteFailure]) -> ConversionError:
    """One exit-4 message: the op and module of the first failure that names one, every route's error."""
    named = next((f for f in failures if f.op and f.module), next((f for f in failures if f.op), failures[0]))
    op = repr(named.op) if named.op else "(the error names none)"
    module = named.module or "an unknown module"
    routes = "; ".join(f"{f.route}: {f.message[:160]}" for f in failures)
    return ConversionError(
        f"Core ML cannot convert op {op} in {module}; tried {len(failures)} route(s): {routes}",
        hint=f"rewrite {module} with ops coremltools supports (e.g. decompose it into matmul/softmax/elementwise "
        "ops, or replace a fused PyTorch module with its explicit computation), register a coremltools "
        "op translation, or use --output_format onnx/tflite",
    )
