"""TensorFlow/Keras ingestion: SavedModel folders, Keras 3 ``.keras`` files and ``.h5`` files
(tf_keras), exported to ONNX with tf2onnx and checked against TensorFlow's own outputs.

Every form becomes one callable over named inputs that returns named outputs: a Keras model
is called in inference mode, a SavedModel through its serving signature. The same callable is
the parity reference (``SourceModel.run``) and what tf2onnx traces, so the names of inputs and
outputs (Keras input/output layer names, signature keys) survive into the ONNX graph.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from edgeport.core import quiet
from edgeport.core.errors import ConversionError, InputError, describe_exception
from edgeport.core.extras import require
from edgeport.core.hashing import sha256_file, sha256_path
from edgeport.core.layers import LAYER_KEY
from edgeport.core.model import Dim, SourceModel, TensorSpec
from edgeport.options.groups import SourceOptions

KERAS_SUFFIXES = (".keras",)
H5_SUFFIXES = (".h5", ".hdf5")
TF_FILE_SUFFIXES = KERAS_SUFFIXES + H5_SUFFIXES
SAVED_MODEL_FILES = ("saved_model.pb", "saved_model.pbtxt")
SERVING_SIGNATURE = "serving_default"


def is_saved_model_dir(path: Path) -> bool:
    """True when ``path`` is a folder holding a TensorFlow SavedModel (saved_model.pb)."""
    return path.is_dir() and any((path / name).is_file() for name in SAVED_MODEL_FILES)


def import_tensorflow():
    """Import TensorFlow quietly (its C++ and Python start-up logs are noise for edgeport users).

    The log levels are set before the import (:func:`edgeport.core.quiet.apply_env`); the absl
    start-up lines TensorFlow writes regardless go to the CLI's captured log, or nowhere from the
    Python API (:func:`edgeport.core.quiet.silenced`). ``--debug`` shows all of it.
    """
    quiet.apply_env()
    with quiet.silenced():
        tf = require("tensorflow", "A TensorFlow/Keras model", "tensorflow")
    if not quiet.debug_enabled():
        tf.get_logger().setLevel(logging.ERROR)
        logging.getLogger("tf2onnx").setLevel(logging.ERROR)
    return tf


@dataclass
class TFModel:
    """A loaded TensorFlow model as edgeport calls it: named inputs in, named outputs out.

    ``model`` is the Keras model or the loaded SavedModel object (kept alive: the signature
    function holds only weak references to its variables). ``signature`` is the serving
    signature's key for SavedModels, None for Keras models.
    """

    model: Any
    form: str
    input_names: list[str]
    input_shapes: list[list[int | None]]
    input_dtypes: list[str]
    output_names: list[str]
    call: Callable[[list[Any]], Mapping[str, Any]]
    signature: str | None = None
    keras_layers: tuple[str, ...] = ()


def _tensor_name(name: str) -> str:
    return name.split(":")[0]


def _keras_model(model: Any, form: str) -> TFModel:
    """Wrap a Keras (3 or tf_keras) functional/sequential model."""
    inputs = getattr(model, "inputs", None)
    if not inputs:
        raise InputError(
            "the Keras model has no defined inputs (a subclassed or never-built model)",
            hint="build it with keras.Input(...) or save it with model.export(folder) and pass the SavedModel folder",
        )
    names = [_tensor_name(str(t.name)) for t in inputs]
    shapes = [[None if d is None else int(d) for d in tuple(t.shape)] for t in inputs]
    dtypes = [_dtype_name(t.dtype) for t in inputs]
    output_names = [str(n) for n in getattr(model, "output_names", None) or []]
    outputs = model.outputs if isinstance(model.outputs, (list, tuple)) else [model.outputs]
    if len(output_names) != len(outputs):
        output_names = [f"output_{i}" for i in range(len(outputs))]

    def call(args: list[Any]) -> dict[str, Any]:
        result = model(args[0] if len(args) == 1 else list(args), training=False)
        if isinstance(result, Mapping):
            return {name: result[name] for name in output_names}
        if not isinstance(result, (list, tuple)):
            result = [result]
        return dict(zip(output_names, result, strict=True))

    layers = tuple(str(layer.name) for layer in getattr(model, "layers", []))
    return TFModel(model, form, names, shapes, dtypes, output_names, call, keras_layers=layers)


def _dtype_name(dtype: Any) -> str:
    tf = import_tensorflow()
    return tf.as_dtype(dtype).name


def _signature_model(loaded: Any, path: Path, form: str) -> TFModel:
    """Wrap a loaded SavedModel's serving signature (or its only signature)."""
    signatures = dict(getattr(loaded, "signatures", {}) or {})
    if not signatures:
        raise InputError(f"the SavedModel {path} has no signatures: edgeport cannot tell how to call it")
    if SERVING_SIGNATURE in signatures:
        key = SERVING_SIGNATURE
    elif len(signatures) == 1:
        key = next(iter(signatures))
    else:
        raise InputError(
            f"the SavedModel {path} has several signatures and no {SERVING_SIGNATURE!r}: "
            + ", ".join(sorted(signatures)),
            hint=f"re-save it with the signature to convert named {SERVING_SIGNATURE!r}",
        )
    function = signatures[key]
    _, kw_specs = function.structured_input_signature
    # A loaded signature's inputs and outputs are maps whose order changed from one process to
    # the next (seen: outputs "age, cls", then "cls, age", so the gate measured another output):
    # sorted by name, as tf.nest orders a dict.
    names = sorted(kw_specs)
    specs = [kw_specs[n] for n in names]
    shapes = [[None if d is None else int(d) for d in spec.shape.as_list()] for spec in specs]
    dtypes = [spec.dtype.name for spec in specs]
    structured = function.structured_outputs
    output_names = sorted(structured) if isinstance(structured, Mapping) else ["output_0"]

    def call(args: list[Any]) -> Mapping[str, Any]:
        result = function(**dict(zip(names, args, strict=True)))
        return result if isinstance(result, Mapping) else {"output_0": result}

    # Variables are named by layer path ("conv/kernel:0"): the layer names, to read node scopes by.
    layers = tuple(
        sorted({str(v.name).rsplit("/", 1)[0] for v in getattr(loaded, "variables", []) if "/" in str(v.name)})
    )
    return TFModel(loaded, form, names, shapes, dtypes, output_names, call, signature=key, keras_layers=layers)


