"""ONNX ingestion: a ``.onnx`` file (with external data beside it), validated and described."""

from __future__ import annotations

from pathlib import Path

import onnx
from google.protobuf.message import DecodeError

from edgeport.core import limits
from edgeport.core.errors import ConversionError, InputError, describe_exception
from edgeport.core.hashing import sha256_file
from edgeport.core.model import Dim, SourceModel, TensorSpec
from edgeport.ops.entries import CustomNode
from edgeport.ops.onnx import REGISTRY_HINT, kept_custom_nodes
from edgeport.ops.registry import find_onnx_op
from edgeport.options.groups import SourceOptions
from edgeport.runtime.ort import custom_ops_in_use

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
    dims = list(tensor_type.shape.dim)
    fixed = [d.HasField("dim_value") and d.dim_value > 0 for d in dims]
    # A tensor whose leading dim is fixed above 1 with one unnamed free dim is a recurrent state
    # ([layers, batch, hidden], Silero VAD's [2, ?, 128]): that free dim is its batch.
    state_like = len(dims) > 1 and fixed[0] and dims[0].dim_value > 1 and fixed.count(False) == 1
    shape: list[Dim] = []
    for i, dim in enumerate(dims):
        if fixed[i]:
            shape.append(int(dim.dim_value))
        else:
            shape.append(dim.dim_param or ("batch" if i == 0 or state_like else f"dim{i}"))
    return TensorSpec(value.name, shape, _ONNX_DTYPES.get(tensor_type.elem_type, "float32"))


def graph_input_specs(model: onnx.ModelProto) -> list[TensorSpec]:
    """Return the specs of the graph's real inputs (initializers listed as inputs are skipped)."""
    initializers = {init.name for init in model.graph.initializer}
    specs = [value_info_spec(v) for v in model.graph.input if v.name not in initializers]
    if not any(isinstance(d, str) and "batch" in d.lower() for spec in specs for d in spec.shape):
        # tf2onnx names every free dim apart ('unk__12', 'unk__13'): inputs whose axis 0 is free
        # share one batch (DeepCut's two [?, 21] inputs were fed different sample counts).
        for spec in specs:
            if len(spec.shape) > 1 and isinstance(spec.shape[0], str):
                old_name = spec.shape[0]
                spec.shape = ["batch" if d == old_name else d for d in spec.shape]
    return specs


def graph_output_specs(model: onnx.ModelProto) -> list[TensorSpec]:
    """Return the specs of the graph's outputs."""
    return [value_info_spec(v) for v in model.graph.output]


def opset_of(model: onnx.ModelProto) -> int:
    """Return the model's default-domain (ai.onnx) opset version (0 when it imports none)."""
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


# QuantizeLinear/DequantizeLinear take the per-channel ``axis`` attribute from opset 13 on;
# ORT's QDQ quantizer writes it at any opset, and the result then fails onnx.checker.
PER_CHANNEL_QDQ_OPSET = 13


def _free_minus_one_dims(value: onnx.ValueInfoProto) -> bool:
    """Give each dimension declared as -1 a name instead (the batch for the first); return
    whether any was. dim_value and dim_param are one field: naming it clears the -1."""
    changed = False
    for i, dim in enumerate(value.type.tensor_type.shape.dim):
        if dim.HasField("dim_value") and dim.dim_value == -1:
            dim.dim_param = "batch" if i == 0 else f"{value.name}_dim{i}"
            changed = True
    return changed


