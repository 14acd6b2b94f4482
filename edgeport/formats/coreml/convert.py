"""Core ML export: the PyTorch source -> an ML Program ``.mlpackage``, with the precision plan
mapped onto coremltools' weight compression, and a structural check of what was really written.

coremltools has no ONNX frontend, so the package is converted from the live PyTorch model the
ModelBundle holds, trying routes in order: ``torch.export`` (ATen ops kept), ``torch.export``
with the core-ATen decompositions (LSTM/GRU become loops of matmuls), then ``torch.jit.trace``
(what coremltools converted LSTM/GRU and a U-Net's ``max_pool2d`` through here). The report
says which route worked.

The plan's layers are named by their source path and cover ONNX nodes; Core ML names its ops
and weights differently (and fuses BatchNorm into convs, as the ONNX export does). Each planned
layer is matched to the Core ML weight constant that holds the same (fused) values as its ONNX
initializer, and compressed through ``OptimizationConfig(op_name_configs=...)``: the global
config stays None, so nothing the plan does not name is touched, and ``weight_threshold`` is
0 because coremltools' default (2048 elements) silently skips small layers.

===========================  =====================================================================
plan precision               Core ML
===========================  =====================================================================
``fp16``                     fp16 weights and compute (``compute_precision=FLOAT16``)
``fp32`` / ``none``          fp32 compute for that op (FP16ComputePrecision's op_selector), if the
                             profile computes fp32; the Neural Engine does not: fp16, recorded
``int8-weight``              ``constexpr_blockwise_shift_scale``: int8 per output channel with a zero
                             point (asymmetric: measured more accurate than symmetric here)
``int4-weight``              int4 per block of ``int4_weight.block_size`` input channels (iOS18 /
                             macOS15); per output channel when the input channels do not divide
``palettize-8/6/4``          ``constexpr_lut_to_dense``: a k-means look-up table of 2^n fp16
                             values per tensor, n-bit indices (iOS16 / macOS13)
``int8`` (W8A8)              int8 weights + activation quantization: coremltools calibrates
                             activation ranges by running Core ML, so only on macOS; elsewhere the
                             weights are int8 and the activations are recorded as not expressible
``int8-dynamic``             not expressible (Core ML has no dynamic quantization): int8 weights
===========================  =====================================================================

TensorFlow/Keras sources convert through coremltools' TF2 frontend (a concrete ``tf.function`` of
the model with static shapes); ``--coreml_image_input`` makes image-like inputs Core ML image
types whose scale and bias come from ``--preprocess`` (:func:`image_inputs`).

After saving, :func:`inspect_package` reads the package back (the spec and the weight blobs'
types, never the in-memory program) and the per-layer ``applied`` precisions come from it.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import math
import re
import shutil
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

from edgeport.core.errors import ConversionError, InputError, describe_exception
from edgeport.core.extras import missing_extra
from edgeport.core.hashing import sha256_path
from edgeport.core.model_bundle import SourceModel, TensorSpec
from edgeport.core.plan import PrecisionPlan
from edgeport.core.reproducible import canonicalize_mlpackage
from edgeport.data.preprocess import Preprocess
from edgeport.profiles.schema import DeviceProfile, FormatTarget
from edgeport.runtime import coreml as coreml_runtime
from edgeport.runtime.coreml import can_predict, coreml_version  # noqa: F401  (re-exported for the backend)

# Every planned weight is compressed whatever its size: coremltools' default threshold (2048
# elements) silently leaves small layers (a Fashion-MNIST CNN's first convs) uncompressed.
WEIGHT_THRESHOLD = 0
PALETTE_BITS = {"palettize-8": 8, "palettize-6": 6, "palettize-4": 4}
# Core ML op -> the inputs that can hold a planned layer's weight.
WEIGHT_INPUTS = {
    "conv": ("weight",),
    "conv_transpose": ("weight",),
    "linear": ("weight",),
    "matmul": ("y", "x"),
}
# ONNX op -> the input holding its weight (MatMul: whichever input is a constant).
ONNX_WEIGHT_INPUT = {"Conv": 1, "ConvTranspose": 1, "Gemm": 1}
# A Core ML constant matches an ONNX weight when max|a - b| <= this x max|b|: fp16 storage
# rounds to ~5e-4 relative per value; BatchNorm folding in two libraries differs far less.
MATCH_TOLERANCE = 2e-3
ROUTES = ("torch.export", "torch.export + core ATen decompositions", "torch.jit.trace")
TF_ROUTE = "coremltools TensorFlow 2 frontend (concrete tf.function)"
# The 8-bit pixel scaling the data path applies to uint8 samples when --preprocess has no scale.
DEFAULT_PIXEL_SCALE = 1.0 / 255.0
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


def import_coremltools():
    """Import coremltools quietly (``runtime/coreml.py``) and return it; InputError (exit 2)
    naming the extra to install when it is missing."""
    try:
        return coreml_runtime.import_coremltools()
    except coreml_runtime.CoreMLMissing as exc:
        raise missing_extra("Core ML export", "coreml") from exc


def enable_tf_frontend(ct) -> str:
    """Make coremltools' TensorFlow 2 frontend usable in this process; return the TF version.

    When coremltools was imported with TensorFlow hidden (:func:`import_coremltools`), it
    registered no TF ops and its converter entry point believes TF is absent: both are
    switched on here, once (the same imports coremltools runs at start-up when TF is present).
    """
    import coremltools._deps as deps
    import tensorflow as tf

    if not deps._HAS_TF_2:
        deps._HAS_TF = deps._HAS_TF_2 = True
        with quiet():
            from coremltools.converters import _converters_entry as entry
            from coremltools.converters.mil.frontend import tensorflow as tf_frontend
            from coremltools.converters.mil.frontend import tensorflow2 as tf2_frontend

            importlib.reload(tf_frontend)  # registers the TF ops
            importlib.reload(tf2_frontend)  # registers the TF2-only ops
            from coremltools.converters.mil.frontend.tensorflow2.load import TF2Loader

        entry._HAS_TF_2, entry.tf, entry.TF2Loader = True, tf, TF2Loader
    return tf.__version__


@contextlib.contextmanager
def quiet():
    """Silence coremltools' progress bars and prints (they would tear the CLI's progress display)."""
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        yield


@dataclass
class WeightMatch:
    """Where one ONNX node's weight lives in the Core ML program."""

    layer: str
    onnx_node: str
    initializer: str
    const: str  # the Core ML constant's name (compressed ops are named after it)
    coreml_op: str  # the Core ML op consuming it (conv, linear, matmul...)
    coreml_op_name: str
    shape: list[int]
    transposed: bool  # Core ML holds the transpose of the ONNX initializer