_CODE_REFUSED_HINT = "if you trust the file pass --allow-pickle, or replace the Lambda layer with a registered layer"


def _python_lambdas(config: Any) -> list[str]:
    """Names of the Lambda layers in a Keras config whose function is serialized Python bytecode."""
    found = []
    if isinstance(config, dict):
        inner = config.get("config")
        if config.get("class_name") == "Lambda" and isinstance(inner, dict):
            function = inner.get("function")
            if inner.get("function_type") == "lambda" or isinstance(function, list | tuple):
                found.append(str(inner.get("name", "lambda")))
        for value in config.values():
            found += _python_lambdas(value)
    elif isinstance(config, list):
        for value in config:
            found += _python_lambdas(value)
    return found


def refuse_legacy_lambdas(path: Path) -> None:
    """Refuse an ``.h5`` file or legacy Keras SavedModel holding a Lambda layer of Python bytecode.

    tf_keras rebuilds such a layer by unmarshalling its bytecode and calls it while loading (Keras
    3's safe mode covers only ``.keras`` files): it would run code from the file. The config is
    read without loading the model: the HDF5 ``model_config`` attribute, or the layer metadata
    in ``keras_metadata.pb``.
    """
    names: list[str] = []
    if path.is_dir():
        metadata = path / "keras_metadata.pb"
        text = metadata.read_bytes() if metadata.is_file() else b""
        if b'"class_name": "Lambda"' in text and b'"function_type": "lambda"' in text:
            names = ["lambda"]
    else:
        import json

        import h5py

        try:
            with h5py.File(path, "r") as handle:
                raw = handle.attrs.get("model_config")
        except OSError as exc:
            raise InputError(f"{path} is not a readable HDF5 file: {exc}") from exc
        if raw is not None:
            try:
                names = _python_lambdas(json.loads(raw.decode() if isinstance(raw, bytes) else str(raw)))
            except ValueError as exc:
                raise InputError(f"{path}: its model_config is not valid JSON ({exc})") from exc
    if names:
        raise InputError(
            f"{path} has a Lambda layer ({names[0]}) stored as Python bytecode; loading it would run code from "
            "the file, refused",
            hint=_CODE_REFUSED_HINT,
        )


