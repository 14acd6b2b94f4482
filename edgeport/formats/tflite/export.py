"""TFLite export: ONNX -> onnx2tf (Keras) -> TFLite converter, in a child process.

One entry point, :func:`export_tflite`, maps a :class:`PrecisionPlan` onto what TFLite
builtins can express and records what the file really holds per planned layer.

How each plan scheme is expressed (TF 2.21, onnx2tf 1.29.24):

========================  =====================================================================
``none``                  float32 model.
``fp16``                  float16 weights (DEQUANTIZE to float32 at load), float32 compute/io.
``int8-dynamic``          dynamic-range: int8 weights, activations quantized per op at run time.
                          TFLite leaves weights with fewer than 1024 elements in float32;
                          ``applied`` shows which.
``int8-weight``           the same dynamic-range file: the TFLite converter has no int8
                          weight-only (dequantize-then-float) mode for builtin ops.
``int4-weight``           not expressible with TFLite builtins: falls back to dynamic-range
                          int8, every int4 layer is listed in ``not_expressible`` (the pipeline
                          decides whether that is acceptable; the file is not int4-sized).
``int8``                  full integer with the calibration data: the converter calibrates
                          only (``_experimental_calibrate_only``), then ``mlir_quantize``
                          quantizes with ``denylisted_nodes`` = the ops of the layers the plan
                          keeps in float, so mixed plans stay mixed. io is float32, int8 or
                          uint8 (``io_dtype``).
``int16``                 16x8: int16 activations, int8 weights, calibrated (TFLite's
                          ``EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8``); ops
                          without a 16x8 kernel stay float. Whole-model only: TF's 16x8
                          quantizer takes no denylist. io is float32.
========================  =====================================================================

Per-layer plans are followed only in ``int8`` (float layers stay float32; an fp16 layer
inside an int8 model is kept float32, since TFLite cannot mix float16 weights with int8).
Other per-layer differences are listed in ``not_expressible``.

Before onnx2tf sees it, the copy is rewritten where onnx2tf is known to convert badly
(:mod:`edgeport.formats.tflite.onnx2tf_rewrites`, each checked against the original in ONNX
Runtime and noted): Erf-based GELU into the form onnx2tf maps to TFLite's GELU builtin, and
LSTM/GRU/RNN nodes unrolled per time step. Integer inputs (token ids) are calibrated in
their own dtype.

onnx2tf runs in a child process (:mod:`edgeport.formats.tflite.onnx2tf_child`) on a copy of
the ONNX file, with a timeout, the network refused, and a placeholder for the calibration
sample images it would otherwise download. A crash, hang or missing output becomes
:class:`ConversionError`.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from edgeport.core.errors import ConversionError, InputError, describe_exception
from edgeport.core.plan import PrecisionPlan
from edgeport.data import Dataset
from edgeport.formats.tflite.layers import (
    channel_last_perm,
    layer_precisions,
    match_layers,
    onnx_layer_weights,
    tflite_weighted_ops,
)

PLACEHOLDER_NAME = "calibration_image_sample_data_20x128x128x3_float32.npy"
IO_DTYPES = ("float32", "int8", "uint8")
# plan scheme -> what the TFLite converter is asked for
SCHEME_MODES = {
    "none": "fp32",
    "fp16": "fp16",
    "int8-dynamic": "dynamic",
    "int8-weight": "dynamic",
    "int4-weight": "dynamic",
    "int8": "int8",
    "int16": "int16",
}
CALIBRATED_MODES = ("int8", "int16")
FLOAT_PRECISIONS = ("fp32", "fp16")
DYNAMIC_MIN_ELEMENTS = 1024  # TFLite dynamic-range quantization skips smaller weights
MAX_CALIBRATION_SAMPLES = 500


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
    """What :func:`export_tflite` wrote and how to feed it."""

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


def _versions() -> dict[str, str]:
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


def _onnx_shape(value: onnx.ValueInfoProto) -> list:
    return [
        d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else (d.dim_param or -1)
        for d in value.type.tensor_type.shape.dim
    ]


def _expected(plan: PrecisionPlan, mode: str) -> tuple[dict[str, str], dict[str, list[str]]]:
    """Return ``({layer: why not expressible}, {layer: nodes to keep float})`` before converting."""
    not_expressible: dict[str, str] = {}
    float_layers: dict[str, list[str]] = {}
    for name, layer in plan.layers.items():
        p = layer.precision
        if mode == "int8":
            if p in FLOAT_PRECISIONS:
                float_layers[name] = list(layer.nodes)
                if p == "fp16":
                    not_expressible[name] = "fp16 inside an int8 TFLite model is kept fp32 (no fp16+int8 mix)"
            elif p != "int8":
                not_expressible[name] = f"{p} inside a full-integer TFLite model becomes int8"
        elif mode == "dynamic":
            if p == "int4-weight":
                not_expressible[name] = "int4 weights are not expressible with TFLite builtins; stored as int8"
            elif p in FLOAT_PRECISIONS:
                not_expressible[name] = f"TFLite dynamic-range quantization has no per-layer exclusion; {p} not kept"
            elif p == "int8":
                not_expressible[name] = "int8 activations need a full-integer model; this one is dynamic-range"
        elif mode == "int16" and p != "int16":
            not_expressible[name] = f"TFLite 16x8 quantization is whole-model (no per-layer exclusion); {p} not kept"
        elif mode == "fp16" and p != "fp16":
            not_expressible[name] = f"TFLite float16 conversion is whole-model; {p} not kept"
        elif mode == "fp32" and p != "fp32":
            not_expressible[name] = f"scheme 'none' writes a float32 model; {p} not applied"
    return not_expressible, float_layers


def _want(precision: str, mode: str, is_float_kept: bool) -> str:
    """The precision a layer should end up in, in a file of ``mode``."""
    if mode == "int8":
        return "fp32" if is_float_kept else "int8"
    return {"fp32": "fp32", "fp16": "fp16", "dynamic": "int8-dynamic", "int16": "int16"}[mode]


def _calibration_files(
    calibration: Dataset, input_names: list[str], folder: Path, max_samples: int
) -> tuple[dict[str, str], int]:
    """Write up to ``max_samples`` calibration samples per input (ONNX layout) as .npy files.

    Float inputs are stored as float32; integer and bool inputs (token ids, masks) keep
    their dtype: the child feeds each input in the dtype of the converted model's input
    (onnx2tf keeps int64 ids as int64), unlike onnx2tf's own calibration, which casts every
    input to float32. Returns ``({input: file}, sample count)``.
    """
    count = min(len(calibration), max_samples)
    batches: dict[str, list[np.ndarray]] = {name: [] for name in input_names}
    for start in range(0, count, 64):
        batch = calibration.batch(start, min(start + 64, count))
        for name in input_names:
            if name not in batch:
                raise InputError(f"calibration data has no input {name!r} (it has {', '.join(batch)})")
            batches[name].append(np.asarray(batch[name]))
    files = {}
    for i, name in enumerate(input_names):
        path = folder / f"calibration_{i}.npy"
        array = np.concatenate(batches[name])
        np.save(path, array.astype(np.float32) if array.dtype.kind == "f" else array)
        files[name] = str(path)
    return files, count


def _calibration_cache(work: Path, onnx_copy: Path, calibration_files: dict[str, str], batch: int | None) -> Path:
    """Where the calibrated (not yet quantized) TFLite model of this ONNX file and data is kept."""
    import hashlib

    digest = hashlib.sha256(f"{batch}".encode())
    for path in [onnx_copy, *(Path(calibration_files[k]) for k in sorted(calibration_files))]:
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    return work / "calibrated-tflite" / f"{digest.hexdigest()[:32]}.tflite"


def converter_timeout(default_s: float) -> float:
    """Return the converter child's timeout: ``EDGEPORT_CONVERTER_TIMEOUT`` (seconds) when set, else ``default_s``."""
    value = os.environ.get("EDGEPORT_CONVERTER_TIMEOUT", "").strip()
    if not value:
        return default_s
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not seconds > 0:
        raise InputError(f"EDGEPORT_CONVERTER_TIMEOUT={value!r} must be a positive number of seconds")
    return seconds