@dataclass
class ImageInput:
    """A model input given to Core ML as an 8-bit image: ``input = scale * pixel + bias[channel]``."""

    name: str
    color_layout: str  # "GRAYSCALE" or "RGB" (coremltools' ColorLayout names)
    scale: float
    bias: list[float]
    channel_first: bool  # NCHW (PyTorch) or NHWC (TensorFlow)
    preprocess: str  # the --preprocess spec it was derived from

    def to_coreml(self, ct, shape: list[int]):
        """The coremltools ImageType for this input."""
        return ct.ImageType(
            name=self.name,
            shape=shape,
            scale=self.scale,
            bias=self.bias if self.color_layout == "RGB" else self.bias[0],
            color_layout=getattr(ct.colorlayout, self.color_layout),
            channel_first=self.channel_first,
        )

    def facts(self) -> dict[str, Any]:
        """JSON-ready description for the manifest, the report and the runners."""
        return asdict(self)


def image_inputs(specs: list[TensorSpec], preprocess: Preprocess, batch: int) -> dict[str, ImageInput]:
    """The inputs that become Core ML image types under ``--coreml_image_input``, by name.

    An input qualifies when it is a float 4-D tensor with 1 (GRAYSCALE) or 3 (RGB) channels in
    its layout (``--preprocess layout=``, the source's, else NCHW when dim 1 is 1 or 3). The
    data path turns pixels into model inputs as ``(pixel * scale - mean) / std`` (scale default
    1/255 for 8-bit pixels); a Core ML image type applies one scale and a per-channel bias, so
    ``scale / std`` and ``-mean / std`` express it exactly when std is the same for every
    channel. Raises InputError when no input qualifies, the batch is not 1 (an image type holds
    one image), or the per-channel stds differ (no exact image-type equivalent).
    """
    found: dict[str, ImageInput] = {}
    rejected: list[str] = []
    described = preprocess.describe()
    if preprocess.scale is None:
        rest = "" if described == "(none)" else f";{described}"
        described = f"scale=1/255 (the default for 8-bit pixels){rest}"
    for spec in specs:
        shape = spec.shape
        layout = preprocess.layout or spec.layout
        if layout is None and len(shape) == 4:
            layout = "NCHW" if shape[1] in (1, 3) else "NHWC" if shape[3] in (1, 3) else None
        channels = (shape[1] if layout == "NCHW" else shape[3]) if len(shape) == 4 and layout else None
        if not spec.dtype.startswith("float") or channels not in (1, 3):
            rejected.append(f"{spec.name} {spec.dtype} {shape}")
            continue
        if batch != 1:
            raise InputError(
                f"--coreml_image_input: input {spec.name!r} has a fixed batch of {batch}; a Core ML image input "
                "holds one image",
                hint="export the model with batch 1 or a dynamic batch (--dynamic_batch)",
            )
        for key, values in (("mean", preprocess.mean), ("std", preprocess.std)):
            if len(values) not in (0, 1, channels):
                raise InputError(f"--preprocess {key} has {len(values)} values; input {spec.name!r} has {channels}")
        if len(set(preprocess.std)) > 1:
            raise InputError(
                f"--coreml_image_input: --preprocess std={','.join(f'{v:g}' for v in preprocess.std)} differs per "
                "channel, and a Core ML image input applies one scale to every channel (y = scale * pixel + bias)",
                hint="drop --coreml_image_input (the input stays a float tensor, preprocessed by the caller), "
                "or fold the per-channel std into the model's first layer and pass one std",
            )
        std = preprocess.std[0] if preprocess.std else 1.0
        mean = list(preprocess.mean or [0.0]) * (channels if len(preprocess.mean) <= 1 else 1)
        scale = preprocess.scale if preprocess.scale is not None else DEFAULT_PIXEL_SCALE
        found[spec.name] = ImageInput(
            spec.name,
            "GRAYSCALE" if channels == 1 else "RGB",
            scale / std,
            [0.0 - m / std for m in mean],  # 0.0 - ...: no "-0.0" in the report
            layout == "NCHW",
            described,
        )
    if not found:
        raise InputError(
            "--coreml_image_input: no input is an image (a float 4-D tensor with 1 or 3 channels): "
            + "; ".join(rejected),
            hint="drop --coreml_image_input, or state the layout with --preprocess layout=NCHW|NHWC",
        )
    return found