# TensorFlow ops that act on the machine when the graph runs (edgeport runs the serving
# signature for the reference outputs): file writes and deletions, and Python callbacks.
SIDE_EFFECT_OPS = frozenset({"WriteFile", "DeleteFile", "PyFunc", "PyFuncStateless", "EagerPyFunc", "DebugIdentityV3"})


def refuse_side_effect_ops(path: Path) -> None:
    """Refuse a SavedModel whose graph holds ops in SIDE_EFFECT_OPS (read from saved_model.pb,
    before TensorFlow loads or runs anything). A SavedModel is a program: running its serving
    signature runs every op in it."""
    from tensorflow.core.protobuf import saved_model_pb2

    pb = path / "saved_model.pb"
    if not pb.is_file():
        return  # saved_model.pbtxt: left to TensorFlow
    saved = saved_model_pb2.SavedModel()
    try:
        saved.ParseFromString(pb.read_bytes())
    except Exception as exc:  # protobuf's DecodeError
        raise InputError(f"{pb} does not parse as a SavedModel: {describe_exception(exc)}") from exc
    for meta_graph in saved.meta_graphs:
        graph = meta_graph.graph_def
        nodes = [*graph.node, *(node for function in graph.library.function for node in function.node_def)]
        found = sorted({node.op for node in nodes if node.op in SIDE_EFFECT_OPS})
        if found:
            raise InputError(
                f"{path}: the SavedModel's graph holds op(s) {', '.join(found)}, which act on this machine "
                "(files, Python) when the model runs; refused",
                hint="if you trust the model pass --allow-pickle; otherwise re-export it without those ops",
            )


def load_tf_model(path: Path, allow_code: bool = False) -> TFModel:
    """Load a SavedModel folder, a ``.keras`` file or an ``.h5`` file; raise InputError when it does not load.

    Without ``allow_code`` (``--allow-pickle``) nothing from the file runs as Python: ``.keras``
    files load in Keras safe mode, ``.h5`` files or legacy Keras SavedModels with Python Lambda
    layers are refused before tf_keras reads them, and SavedModels whose graph writes files or
    calls Python are refused before TensorFlow loads them. A ``.keras`` archive that would
    expand like a zip bomb is refused before it is opened.
    """
    tf = import_tensorflow()
    if path.is_dir():
        legacy_keras = (path / "keras_metadata.pb").is_file()
        form = "tf_keras_saved_model" if legacy_keras else "saved_model"
        if not allow_code:
            refuse_side_effect_ops(path)
        try:
            loaded = tf.saved_model.load(str(path))
        except Exception as exc:
            raise InputError(f"{path} is not a loadable SavedModel: {describe_exception(exc)}") from exc
        if not getattr(loaded, "signatures", None) and legacy_keras:
            # A tf_keras SavedModel saved without a serving signature: its Keras config still loads.
            if not allow_code:
                refuse_legacy_lambdas(path)
            return _keras_model(_load_tf_keras(path), form)
        return _signature_model(loaded, path, form)
    suffix = path.suffix.lower()
    if suffix in KERAS_SUFFIXES:
        import keras

        from edgeport.core.limits import check_zip_archive

        check_zip_archive(path, None)  # a .keras file is a zip: refuse a bomb before Keras extracts it
        try:
            # safe_mode refuses to deserialize Python lambdas: no code runs from the file.
            model = keras.saving.load_model(str(path), compile=False, safe_mode=not allow_code)
        except Exception as exc:
            if "arbitrary code execution" in str(exc):
                raise InputError(
                    f"{path} has a Lambda layer stored as Python bytecode; loading it would run code from the "
                    "file, refused (Keras safe mode)",
                    hint=_CODE_REFUSED_HINT,
                ) from exc
            raise InputError(
                f"{path} is not a loadable Keras 3 model: {describe_exception(exc)}",
                hint="custom layers must be importable and registered (keras.saving.register_keras_serializable)",
            ) from exc
        return _keras_model(model, "keras")
    if not allow_code:
        refuse_legacy_lambdas(path)
    return _keras_model(_load_tf_keras(path), "h5")


def _load_tf_keras(path: Path) -> Any:
    """Load an .h5 file or legacy SavedModel with tf_keras (Keras 2), else with Keras 3."""
    try:
        import tf_keras

        loader = tf_keras.models.load_model
    except ImportError:  # tf_keras is optional; Keras 3 reads most legacy .h5 files too
        import keras

        loader = keras.saving.load_model
    try:
        return loader(str(path), compile=False)
    except Exception as exc:
        raise InputError(f"{path} is not a loadable Keras (.h5) model: {describe_exception(exc)}") from exc