def _run_child(request: dict[str, Any], folder: Path, timeout_s: float) -> dict[str, Any]:
    """Run the onnx2tf child on ``request``; return its result or raise ConversionError.

    The child is killed after ``timeout_s`` seconds, or after ``EDGEPORT_CONVERTER_TIMEOUT``
    seconds when that environment variable is set (CI jobs and tests bound it that way).
    """
    timeout_s = converter_timeout(timeout_s)
    request_path = folder / "request.json"
    request_path.write_text(json.dumps(request, indent=1))
    env = dict(os.environ)
    package_root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = package_root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env["CUDA_VISIBLE_DEVICES"] = ""
    env["TF_ENABLE_ONEDNN_OPTS"] = env.get("TF_ENABLE_ONEDNN_OPTS", "0")
    log_path = folder / "onnx2tf.log"
    start = time.monotonic()
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "edgeport.formats.tflite.onnx2tf_child", str(request_path)],
            cwd=folder,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            code = proc.wait(timeout=timeout_s)
        except BaseException as exc:  # the timeout, or Ctrl-C/SIGTERM in the parent
            # The child runs in its own session (no terminal signals reach it): kill its group,
            # so that neither a hung converter nor an interrupted one outlives edgeport.
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()
            if not isinstance(exc, subprocess.TimeoutExpired):
                raise
            stage = _read_result(request["result"]).get("stage", "start")
            raise ConversionError(
                f"TFLite conversion (onnx2tf child, stage {stage}) timed out after {timeout_s:g} s",
                hint=f"log: {log_path}; raise the timeout or convert a smaller model",
            ) from None
    result = _read_result(request["result"])
    result["seconds"] = time.monotonic() - start
    stage = result.get("stage", "start")
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        raise ConversionError(
            f"TFLite conversion crashed ({name}) in the onnx2tf child during {stage}",
            hint=f"log: {log_path}; try another precision (e.g. int8-dynamic) or the ONNX format",
        )
    if code != 0 or not result.get("ok"):
        error = result.get("error") or _last_line(log_path) or f"exit code {code}"
        raise ConversionError(
            f"TFLite conversion failed during {stage}: {error}",
            hint=f"log: {log_path}",
        )
    return result