@dataclass
class CoreMLExport:
    """What one Core ML export wrote and what the package really holds."""

    path: Path
    route: str
    compute_precision: str  # "fp16" or "fp32": the model's default compute precision
    compute_units: str
    deployment_target: str
    input_names: list[str]
    output_names: list[str]
    applied: dict[str, str] = field(default_factory=dict)  # layer -> precision found in the package
    not_expressible: dict[str, str] = field(default_factory=dict)  # layer -> why the plan was not followed
    matches: list[WeightMatch] = field(default_factory=list)
    structure: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    image_inputs: dict[str, ImageInput] = field(default_factory=dict)

    def runner_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for the Core ML runner (and the device harness): names, compute units
        and the image inputs' scale/bias (the runner turns model inputs back into pixels)."""
        kwargs: dict[str, Any] = {
            "compute_units": self.compute_units,
            "input_names": self.input_names,
            "output_names": self.output_names,
        }
        if self.image_inputs:
            kwargs["image_inputs"] = {name: image.facts() for name, image in self.image_inputs.items()}
        return kwargs

    def facts(self) -> dict[str, Any]:
        """JSON-ready facts for the manifest and the report."""
        return {
            "route": self.route,
            "compute_precision": self.compute_precision,
            "compute_units": self.compute_units,
            "minimum_deployment_target": self.deployment_target,
            "applied": self.applied,
            "not_expressible": self.not_expressible,
            "weights": {m.onnx_node: asdict(m) for m in self.matches},
            "structure": self.structure,
            "image_inputs": {name: image.facts() for name, image in self.image_inputs.items()},
            "package_sha256": sha256_path(self.path),
        }