def repair_foreign_quirks(model: onnx.ModelProto) -> list[str]:
    """Fix, in place, what older and non-torch exporters (tf2onnx, paddle2onnx, IR < 4 tools)
    leave that ONNX Runtime runs but onnx.checker or the quantizers refuse; return notes.

    - Initializers also listed as graph inputs (the IR < 4 convention): dropped from the inputs.
      They are constants to every runtime; as inputs ORT's quantizers keep a stale input for a
      weight they replace, and the result fails the checker ("X in initializer but not in graph
      input"), and ONNX Runtime cannot constant-fold them.
    - An IR version below what the model's opsets need: raised to that minimum.
    - Graph inputs/outputs without a shape (the checker requires the field): shapes from ONNX
      shape inference.
    - A dimension declared as -1 (paddle2onnx's "any size"; ONNX Runtime reads it as free): a
      named free dimension.
    """
    notes = []
    freed = [v.name for v in list(model.graph.input) + list(model.graph.output) if _free_minus_one_dims(v)]
    if freed:
        notes.append(f"dimension -1 (any size, paddle2onnx style) read as a free dimension: {', '.join(freed[:6])}")
    initializers = {init.name for init in model.graph.initializer}
    listed = [v for v in model.graph.input if v.name in initializers]
    if listed:
        kept = [v for v in model.graph.input if v.name not in initializers]
        del model.graph.input[:]
        model.graph.input.extend(kept)
        notes.append(
            f"{len(listed)} initializer(s) were also listed as graph inputs (IR < 4 style): "
            "treated as constants, removed from the inputs"
        )
    try:
        needed = onnx.helper.find_min_ir_version_for(list(model.opset_import), ignore_unknown=True)
    except Exception:  # an opset newer than this onnx knows: leave the IR version as it is
        needed = model.ir_version
    if model.ir_version < max(needed, 4):
        notes.append(f"IR version {model.ir_version} raised to {max(needed, 4)} (the minimum for its opsets)")
        model.ir_version = max(needed, 4)
    shapeless = [
        v for v in list(model.graph.input) + list(model.graph.output) if not v.type.tensor_type.HasField("shape")
    ]
    if shapeless and all(v.type.HasField("tensor_type") for v in shapeless):
        try:
            inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False)
        except Exception:  # the checker then names what is missing
            return notes
        found = {v.name: v for v in list(inferred.graph.output) + list(inferred.graph.value_info)}
        fixed = []
        for value in shapeless:
            match = found.get(value.name)
            if match is not None and match.type.tensor_type.HasField("shape"):
                value.type.CopyFrom(match.type)
                fixed.append(value.name)
        if fixed:
            notes.append(f"graph input/output without a declared shape, inferred: {', '.join(fixed[:6])}")
    return notes


# Op domains ONNX Runtime implements; any other domain is a custom op no runtime here can run.
KNOWN_DOMAINS = ("", "ai.onnx", "ai.onnx.ml", "com.microsoft", "ai.onnx.preview.training")
_CHECKER_INLINE_LIMIT = 1_800_000_000
# External data of at least this many bytes is not loaded: the ModelProto keeps its references and
# every later step reads the weights from the files (frontends/normalize.py weights_folder), so
# models over protobuf's 2 GB limit convert without holding their weights twice.
KEEP_EXTERNAL_BYTES = 1 << 30
_ITEMSIZE = {
    onnx.TensorProto.DOUBLE: 8,
    onnx.TensorProto.INT64: 8,
    onnx.TensorProto.UINT64: 8,
    onnx.TensorProto.COMPLEX64: 8,
    onnx.TensorProto.COMPLEX128: 16,
    onnx.TensorProto.FLOAT16: 2,
    onnx.TensorProto.BFLOAT16: 2,
    onnx.TensorProto.INT16: 2,
    onnx.TensorProto.UINT16: 2,
    onnx.TensorProto.INT8: 1,
    onnx.TensorProto.UINT8: 1,
    onnx.TensorProto.BOOL: 1,
}


def tensor_itemsize(elem_type: int) -> int:
    """Bytes per element of an ONNX tensor type (4 for float32 and unknown types)."""
    return _ITEMSIZE.get(elem_type, 4)


def _external_location(tensor: onnx.TensorProto) -> dict[str, str]:
    return {entry.key: entry.value for entry in tensor.external_data}