def _read_result(path: str) -> dict[str, Any]:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}


def _last_line(path: Path) -> str:
    try:
        lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    return lines[-1][:300] if lines else ""


def _io_tensors(path: Path, model: onnx.ModelProto) -> tuple[list[TFLiteTensor], list[TFLiteTensor], list[str]]:
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
            onnx_shape = _onnx_shape(value)
            perm = channel_last_perm(onnx_shape, shape)
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


def export_tflite(
    onnx_path: Path,
    plan: PrecisionPlan,
    out_path: Path,
    work: Path,
    calibration: Dataset | None,
    *,
    io_dtype: str = "float32",
    timeout_s: float = 900,
    batch_size: int | None = 1,
    max_calibration_samples: int = MAX_CALIBRATION_SAMPLES,
    per_tensor: bool = False,
    tf_source: dict[str, Any] | None = None,
    input_shapes: dict[str, list[int]] | None = None,
    _crash_for_test: bool = False,
) -> TFLiteExport:
    """Convert ``onnx_path`` to a TFLite file at ``out_path`` following ``plan``; return a TFLiteExport.

    ``calibration`` (ONNX-layout inputs) is required for ``int8``; ``io_dtype`` (float32,
    int8, uint8) sets the input/output type of full-integer models. ``batch_size`` fixes a
    dynamic batch dim (None keeps it dynamic). ``work`` holds the child's files (copy of the
    model, log, request/result). The original ONNX file is never written; ``out_path`` is
    written atomically. ``tf_source`` (:func:`edgeport.formats.tflite.from_tf.tf_source_request`)
    converts the TensorFlow/Keras model ``onnx_path`` was exported from with the TFLite
    converter directly instead of onnx2tf; the ONNX file then serves layer matching and I/O
    names. ``input_shapes`` (``{input: shape}``, e.g. the eval data's) fixes the symbolic
    height/width of image-like inputs before onnx2tf, which converts those badly
    (:func:`edgeport.formats.tflite.onnx2tf_rewrites.spatial_dims_to_fix`); a note says so. Raises
    ConversionError (exit 4) when the conversion fails, crashes or times out, or its file does
    not load in LiteRT; InputError for unusable arguments.
    """
    onnx_path, out_path, work = Path(onnx_path), Path(out_path), Path(work)
    if plan.scheme not in SCHEME_MODES:
        raise InputError(f"TFLite export: unknown plan scheme {plan.scheme!r}")
    if io_dtype not in IO_DTYPES:
        raise InputError(f"TFLite export: io_dtype must be one of {', '.join(IO_DTYPES)}, not {io_dtype!r}")
    if not onnx_path.is_file():
        raise InputError(f"ONNX file not found: {onnx_path}")
    mode = SCHEME_MODES[plan.scheme]
    notes: list[str] = []
    if mode in CALIBRATED_MODES and calibration is None:
        raise InputError(f"TFLite {mode} needs calibration data", hint="pass --calibration_data")
    if io_dtype != "float32" and mode != "int8":
        notes.append(f"io_dtype {io_dtype} applies to full-integer int8 only; inputs/outputs stay float32")
        io_dtype = "float32"
    if plan.scheme == "int8-weight":
        notes.append(
            "int8-weight is written as TFLite dynamic-range quantization (int8 weights, activations "
            "quantized at run time per op); TFLite builtins have no int8 weight-only float-compute mode"
        )
    if plan.scheme == "int4-weight":
        notes.append("int4-weight is not expressible with TFLite builtins: fell back to dynamic-range int8")
    if mode == "dynamic":
        notes.append(f"TFLite dynamic-range quantization leaves weights under {DYNAMIC_MIN_ELEMENTS} elements float32")

    model = onnx.load(str(onnx_path), load_external_data=False)
    external = _external_files(model)
    if external:
        onnx.load_external_data_for_model(model, str(onnx_path.parent))
    initializers = {i.name for i in model.graph.initializer}
    input_names = [v.name for v in model.graph.input if v.name not in initializers]
    not_expressible, float_layers = _expected(plan, mode)

    work.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="tflite-", dir=work))
    copy = folder / "model_copy.onnx"
    shutil.copyfile(onnx_path, copy)  # onnx2tf rewrites its input in place
    for name in external:
        if (onnx_path.parent / name).is_file():
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(onnx_path.parent / name, folder / name)
    rng = np.random.default_rng(0)
    np.save(folder / PLACEHOLDER_NAME, rng.random((20, 128, 128, 3), dtype=np.float32))
    if tf_source:
        notes.append("converted from the TensorFlow/Keras source by tf.lite.TFLiteConverter (no onnx2tf)")
    else:
        model = _fix_spatial_dims(model, copy, input_shapes or {}, batch_size, notes)
    recurrent_left = {} if tf_source else _rewrite_for_onnx2tf(model, copy, notes)

    request: dict[str, Any] = {
        "onnx": str(copy),
        "work": str(folder),
        "out": str(folder / "model.tflite"),
        "result": str(folder / "result.json"),
        "mode": mode,
        "io_dtype": io_dtype,
        "per_tensor": per_tensor,
        "batch_size": batch_size,
        "input_order": input_names,
        "calibration": {},
        "float_layers": {},
        "crash_for_test": _crash_for_test,
        "tf_source": tf_source,
    }
    if mode in CALIBRATED_MODES:
        files, count = _calibration_files(calibration, input_names, folder, max_calibration_samples)
        request["calibration"] = files
        for name, file in files.items():
            dtype = np.load(file, mmap_mode="r").dtype
            if dtype.kind != "f":  # onnx2tf's own calibration would cast these to float32 and fail
                notes.append(f"calibration fed input {name!r} as {dtype.name} (its own dtype, not cast to float32)")
        if mode == "int8":
            # Calibration does not depend on the plan: the candidates of a search share it and
            # differ only in the quantizer's denylist (seconds instead of a full onnx2tf run).
            cached = _calibration_cache(work, copy, files, batch_size)
            # The TF route calibrates another model than onnx2tf's: its own cache entry.
            request["calibrated_cache"] = str(cached.with_name("tf-" + cached.name) if tf_source else cached)
            if plan.details.get("calibration") == "percentile":
                request["percentile"] = float(plan.details.get("percentile", 99.99))
            # Measured on the int8 TFLite model itself (converters/tflite_bias.py), which also
            # sees activation rounding, rather than predicted from the weights on the ONNX graph.
            request["bias_correction"] = bool(plan.details.get("bias_correction"))
            request["weight_rounding"] = plan.details.get("weight_rounding")
            if request["weight_rounding"] and not request["bias_correction"]:
                notes.append("weight rounding (GPTQ) runs with bias correction only: not applied")
        if calibration.synthetic:
            notes.append("int8 calibrated on synthetic inputs: ranges may not match real data")
        if float_layers:
            weights = onnx_layer_weights(model, float_layers)
            stored, keys = {}, {}
            for layer, arrays in weights.items():
                keys[layer] = []
                for array in arrays:
                    key = f"w{len(stored)}"
                    stored[key] = array
                    keys[layer].append(key)
            np.savez(folder / "layer_weights.npz", **stored)
            request["layer_weights"] = str(folder / "layer_weights.npz")
            request["float_layers"] = keys
    if batch_size:
        notes.append(f"dynamic batch dims fixed to {batch_size}")

    start = time.monotonic()
    try:
        result = _run_child(request, folder, timeout_s)
    except ConversionError as exc:
        if recurrent_left:
            # Name the op: onnx2tf's own LSTM/GRU conversion is the usual culprit (see onnx2tf_rewrites).
            ops = ", ".join(f"{op} {name} ({why})" for name, (op, why) in recurrent_left.items())
            raise ConversionError(
                f"{exc.message}; the model has recurrent op(s) edgeport could not unroll "
                f"and onnx2tf converts badly: {ops}",
                hint="give the sequence dim a fixed length (--input_shape), drop sequence_lens/peepholes/clip, "
                "or use --output_format onnx; " + (exc.hint or ""),
            ) from exc
        raise
    notes.extend(result.get("notes", []))
    attempts = folder / "network_attempts.log"
    if attempts.is_file() and attempts.read_text().strip():
        notes.append(f"onnx2tf tried to reach the network (refused): {attempts.read_text().split()[0]}")
    produced = Path(request["out"])
    if not produced.is_file() or produced.stat().st_size == 0:
        raise ConversionError(f"TFLite conversion ({mode}) reported success but wrote no .tflite file")

    try:
        inputs, outputs, io_notes = _io_tensors(produced, model)
        ops = tflite_weighted_ops(produced)
    except (RuntimeError, ValueError) as exc:  # LiteRT cannot prepare the file it was given
        raise ConversionError(
            f"the converted .tflite ({mode}) does not load in LiteRT: {describe_exception(exc)}",
            hint=_dynamic_dims_hint(model) or "try another --quantization or --output_format onnx",
        ) from exc
    notes.extend(io_notes)
    matched, how = match_layers(onnx_layer_weights(model, {k: v.nodes for k, v in plan.layers.items()}), ops)
    applied = layer_precisions(matched)
    for layer, got in applied.items():
        want = _want(plan.layers[layer].precision, mode, layer in float_layers)
        if got == want or layer in not_expressible:
            continue
        if got == "missing":
            not_expressible[layer] = "no TFLite op found for this layer (folded or fused away by the converter)"
        elif mode == "dynamic" and got == "fp32":
            not_expressible[layer] = (
                f"kept fp32: TFLite dynamic-range skips weights under {DYNAMIC_MIN_ELEMENTS} elements"
            )
        else:
            not_expressible[layer] = f"planned {plan.layers[layer].precision}, the TFLite converter produced {got}"
    if result.get("denylisted"):
        notes.append(f"{len(result['denylisted'])} TFLite op(s) kept float by the plan (denylisted_nodes)")

    tmp = out_path.with_name(out_path.name + ".tmp")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(produced, tmp)
    os.replace(tmp, out_path)

    transposes = {}
    for tensor, value in zip(inputs, [v for v in model.graph.input if v.name not in initializers], strict=True):
        perm = channel_last_perm(_onnx_shape(value), tensor.shape)
        if perm:
            transposes[tensor.name] = perm
    output_transposes = {}
    for tensor, value in zip(outputs, model.graph.output, strict=True):
        perm = channel_last_perm(_onnx_shape(value), tensor.shape)
        if perm:
            output_transposes[tensor.name] = [int(i) for i in np.argsort(perm)]
    return TFLiteExport(
        path=out_path,
        scheme=plan.scheme,
        mode=mode,
        io_dtype=io_dtype,
        notes=notes,
        applied=applied,
        not_expressible=not_expressible,
        matched_by=how,
        input_layout={t.name: t.layout or "as ONNX" for t in inputs},
        inputs=inputs,
        outputs=outputs,
        transposes=transposes,
        output_transposes=output_transposes,
        seconds=time.monotonic() - start,
        versions=_versions(),
    )