def _input_specs(tf_model: TFModel, options: SourceOptions) -> list[TensorSpec]:
    """Input specs from the model, completed by ``--input_shape``: unknown batch -> 'batch'.

    Raises InputError for another unknown dimension without --input_shape, or a shape that
    does not fit the model.
    """
    given = {s.name: s.dims for s in options.input_shape if s.name is not None}
    unnamed = [s.dims for s in options.input_shape if s.name is None]
    if unnamed:
        if len(tf_model.input_names) != 1:
            raise InputError(
                "the model has several inputs: name each --input_shape",
                hint=f"inputs: {', '.join(tf_model.input_names)}",
            )
        given[tf_model.input_names[0]] = unnamed[0]
    for name in given:
        if name not in tf_model.input_names:
            raise InputError(
                f"--input_shape names {name!r}, but the model's inputs are {', '.join(tf_model.input_names)}"
            )
    specs = []
    for name, shape, dtype in zip(tf_model.input_names, tf_model.input_shapes, tf_model.input_dtypes, strict=True):
        dims: list[Dim] = []
        if name in given:
            user = given[name]
            if len(user) != len(shape):
                raise InputError(f"--input_shape for {name!r} has {len(user)} dims, the model declares {len(shape)}")
            for declared, value in zip(shape, user, strict=True):
                if declared is not None and declared != value:
                    raise InputError(f"--input_shape for {name!r} is {user}, the model declares {shape}")
            dims = list(user)
            if options.dynamic_batch and dims:
                dims[0] = "batch"
        else:
            for axis, value in enumerate(shape):
                if value is not None:
                    dims.append(value)
                elif axis == 0:
                    dims.append("batch")
                else:
                    raise InputError(
                        f"input {name!r} has an unknown size at axis {axis} (shape {shape})",
                        hint=f"pass --input_shape {name}:" + ",".join(str(d or 1) for d in shape),
                    )
        # TensorFlow convolutions are channels-last: an image-like input is NHWC.
        layout = "NHWC" if len(dims) == 4 and dtype.startswith("float") else None
        specs.append(TensorSpec(name, dims, dtype, layout))
    return specs


def _make_runner(tf_model: TFModel, specs: list[TensorSpec]):
    """Return ``run(feeds) -> [outputs in tf_model.output_names order]`` (numpy in, numpy out)."""
    tf = import_tensorflow()

    def run(feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        args = [tf.convert_to_tensor(np.ascontiguousarray(feeds[s.name])) for s in specs]
        result = tf_model.call(args)
        return [np.asarray(result[name]) for name in tf_model.output_names]

    return run


def _keras_scope_to_layer(scope: str, layers: tuple[str, ...]) -> str:
    """Keras 3 traces layer ``dense`` under the name scope ``dense_1``: map it back when unambiguous."""
    if scope in layers or not layers:
        return scope
    base = re.sub(r"_\d+$", "", scope)
    return base if base in layers else scope


def _annotate_layers(model: onnx.ModelProto, keras_layers: tuple[str, ...]) -> None:
    """Record the Keras layer of each node as ``edgeport.layer`` metadata, from tf2onnx's node names.

    ``StatefulPartitionedCall/.../functional_1/dense_1/MatMul`` -> ``dense``: the scopes
    between the model's own scope and the op. Nodes tf2onnx created itself (``Transpose__28``)
    have no scope and keep their names.
    """
    for node in model.graph.node:
        parts = [p for p in node.name.split("/") if p and not p.startswith("StatefulPartitionedCall")]
        if len(parts) < 3:
            continue
        scopes = parts[1:-1]  # drop the model scope and the op
        layer = "/".join(_keras_scope_to_layer(s, keras_layers) for s in scopes)
        if layer and not any(p.key == LAYER_KEY for p in node.metadata_props):
            entry = node.metadata_props.add()
            entry.key, entry.value = LAYER_KEY, layer


def _unsupported_nodes(model: onnx.ModelProto) -> list[onnx.NodeProto]:
    """Nodes tf2onnx left as TensorFlow ops (it continues on conversion errors)."""
    bad = []
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 18)
    for node in model.graph.node:
        if node.domain not in ("", "ai.onnx"):
            continue
        try:
            onnx.defs.get_schema(node.op_type, opset, "")
        except onnx.defs.SchemaError:
            bad.append(node)
    return bad