# --- conversion -----------------------------------------------------------------------------------


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


def coreml_target(profile: DeviceProfile) -> FormatTarget:
    """Return the profile's ``formats.coreml``; InputError when the profile does not run Core ML."""
    target = profile.formats.get("coreml")
    if target is None:
        raise InputError(
            f"profile {profile.name} does not run Core ML",
            hint="use --optimize_for metal or ane, or a profile file with a formats.coreml section",
        )
    return target


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
):
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
            with quiet(), torch.no_grad():
                if route == "TorchScript":
                    converted = ct.convert(
                        model, inputs=_tensor_types(ct, specs, batch, images), outputs=outputs, **common
                    )
                elif route.startswith("torch.export"):
                    program = torch.export.export(module, args)
                    decomposed = (
                        program.run_decompositions() if "core ATen" in route else program.run_decompositions({})
                    )
                    converted = ct.convert(decomposed, outputs=outputs, **export_inputs, **common)
                else:
                    traced = torch.jit.trace(module, args, check_trace=False)
                    converted = ct.convert(
                        traced, inputs=_tensor_types(ct, specs, batch, images), outputs=outputs, **common
                    )
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


# --- matching plan layers to Core ML weights -------------------------------------------------------


def _onnx_weight(model: onnx.ModelProto, node: onnx.NodeProto, inits: dict[str, onnx.TensorProto]):
    """Return ``(initializer name, fp32 array)`` of an ONNX node's weight, or None."""
    positions = [ONNX_WEIGHT_INPUT[node.op_type]] if node.op_type in ONNX_WEIGHT_INPUT else [1, 0]
    for position in positions:
        if position < len(node.input) and node.input[position] in inits:
            name = node.input[position]
            return name, numpy_helper.to_array(inits[name]).astype(np.float32)
    return None


def _walk(block):
    """Every op of a MIL block, including those in nested blocks (loops of unrolled RNNs)."""
    for op in block.operations:
        yield op
        for inner in getattr(op, "blocks", ()):
            yield from _walk(inner)


def _weight_consts(mlmodel) -> list[tuple[Any, Any, str]]:
    """``(weighted op, const op, input name)`` for every constant weight in the MIL program."""
    found = []
    for function in mlmodel._mil_program.functions.values():
        for op in _walk(function):
            for input_name in WEIGHT_INPUTS.get(op.op_type, ()):
                var = op.inputs.get(input_name)
                producer = getattr(var, "op", None)
                if producer is not None and producer.op_type == "const" and var.val is not None and var.rank >= 2:
                    found.append((op, producer, input_name))
    return found


def _closeness(onnx_value: np.ndarray, coreml_value: np.ndarray) -> float:
    scale = float(np.abs(onnx_value).max()) or 1.0
    return float(np.abs(onnx_value - coreml_value).max()) / scale