def _fix_spatial_dims(
    model: onnx.ModelProto, copy: Path, shapes: dict[str, list[int]], batch_size: int | None, notes: list[str]
) -> onnx.ModelProto:
    """Fix the symbolic height/width of image-like inputs to ``shapes`` in onnx2tf's input
    ``copy`` (onnx2tf converts them into files that fail to run); return the model as fixed.

    A symbolic batch of those inputs is fixed to ``batch_size`` in the graph too: left to
    onnx2tf's own batch option, the NHWC input of a tf2onnx export was taken for NCHW
    (``Depth of input (64) is not a multiple of input depth of filter (3)``)."""
    from edgeport.formats.tflite.onnx2tf_rewrites import fix_input_dims, spatial_dims_to_fix

    fixed = spatial_dims_to_fix(model, shapes)
    if not fixed:
        return model
    if batch_size:
        fixed = {name: [batch_size if d < 0 else d for d in shape] for name, shape in fixed.items()}
    from edgeport.frontends.normalize import check_and_simplify

    before = {v.name: _onnx_shape(v) for v in model.graph.input}
    # Simplified again so that shape computations (Shape -> Slice -> Concat feeding a Resize)
    # fold into constants: onnx2tf failed on them even with static inputs ('tf.concat_1').
    model, _ = check_and_simplify(fix_input_dims(model, fixed))
    onnx.save(model, str(copy))
    for name, shape in fixed.items():
        notes.append(
            f"input {name!r} declares dynamic dims {before[name]}: fixed to "
            f"{['batch' if d < 0 else d for d in shape]} (the data's size) for the TFLite conversion; "
            "the .tflite accepts only that size"
        )
    return model