def check_external_data(model: onnx.ModelProto, path: Path) -> int:
    """Check every external-data reference of ``model`` (loaded from ``path`` without its data)
    before anything is read: the file must be a regular file inside the model's folder (no
    absolute path, no ``..``, no symlink out of it) and the offset/length must lie within it.

    Returns the external bytes the model will read; raises InputError naming the tensor.
    """
    from onnx.external_data_helper import _get_all_tensors, uses_external_data

    folder = path.parent.resolve()  # where onnx looks for the data (a symlinked model file is not followed)
    total = 0
    for tensor in _get_all_tensors(model):
        if not uses_external_data(tensor):
            continue
        info = _external_location(tensor)
        location = info.get("location", "")
        where = f"{path}: tensor {tensor.name!r} has external data at {location!r}"
        target = Path(location)
        if not location or target.is_absolute() or location.startswith(("/", "\\")) or ":" in target.parts[0]:
            raise InputError(f"{where}: an absolute or empty location", hint="external data must sit beside the model")
        resolved = (folder / target).resolve()
        if not resolved.is_relative_to(folder) or ".." in target.parts:
            raise InputError(
                f"{where}, outside the model's folder (path traversal); refused",
                hint="external data files must sit in the model's folder or below it",
            )
        if (folder / target).is_symlink() or not resolved.is_file():
            raise InputError(f"{where}: no such regular file beside the model (symlinks are not followed)")
        size = resolved.stat().st_size
        try:
            offset = int(info.get("offset", 0) or 0)
            length = int(info["length"]) if info.get("length") else size - offset
        except ValueError as exc:
            raise InputError(f"{where}: bad offset/length ({exc})") from exc
        if offset < 0 or length < 0 or offset + length > size:
            raise InputError(f"{where}: offset {offset} + length {length} is beyond the file's {size} bytes")
        total += length
    return total


def check_declared_sizes(model: onnx.ModelProto, path: Path, limit: int) -> None:
    """Refuse initializers and graph inputs/outputs whose declared dims would not fit ``limit``
    (a file can declare a 10^9 x 10^9 tensor in a few bytes)."""
    for tensor in model.graph.initializer:
        needed = limits.tensor_bytes(list(tensor.dims), tensor_itemsize(tensor.data_type))
        limits.refuse_over_budget(f"{path}: initializer {tensor.name!r} of shape {list(tensor.dims)}", needed, limit)
    for value in list(model.graph.input) + list(model.graph.output):
        tensor_type = value.type.tensor_type
        dims = [d.dim_value for d in tensor_type.shape.dim if d.HasField("dim_value")]
        if any(d < -1 for d in dims):  # -1 is "any size" (paddle2onnx): repaired to a free dim
            raise InputError(f"{path}: {value.name!r} declares a negative dimension {dims}")
        dims = [d for d in dims if d >= 0]
        needed = limits.tensor_bytes(dims, tensor_itemsize(tensor_type.elem_type))
        limits.refuse_over_budget(f"{path}: tensor {value.name!r} of declared shape {dims}", needed, limit)


def check_ops(model: onnx.ModelProto, path: Path) -> None:
    """Refuse nodes of op domains no runtime here implements (custom ops), naming op and node,
    unless the op is registered in ``edgeport.ops`` with an ONNX lowering (then it is inlined or
    kept: see :func:`edgeport.ops.onnx.inline_decompositions`)."""
    local = {(f.domain, f.name) for f in model.functions}
    for node in model.graph.node:
        if node.domain in KNOWN_DOMAINS or (node.domain, node.op_type) in local:
            continue
        entry = find_onnx_op(node.domain, node.op_type)
        if entry is not None and entry.onnx is not None:
            continue
        label = node.name or (node.output[0] if node.output else "(unnamed)")
        raise ConversionError(
            f"{path}: node {label!r} is the custom op "
            f"{node.op_type!r} of domain {node.domain!r}, which ONNX Runtime does not implement",
            hint=f"{REGISTRY_HINT}, or replace it with standard ONNX ops (or a model-local function)",
        )