def match_layers(mlmodel, model: onnx.ModelProto, plan: PrecisionPlan) -> tuple[list[WeightMatch], dict[str, str]]:
    """Match each planned ONNX node's weight to the Core ML constant with the same values.

    Returns the matches and ``{layer: why}`` for layers with no match (left uncompressed). Each
    Core ML op's weight is matched once; ties go to the closest values, then program order.
    Layers with identical weights (cloned transformer layers) match different ops that share
    one constant: coremltools stores identical weights once.
    """
    inits = {i.name: i for i in model.graph.initializer}
    nodes = {n.name: n for n in model.graph.node}
    candidates = []
    for op, const, _ in _weight_consts(mlmodel):
        value = np.asarray(const.outputs[0].val, dtype=np.float32)
        candidates.append((op, const, value))
    taken: set[str] = set()  # Core ML ops whose weight is matched
    matches: list[WeightMatch] = []
    missing: dict[str, str] = {}
    for layer_name, layer in plan.layers.items():
        found_here, weightless, unmatched = 0, [], []
        for node_name in layer.nodes:
            node = nodes.get(node_name)
            weight = _onnx_weight(model, node, inits) if node is not None else None
            if weight is None:
                has_constant = node is not None and any(i in inits for i in node.input)
                if node is not None and node.op_type == "MatMul" and not has_constant:
                    weightless.append(node_name)  # activation x activation: nothing to compress
                else:
                    unmatched.append(f"{node_name}: its weight is computed in the graph, not a constant")
                continue
            init_name, value = weight
            best: tuple[float, Any, Any, bool] | None = None
            for op, const, coreml_value in candidates:
                if op.outputs[0].name in taken or coreml_value.size != value.size:
                    continue
                for transposed in (False, True):
                    reference = value.T if transposed else value
                    if transposed and value.ndim != 2:
                        continue
                    if reference.shape != coreml_value.shape:
                        continue
                    error = _closeness(reference, coreml_value)
                    if error <= MATCH_TOLERANCE and (best is None or error < best[0]):
                        best = (error, op, const, transposed)
            if best is None:
                unmatched.append(f"{node_name}: no Core ML weight holds the values of its ONNX weight")
                continue
            _, op, const, transposed = best
            taken.add(op.outputs[0].name)
            found_here += 1
            matches.append(
                WeightMatch(
                    layer_name,
                    node_name,
                    init_name,
                    const.name,
                    op.op_type,
                    op.outputs[0].name,
                    list(const.outputs[0].val.shape),
                    transposed,
                )
            )
        if unmatched:
            missing[layer_name] = "left uncompressed: " + "; ".join(unmatched)
        elif weightless and not found_here:
            missing[layer_name] = (
                "it multiplies two activations (no weight): weight compression does not apply, it runs in the "
                "model's float precision"
            )
    return matches, missing


def fp32_selector(model: onnx.ModelProto, plan: PrecisionPlan, layers: set[str]):
    """An op predicate for FP16ComputePrecision: true for Core ML ops whose weight holds the
    values of one of ``layers``' ONNX weights (those ops keep fp32 compute)."""
    inits = {i.name: i for i in model.graph.initializer}
    nodes = {n.name: n for n in model.graph.node}
    weights = []
    for name in layers:
        for node_name in plan.layers[name].nodes:
            node = nodes.get(node_name)
            found = _onnx_weight(model, node, inits) if node is not None else None
            if found is not None:
                weights.append(found[1])

    def keep(op) -> bool:
        for input_name in WEIGHT_INPUTS.get(op.op_type, ()):
            var = op.inputs.get(input_name)
            if var is None or var.val is None:
                continue
            value = np.asarray(var.val, dtype=np.float32)
            for weight in weights:
                for candidate in (weight, weight.T if weight.ndim == 2 else None):
                    if candidate is not None and candidate.shape == value.shape:
                        if _closeness(candidate, value) <= MATCH_TOLERANCE:
                            return True
        return False

    return keep


# --- compression ----------------------------------------------------------------------------------