def _name_batch_dims(model: onnx.ModelProto, specs: list[TensorSpec]) -> None:
    """tf2onnx names every unknown dim ``unk__N``, inputs and outputs apart: call the batch 'batch'.

    A TensorFlow model's unknown leading output dim is its batch when its inputs are batched.
    """
    if not any(s.has_dynamic_batch for s in specs):
        return
    for value in model.graph.output:
        dims = value.type.tensor_type.shape.dim
        if dims and dims[0].dim_param.startswith("unk__"):
            dims[0].dim_param = "batch"


def _make_exporter(tf_model: TFModel, specs: list[TensorSpec]):
    """Return ``to_onnx(feeds, options)``: tf2onnx over the same callable as the parity reference."""

    def to_onnx(feeds: dict[str, np.ndarray], options: SourceOptions) -> tuple[onnx.ModelProto, str, list[str]]:
        tf = import_tensorflow()
        import tf2onnx

        signature = [
            tf.TensorSpec([None if isinstance(d, str) else d for d in s.shape], tf.as_dtype(s.dtype), name=s.name)
            for s in specs
        ]

        def traced(*args: Any) -> dict[str, Any]:
            return dict(tf_model.call(list(args)))

        function = tf.function(traced, input_signature=signature)
        try:
            model, _ = tf2onnx.convert.from_function(function, input_signature=signature, opset=options.opset)
        except Exception as exc:  # tf2onnx raises many unrelated types
            raise ConversionError(
                f"tf2onnx failed: {describe_exception(exc)}",
                hint="try another --opset, or export the model to .onnx with tf2onnx yourself",
            ) from exc
        bad = _unsupported_nodes(model)
        if bad:
            ops = sorted({n.op_type for n in bad})
            raise ConversionError(
                f"tf2onnx cannot convert the TensorFlow op(s) {', '.join(ops)} (first at node {bad[0].name!r})",
                hint="replace that layer with standard ops, or convert to TFLite (--output_format tflite)",
            )
        # tf.nest orders a dict's outputs by key; keep the model's own output order instead.
        order = {name: i for i, name in enumerate(tf_model.output_names)}
        outputs = sorted(model.graph.output, key=lambda v: order.get(v.name, len(order)))
        del model.graph.output[:]
        model.graph.output.extend(outputs)
        _name_batch_dims(model, specs)
        _annotate_layers(model, tf_model.keras_layers)
        return model, f"tf2onnx {tf2onnx.__version__} (opset {options.opset})", []

    return to_onnx


def load_tf_source(path: Path, options: SourceOptions) -> SourceModel:
    """Ingest a TensorFlow SavedModel folder, ``.keras`` or ``.h5`` file; return the SourceModel.

    ``live_model`` is the Keras model or the loaded SavedModel; ``run`` calls it on numpy
    feeds; ``to_onnx`` exports it with tf2onnx. Image-like inputs are recorded as NHWC.
    """
    if path.is_file() and path.stat().st_size == 0:
        raise InputError(f"{path} is empty (0 bytes)")
    tf_model = load_tf_model(path, allow_code=options.allow_pickle)
    specs = _input_specs(tf_model, options)
    kind = {
        "saved_model": "TensorFlow SavedModel",
        "tf_keras_saved_model": "Keras 2 (tf_keras) SavedModel",
        "keras": "Keras 3 model (.keras)",
        "h5": "Keras HDF5 model (.h5, loaded with tf_keras)",
    }[tf_model.form]
    notes = [
        f"loaded as a {kind}"
        + (f" through its signature {tf_model.signature!r}" if tf_model.signature else "")
        + f"; inputs {', '.join(tf_model.input_names)}, outputs {', '.join(tf_model.output_names)}"
    ]
    nhwc = [s.name for s in specs if s.layout == "NHWC"]
    if nhwc:
        notes.append(f"layout NHWC (TensorFlow channels-last) recorded for input(s) {', '.join(nhwc)}")
    return SourceModel(
        "tensorflow",
        tf_model.form,
        str(path),
        sha256_path(path) if path.is_dir() else sha256_file(path),
        specs,
        run=_make_runner(tf_model, specs),
        live_model=tf_model.model,
        notes=notes,
        to_onnx=_make_exporter(tf_model, specs),
    )