def _dynamic_dims_hint(model: onnx.ModelProto) -> str | None:
    """A hint naming ``--input_shape`` when an input has symbolic non-batch dims, else None."""
    initializers = {i.name for i in model.graph.initializer}
    for value in model.graph.input:
        shape = _onnx_shape(value)
        if value.name not in initializers and any(not isinstance(d, int) or d < 0 for d in shape[1:]):
            example = ",".join(str(d) if isinstance(d, int) and d > 0 else "N" for d in shape)
            return f"input {value.name!r} has dynamic dims {shape}: fix them with --input_shape {value.name}:{example}"
    return None


def _rewrite_for_onnx2tf(model: onnx.ModelProto, copy: Path, notes: list[str]) -> dict[str, tuple[str, str]]:
    """Rewrite the onnx2tf input ``copy`` where onnx2tf is known to convert badly.

    See :mod:`edgeport.formats.tflite.onnx2tf_rewrites`: Erf-based GELU becomes the form onnx2tf
    maps to TFLite's ``GELU`` builtin (else ``Erf`` needs Flex ops), and LSTM/GRU/RNN nodes
    are unrolled per time step (onnx2tf's own recurrent conversion fails, and its ``WHILE``
    loop crashed TFLite's int8 calibrator). The rewritten model is used only when ONNX
    Runtime gives the same outputs as the original on seeded inputs; each rewrite adds a
    note. Returns ``{node: (op, why)}`` for recurrent nodes left to onnx2tf (empty if none).
    """
    from edgeport.formats.tflite.onnx2tf_gelu import canonical_gelu
    from edgeport.formats.tflite.onnx2tf_unroll import RECURRENT_OPS, unroll_recurrent

    rewritten, gelus = canonical_gelu(model)
    recurrent = {n.name or n.output[0]: n.op_type for n in model.graph.node if n.op_type in RECURRENT_OPS}
    result = unroll_recurrent(rewritten)
    left = {name: (recurrent.get(name, "recurrent"), why) for name, why in result.skipped.items()}
    if gelus or result.unrolled:
        error = _max_output_difference(model, result.model)
        if error is None or error > 1e-4:  # relative to each output's peak: float rounding only
            why = "could not be run" if error is None else f"differs by {error:.2g}"
            notes.append(f"onnx2tf input not rewritten (GELU/recurrent ops): the rewritten model {why} in ONNX Runtime")
            return {name: (op, "the unrolled graph failed its check") for name, op in recurrent.items()}
        onnx.save(result.model, str(copy))
        if gelus:
            notes.append(
                f"{gelus} Erf-based GELU subgraph(s) rewritten to the form onnx2tf converts to TFLite's GELU builtin "
                "(TFLite has no Erf builtin)"
            )
        for line in result.unrolled:
            notes.append(
                f"{line} unrolled into per-step MatMul/Sigmoid/Tanh ops for onnx2tf (its own LSTM/GRU conversion "
                f"fails or crashes int8 calibration); ONNX Runtime max relative difference {error:.2g}"
            )
    for name, (op, why) in left.items():
        notes.append(f"{op} {name} left to onnx2tf's recurrent conversion: {why}")
    return left