def compression_config(precision: str, shape: list[int], profile: DeviceProfile, cto) -> tuple[Any, str]:
    """The coremltools op config for one weight in ``precision`` and a description of it.

    Returns (None, why) for precisions that are not weight compressions.
    """
    if precision == "int8":
        # W8A8: the symmetric int8 weights the profile's int8 scheme (and the Neural Engine) expects.
        mode = "linear_symmetric" if profile.int8.weight_symmetric else "linear"
        config = cto.OpLinearQuantizerConfig(
            mode=mode, dtype="int8", granularity="per_channel", weight_threshold=WEIGHT_THRESHOLD
        )
        return config, f"int8 per output channel, {'symmetric' if mode == 'linear_symmetric' else 'with zero points'}"
    if precision in ("int8-weight", "int8-dynamic"):
        # Weight-only: a zero point per channel costs 1 byte per channel and fits skewed channels
        # better (EfficientNet-Lite0, emulated: top-1 agreement 0.917 vs 0.833 symmetric).
        config = cto.OpLinearQuantizerConfig(
            mode="linear", dtype="int8", granularity="per_channel", weight_threshold=WEIGHT_THRESHOLD
        )
        return config, "int8 per output channel, with zero points"
    if precision == "int4-weight":
        block = profile.int4_weight.block_size
        mode = "linear_symmetric" if profile.int4_weight.symmetric else "linear"
        if len(shape) > 1 and shape[1] % block == 0:
            config = cto.OpLinearQuantizerConfig(
                mode=mode, dtype="int4", granularity="per_block", block_size=block, weight_threshold=WEIGHT_THRESHOLD
            )
            return config, f"int4 per block of {block} input channels"
        # Per-block needs the input channels to divide into blocks (a depthwise conv has 1).
        config = cto.OpLinearQuantizerConfig(
            mode=mode, dtype="int4", granularity="per_channel", weight_threshold=WEIGHT_THRESHOLD
        )
        channels = shape[1] if len(shape) > 1 else shape[0]
        return config, f"int4 per output channel ({channels} input channels do not divide into blocks of {block})"
    if precision in PALETTE_BITS:
        bits = PALETTE_BITS[precision]
        config = cto.OpPalettizerConfig(
            mode="kmeans", nbits=bits, granularity="per_tensor", weight_threshold=WEIGHT_THRESHOLD
        )
        return config, f"{2**bits}-entry k-means look-up table per tensor, {bits}-bit indices"
    return None, precision


def _compress(mlmodel, matches: list[WeightMatch], plan: PrecisionPlan, profile: DeviceProfile):
    """Apply the plan's weight compressions by constant name; return (mlmodel, descriptions)."""
    ct = import_coremltools()
    cto = ct.optimize.coreml
    linear: dict[str, Any] = {}
    palette: dict[str, Any] = {}
    described: dict[str, str] = {}
    for match in matches:
        precision = plan.layers[match.layer].precision
        config, text = compression_config(precision, match.shape, profile, cto)
        if config is None:
            continue
        described[match.onnx_node] = text
        (palette if precision in PALETTE_BITS else linear)[match.const] = config
    with quiet():
        if linear:
            mlmodel = cto.linear_quantize_weights(mlmodel, cto.OptimizationConfig(op_name_configs=linear))
        if palette:
            mlmodel = cto.palettize_weights(mlmodel, cto.OptimizationConfig(op_name_configs=palette))
    return mlmodel, described


def quantize_activations(mlmodel, matches, plan: PrecisionPlan, samples: list[dict[str, np.ndarray]]):
    """W8A8 on macOS: coremltools calibrates the inputs of the ops of int8 layers by running
    the model with Core ML (``linear_quantize_activations``). Returns the new mlmodel."""
    ct = import_coremltools()
    cto = ct.optimize.coreml
    config = {
        m.coreml_op_name: cto.experimental.OpActivationLinearQuantizerConfig(mode="linear_symmetric")
        for m in matches
        if plan.layers[m.layer].precision == "int8"
    }
    with quiet():
        return cto.experimental.linear_quantize_activations(
            mlmodel, cto.OptimizationConfig(op_name_configs=config), samples
        )


# --- reading the saved package ---------------------------------------------------------------------


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