def refuse_unimplemented_custom_nodes(model: onnx.ModelProto) -> None:
    """Raise ConversionError (one line) for a kept custom node ONNX Runtime has no implementation
    of here (its CustomNode has no python_kernel or library and no --custom_op_library was given):
    the model could not be run, so nothing about it could be verified."""
    libraries, _ = custom_ops_in_use()
    for name, entry in kept_custom_nodes(model):
        lowering = entry.onnx
        if isinstance(lowering, CustomNode) and not (lowering.python_kernel or lowering.library or libraries):
            domain, op_type = entry.onnx_node_name()
            raise ConversionError(
                f"node {name!r} is the custom op {domain}::{op_type}, registered without an implementation ONNX "
                "Runtime can run here, so the model cannot be verified",
                hint="give its CustomNode a python_kernel or a library, or pass --custom_op_library",
            )


def read_onnx(path: Path, limit: int | None = None, notes: list[str] | None = None) -> onnx.ModelProto:
    """Load an ONNX file with its external data; raise InputError when it is not valid ONNX.

    Quirks of older and non-torch exporters are repaired first (:func:`repair_foreign_quirks`);
    what was repaired is appended to ``notes``.

    Before anything large is read: the file and its external data must fit ``limit`` bytes
    (default: :func:`edgeport.core.limits.default_memory_limit`), and external data must stay inside
    the model's folder. After loading: onnx.checker (a cyclic or malformed graph is refused)
    and no custom-domain ops (ConversionError).
    """
    limit = limits.default_memory_limit() if limit is None else limit
    size = path.stat().st_size
    if size == 0:
        raise InputError(f"{path} is empty (0 bytes)")
    limits.check_model_bytes(str(path), size, limit)
    try:
        model = onnx.load(str(path), load_external_data=False)
    except (DecodeError, RuntimeWarning) as exc:
        raise InputError(f"{path} is not a valid ONNX file (it does not parse): {exc}") from exc
    except Exception as exc:
        raise InputError(f"{path} could not be loaded as ONNX: {describe_exception(exc)}") from exc
    external = check_external_data(model, path)
    limits.check_model_bytes(str(path), size + external, limit)
    check_declared_sizes(model, path, limit)
    kept = external >= KEEP_EXTERNAL_BYTES  # big weights stay on disk: see KEEP_EXTERNAL_BYTES
    if external and not kept:
        try:
            onnx.load_external_data_for_model(model, str(path.parent))
        except FileNotFoundError as exc:
            raise InputError(f"{path}: external data file missing: {exc.filename or exc}") from exc
        except Exception as exc:
            raise InputError(f"{path}: its external data could not be read: {describe_exception(exc)}") from exc
    if not model.graph.node:
        raise InputError(f"{path} is not a usable ONNX model: its graph has no nodes")
    repaired = repair_foreign_quirks(model)
    if notes is not None:
        notes.extend(repaired)
    try:
        # Above protobuf's 2 GB limit only the file-based checker works (it reads the data itself).
        onnx.checker.check_model(model if model.ByteSize() < _CHECKER_INLINE_LIMIT and not kept else str(path))
    except Exception as exc:  # ValidationError, and protobuf errors on a damaged model
        reason = " ".join(str(exc).split())  # the checker's message spans lines: one line, bounded
        raise InputError(f"{path} is not a valid ONNX model: {reason[:300]}") from exc
    check_ops(model, path)
    return model


def load_onnx_file(path: Path, options: SourceOptions) -> tuple[SourceModel, onnx.ModelProto]:
    """Ingest an ONNX file: returns the SourceModel (no framework runner) and the ModelProto.

    ``options`` is the SourceOptions. ``--input_shape``
    fixes symbolic dimensions; ``--dynamic_batch`` keeps/makes axis 0 symbolic.
    """
    notes: list[str] = []
    model = read_onnx(path, limits.memory_limit(options.max_memory), notes)
    specs = graph_input_specs(model)
    by_name = {s.name: s for s in specs}
    for shape in options.input_shape:
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
        spec.shape = [("batch" if options.dynamic_batch and i == 0 else d) for i, d in enumerate(shape.dims)]
    source = SourceModel("onnx", "onnx", str(path), sha256_file(path), specs, notes=notes)
    return source, model