def _max_output_difference(a: onnx.ModelProto, b: onnx.ModelProto) -> float | None:
    """Run both models in ONNX Runtime on the same seeded inputs; return the largest output difference.

    The difference of each output is relative to its peak magnitude (at least 1).
    Dynamic dims are 1; float inputs are normal samples, integer/bool inputs zeros (valid
    indices). Returns None when either model cannot run.
    """
    import onnxruntime as ort

    rng = np.random.default_rng(0)
    initializers = {i.name for i in a.graph.initializer}
    feeds = {}
    for value in a.graph.input:
        if value.name in initializers:
            continue
        tensor = value.type.tensor_type
        shape = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else 1 for d in tensor.shape.dim]
        dtype = onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type)
        feeds[value.name] = (
            rng.standard_normal(shape).astype(dtype) if np.dtype(dtype).kind == "f" else np.zeros(shape, dtype)
        )
    try:
        outputs = [
            ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)
            for m in (a, b)
        ]
    except Exception:  # noqa: BLE001 - any ORT failure means "not proven equal"
        return None
    return max(
        (
            float(np.max(np.abs(x.astype(np.float64) - y)) / max(1.0, float(np.max(np.abs(x))))) if x.size else 0.0
            for x, y in zip(*outputs, strict=True)
        ),
        default=0.0,
    )


def _external_files(model: onnx.ModelProto) -> set[str]:
    """Return the external-data file names the model's tensors refer to."""
    files = set()
    for tensor in model.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location":
                files.add(entry.value)
    return files