def _const_of(weight_name: str, consts: set[str]) -> str | None:
    """The original constant a (possibly compressed) weight came from: compression ops are
    named ``<const>_palettized`` / ``<const>_quantized``."""
    if weight_name in consts:
        return weight_name
    for const in consts:
        if weight_name.startswith(const + "_"):
            return const
    return None


def applied_precisions(
    structure: dict[str, Any], matches: list[WeightMatch], plan: PrecisionPlan
) -> tuple[dict[str, str], dict[str, dict[str, Any]]]:
    """From the package's structure: ``{layer: precision found}`` and ``{onnx node: weight entry}``."""
    by_op = {m.coreml_op_name: m for m in matches}
    by_const = {m.const: m for m in matches}
    found_by_node: dict[str, dict[str, Any]] = {}
    for entry in structure["weights"]:
        match = by_op.get(entry["name"])
        if match is None:  # the op was renamed: fall back on the weight's name
            const = _const_of(entry["weight"], set(by_const))
            match = by_const.get(const) if const is not None else None
        if match is not None:
            found_by_node[match.onnx_node] = {**entry, "layer": match.layer}
    applied: dict[str, str] = {}
    for layer_name, layer in plan.layers.items():
        found = {found_by_node[n]["precision"] for n in layer.nodes if n in found_by_node}
        if found:
            applied[layer_name] = found.pop() if len(found) == 1 else "mixed: " + ", ".join(sorted(found))
    return applied, found_by_node


# --- the export -----------------------------------------------------------------------------------


def _expected(precision: str, target: FormatTarget, on_mac: bool) -> tuple[str, str | None]:
    """What a planned precision becomes in Core ML on this host, and why when it is not that."""
    if precision in ("fp32", "none"):
        if "fp32" in target.float_compute:
            return "fp32", None
        return "fp16", f"{target.runtime} computes in fp16 only (formats.coreml.float_compute)"
    if precision == "int8":
        if "int8" not in target.schemes:  # a re-applied plan made for another profile
            why = target.why_not.get("int8") or "the profile's Core ML schemes do not include int8 activations"
            return "int8-weight", f"int8 activations: {why.strip()}; the weights are int8, the activations fp16"
        if on_mac:
            return "int8", None
        return "int8-weight", (
            "int8 activations (W8A8) need coremltools' calibration, which runs the model with Core ML "
            "(macOS only); the weights are int8, the activations fp16"
        )
    if precision == "int8-dynamic":
        return "int8-weight", "Core ML has no dynamic activation quantization; the weights are int8"
    if precision == "int16":
        return "fp16", "Core ML has no 16-bit integer activations; kept in fp16"
    return precision, None


def export_coreml(
    source: SourceModel,
    model: onnx.ModelProto,
    plan: PrecisionPlan,
    profile: DeviceProfile,
    out: Path,
    output_names: list[str],
    batch: int,
    converted: dict | None = None,
    calibration_samples: list[dict[str, np.ndarray]] | None = None,
    images: dict[str, ImageInput] | None = None,
) -> CoreMLExport:
    """Convert ``source`` to an ``.mlpackage`` at ``out`` following ``plan``; check what was written.

    ``model`` is the fp32 ONNX model the plan names (its weights identify the layers);
    ``converted`` is a cache of uncompressed conversions keyed by (fp16, fp32 layers), reused
    across the plans of a search (with the same ``images``: inputs given as Core ML image types).
    Returns the CoreMLExport with the per-layer ``applied`` precisions read back from the saved
    package. Raises ConversionError (exit 4) when no
    conversion route works or the package cannot be read back.
    """
    import_coremltools()
    target = coreml_target(profile)
    on_mac = can_predict()
    expected: dict[str, str] = {}
    not_expressible: dict[str, str] = {}
    for name, layer in plan.layers.items():
        expected[name], why = _expected(layer.precision, target, on_mac)
        if why:
            not_expressible[name] = why
    fp32_layers = {name for name, precision in expected.items() if precision == "fp32"}
    if "fp16" not in target.float_compute:
        fp16 = False
    elif "fp32" not in target.float_compute:
        fp16 = True  # the Neural Engine: fp16 only
    else:  # fp16 compute unless the plan is fp32 throughout (then an fp32 model, no op excluded)
        fp16 = plan.scheme != "none" and not (expected and len(fp32_layers) == len(expected))
    key = (fp16, frozenset(fp32_layers) if fp16 else frozenset())
    cache = converted if converted is not None else {}
    if key not in cache:
        keep = fp32_selector(model, plan, fp32_layers) if fp16 and fp32_layers else None
        cache[key] = convert_source(source, output_names, batch, target, fp16, keep, images)
    mlmodel, route, notes = cache[key]
    notes = list(notes)
    matches, missing = match_layers(mlmodel, model, plan)
    for name, why in missing.items():
        not_expressible.setdefault(name, why)
    first_by_const: dict[str, WeightMatch] = {}
    for match in matches:
        first = first_by_const.setdefault(match.const, match)
        if first.layer != match.layer and expected[first.layer] != expected[match.layer]:
            not_expressible[match.layer] = (
                f"it shares its weight constant with {first.layer} (coremltools stores identical weights once), "
                f"so it holds {expected[first.layer]}"
            )
            expected[match.layer] = expected[first.layer]
    compressed_plan = _plan_with(plan, expected)
    mlmodel, described = _compress(mlmodel, matches, compressed_plan, profile)
    if on_mac and any(p == "int8" for p in expected.values()) and calibration_samples:
        mlmodel = quantize_activations(mlmodel, matches, compressed_plan, calibration_samples)
    tmp = out.with_name(f".partial-{out.name}")  # coremltools wants the .mlpackage suffix
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        with quiet():
            mlmodel.save(str(tmp))
        canonicalize_mlpackage(tmp)  # same model -> same bytes (edgeport/core/reproducible.py says why)
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    structure = inspect_package(out)
    applied, found_by_node = applied_precisions(structure, matches, plan)
    for match in matches:
        found = found_by_node.get(match.onnx_node)
        if found is not None and match.onnx_node in described:
            found["compression"] = described[match.onnx_node]
    structure["layers"] = {m.onnx_node: found_by_node.get(m.onnx_node) for m in matches}
    for name in plan.layers:
        want = expected[name]
        got = applied.get(name)
        if got is None:
            not_expressible.setdefault(name, "its weight was not found in the saved package")
        elif got != want and name not in not_expressible:
            not_expressible[name] = f"the package holds {got}, the plan asked for {want} (coremltools did not apply it)"
    for image in (images or {}).values():
        held = next((i for i in structure["inputs"] if i["name"] == image.name), {})
        if held.get("type") != "imageType" or held.get("color_layout") != image.color_layout:
            raise ConversionError(f"the package's input {image.name!r} is not the {image.color_layout} image asked for")
        notes.append(
            f"Core ML image input {image.name!r}: 8-bit {image.color_layout} pixels, input = "
            f"{image.scale:.6g} x pixel + {[round(b, 6) for b in image.bias]} (from --preprocess {image.preprocess})"
        )
    spec_inputs = [i["name"] for i in structure["inputs"]]
    spec_outputs = [o["name"] for o in structure["outputs"]]
    return CoreMLExport(
        out,
        route,
        "fp16" if fp16 else "fp32",
        target.compute_units or "ALL",
        target.minimum_deployment_target or "iOS16",
        spec_inputs,
        spec_outputs,
        applied,
        not_expressible,
        matches,
        structure,
        notes,
        dict(images or {}),
    )


def _plan_with(plan: PrecisionPlan, precisions: dict[str, str]) -> PrecisionPlan:
    """A copy of ``plan`` with each layer's precision replaced by ``precisions[layer]``."""
    import copy

    result = copy.deepcopy(plan)
    for name, layer in result.layers.items():
        layer.precision = precisions.get(name, layer.precision)
    return result
