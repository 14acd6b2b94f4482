"""TFLite export: ONNX -> onnx2tf (Keras) -> TFLite converter, in a child process.

One entry point, :func:`export_tflite`, maps a :class:`PrecisionPlan` onto what TFLite
builtins can express (:mod:`edgeport.formats.tflite.modes` says how each scheme is
expressed) and records what the file really holds per planned layer. It runs in steps, each
in its own module:

1. the plan's scheme becomes a converter mode (:mod:`~edgeport.formats.tflite.modes`);
2. a working folder gets a copy of the ONNX file, rewritten where onnx2tf is known to convert
   badly (:mod:`~edgeport.formats.tflite.onnx2tf_input`): Erf-based GELU into the form onnx2tf
   maps to TFLite's GELU builtin, LSTM/GRU/RNN nodes unrolled per time step, each checked
   against the original in ONNX Runtime and noted;
3. calibrated schemes get their calibration data as files (:mod:`~edgeport.formats.tflite.calibration`);
   integer inputs (token ids) are calibrated in their own dtype;
4. onnx2tf runs in a child process (:mod:`~edgeport.formats.tflite.onnx2tf_run`,
   :mod:`~edgeport.formats.tflite.onnx2tf_child`) on the copy, with a timeout, the network
   refused, and a placeholder for the calibration sample images it would otherwise download.
   A crash, hang or missing output becomes :class:`ConversionError`;
5. the .tflite is loaded in LiteRT, described under the ONNX names and written atomically
   (:mod:`~edgeport.formats.tflite.artifact`).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from edgeport.core.errors import ConversionError, InputError
from edgeport.core.plan import PrecisionPlan
from edgeport.data.dataset import Dataset
from edgeport.formats.tflite.artifact import (
    TFLiteExport,
    converter_versions,
    describe_artifact,
    io_transposes,
    write_atomically,
)
from edgeport.formats.tflite.calibration import MAX_CALIBRATION_SAMPLES, add_calibration
from edgeport.formats.tflite.custom_kernels import op_sources
from edgeport.formats.tflite.custom_ops import CustomSite, mark_custom_nodes, save_marked
from edgeport.formats.tflite.layers import TFLiteWeightedOp, layer_precisions, match_layers, onnx_layer_weights
from edgeport.formats.tflite.modes import (
    CALIBRATED_MODES,
    IO_DTYPES,
    SCHEME_MODES,
    expected_deviations,
    scheme_notes,
    unapplied,
)
from edgeport.formats.tflite.onnx2tf_child import NETWORK_LOG
from edgeport.formats.tflite.onnx2tf_input import (
    external_files,
    fix_spatial_dims,
    prepare_folder,
    rewrite_for_onnx2tf,
)
from edgeport.formats.tflite.onnx2tf_rewrites import castlike_to_cast
from edgeport.formats.tflite.onnx2tf_run import run_child


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
    mode = _check_arguments(onnx_path, plan, io_dtype, calibration)
    io_dtype, notes = scheme_notes(plan, mode, io_dtype)
    model, external = _load_onnx(onnx_path)
    initializers = {i.name for i in model.graph.initializer}
    input_names = [v.name for v in model.graph.input if v.name not in initializers]
    not_expressible, float_layers = expected_deviations(plan, mode)

    folder, copy = prepare_folder(onnx_path, work, external)
    sites: list[CustomSite] = []
    if tf_source:
        notes.append("converted from the TensorFlow/Keras source by tf.lite.TFLiteConverter (no onnx2tf)")
    else:
        model, sites = _mark_custom_ops(model, copy, mode, notes)
        model = fix_spatial_dims(model, copy, input_shapes or {}, batch_size, notes)
    recurrent_left = {} if tf_source else rewrite_for_onnx2tf(model, copy, notes)

    request = _child_request(
        folder,
        copy,
        mode=mode,
        io_dtype=io_dtype,
        per_tensor=per_tensor,
        batch_size=batch_size,
        input_order=input_names,
        crash_for_test=_crash_for_test,
        tf_source=tf_source,
    )
    if sites:
        _add_custom_ops(request, sites, mode, notes)
    if mode in CALIBRATED_MODES:
        add_calibration(request, plan, calibration, work, max_calibration_samples, notes)
        if float_layers:
            _add_float_layers(request, model, float_layers)
    if batch_size:
        notes.append(f"dynamic batch dims fixed to {batch_size}")

    start = time.monotonic()
    result = _convert(request, folder, timeout_s, recurrent_left)
    produced = _produced_file(request, result, notes)
    # LiteRT here cannot load a file with custom ops: the same file before they were emitted is described.
    inputs, outputs, io_notes, ops = describe_artifact(Path(request["out_marked"]) if sites else produced, model, mode)
    notes.extend(io_notes)
    applied, how = _applied_precisions(plan, model, ops)
    not_expressible = unapplied(plan, mode, applied, float_layers, not_expressible)
    if result.get("denylisted"):
        notes.append(f"{len(result['denylisted'])} TFLite op(s) kept float by the plan (denylisted_nodes)")
    write_atomically(produced, out_path)

    input_values = [v for v in model.graph.input if v.name not in initializers]
    transposes, output_transposes = io_transposes(input_values, list(model.graph.output), inputs, outputs)
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
        versions=converter_versions(),
        custom_ops=[site.to_dict() for site in sites],
    )


def _check_arguments(onnx_path: Path, plan: PrecisionPlan, io_dtype: str, calibration: Dataset | None) -> str:
    """Return the converter mode of ``plan``; raise InputError for arguments it cannot use."""
    if plan.scheme not in SCHEME_MODES:
        raise InputError(f"TFLite export: unknown plan scheme {plan.scheme!r}")
    if io_dtype not in IO_DTYPES:
        raise InputError(f"TFLite export: io_dtype must be one of {', '.join(IO_DTYPES)}, not {io_dtype!r}")
    if not onnx_path.is_file():
        raise InputError(f"ONNX file not found: {onnx_path}")
    mode = SCHEME_MODES[plan.scheme]
    if mode in CALIBRATED_MODES and calibration is None:
        raise InputError(f"TFLite {mode} needs calibration data", hint="pass --calibration_data")
    return mode


def _mark_custom_ops(
    model: onnx.ModelProto, copy: Path, mode: str, notes: list[str]
) -> tuple[onnx.ModelProto, list[CustomSite]]:
    """Replace the model's TFLite custom-op nodes by their markers in onnx2tf's ``copy``
    (:mod:`edgeport.formats.tflite.custom_ops`) and CastLike nodes, which decompositions bring,
    by Cast; return the model as converted and the sites."""
    marked, sites = mark_custom_nodes(model)
    if not sites:
        return _cast_like(model, copy, notes), []
    if mode == "int16":
        names = ", ".join(s.custom_code for s in sites)
        raise ConversionError(
            f"TFLite 16x8 quantization with custom op(s) {names} is not supported: its calibration would run "
            "a stand-in in their place",
            hint="use --quantization int8 or fp16, or decompose the op (onnx=Decompose(fn))",
        )
    save_marked(marked, copy)
    return _cast_like(marked, copy, notes), sites


def _cast_like(model: onnx.ModelProto, copy: Path, notes: list[str]) -> onnx.ModelProto:
    """CastLike nodes (onnx2tf has no converter for them) become Cast in onnx2tf's ``copy``."""
    model, count = castlike_to_cast(model)
    if count:
        onnx.save(model, str(copy))
        notes.append(f"{count} CastLike node(s) written as Cast for onnx2tf (it has no CastLike converter)")
    return model


def _add_custom_ops(request: dict[str, Any], sites: list[CustomSite], mode: str, notes: list[str]) -> None:
    """Ask the child to emit the sites as TFLite custom ops (and, for calibrated modes, to load the
    op modules whose references recalibrate the ranges after them); note each op."""
    request["custom_ops"] = [site.to_dict() for site in sites]
    request["out_marked"] = str(Path(request["work"]) / "model.marked.tflite")
    request["custom_op_sources"] = op_sources([s.entry for s in sites]) if mode in CALIBRATED_MODES else []
    for site in sites:
        notes.append(
            f"TFLite custom op {site.custom_code!r} for {len(site.nodes)} node(s) of {site.entry}: "
            "the app must register its kernel (LiteRT's op resolver); it computes in float"
        )


def _load_onnx(onnx_path: Path) -> tuple[onnx.ModelProto, set[str]]:
    """Return the model at ``onnx_path`` with its external data, and the names of its external files."""
    model = onnx.load(str(onnx_path), load_external_data=False)
    external = external_files(model)
    if external:
        onnx.load_external_data_for_model(model, str(onnx_path.parent))
    return model, external


def _child_request(
    folder: Path,
    copy: Path,
    *,
    mode: str,
    io_dtype: str,
    per_tensor: bool,
    batch_size: int | None,
    input_order: list[str],
    crash_for_test: bool,
    tf_source: dict[str, Any] | None,
) -> dict[str, Any]:
    """Return the conversion child's request (:mod:`edgeport.formats.tflite.onnx2tf_child`):
    the ONNX ``copy`` to convert, its files in ``folder``, and how to convert it. Calibration
    and float layers start empty (:func:`add_calibration`, :func:`_add_float_layers`)."""
    return {
        "onnx": str(copy),
        "work": str(folder),
        "out": str(folder / "model.tflite"),
        "result": str(folder / "result.json"),
        "mode": mode,
        "io_dtype": io_dtype,
        "per_tensor": per_tensor,
        "batch_size": batch_size,
        "input_order": input_order,
        "calibration": {},
        "float_layers": {},
        "crash_for_test": crash_for_test,
        "tf_source": tf_source,
    }


def _add_float_layers(request: dict[str, Any], model: onnx.ModelProto, float_layers: dict[str, list[str]]) -> None:
    """Save the ONNX weights of the layers the plan keeps float next to the request and name
    them per layer in it: the child finds those layers' TFLite ops by their weights and
    denylists them in the int8 quantizer."""
    weights = onnx_layer_weights(model, float_layers)
    stored, keys = {}, {}
    for layer, arrays in weights.items():
        keys[layer] = []
        for array in arrays:
            key = f"w{len(stored)}"
            stored[key] = array
            keys[layer].append(key)
    path = Path(request["work"]) / "layer_weights.npz"
    np.savez(path, **stored)
    request["layer_weights"] = str(path)
    request["float_layers"] = keys


def _convert(
    request: dict[str, Any], folder: Path, timeout_s: float, recurrent_left: dict[str, tuple[str, str]]
) -> dict[str, Any]:
    """Run the conversion child; return its result. A failure of a model with recurrent ops
    left to onnx2tf (``recurrent_left``) names them: onnx2tf's own LSTM/GRU conversion is the
    usual culprit (see :mod:`edgeport.formats.tflite.onnx2tf_unroll`)."""
    try:
        return run_child(request, folder, timeout_s)
    except ConversionError as exc:
        if recurrent_left:
            ops = ", ".join(f"{op} {name} ({why})" for name, (op, why) in recurrent_left.items())
            raise ConversionError(
                f"{exc.message}; the model has recurrent op(s) edgeport could not unroll "
                f"and onnx2tf converts badly: {ops}",
                hint="give the sequence dim a fixed length (--input_shape), drop sequence_lens/peepholes/clip, "
                "or use --output_format onnx; " + (exc.hint or ""),
            ) from exc
        raise


def _produced_file(request: dict[str, Any], result: dict[str, Any], notes: list[str]) -> Path:
    """Return the .tflite the child wrote, after adding its notes (and any network attempt it
    made) to ``notes``; raise ConversionError when it wrote none."""
    notes.extend(result.get("notes", []))
    attempts = Path(request["work"]) / NETWORK_LOG
    if attempts.is_file() and attempts.read_text().strip():
        notes.append(f"onnx2tf tried to reach the network (refused): {attempts.read_text().split()[0]}")
    produced = Path(request["out"])
    if not produced.is_file() or produced.stat().st_size == 0:
        raise ConversionError(f"TFLite conversion ({request['mode']}) reported success but wrote no .tflite file")
    return produced


def _applied_precisions(
    plan: PrecisionPlan, model: onnx.ModelProto, ops: list[TFLiteWeightedOp]
) -> tuple[dict[str, str], dict[str, str]]:
    """Return ``({planned layer: its precision in the file}, {layer: how its TFLite ops were found})``."""
    matched, how = match_layers(onnx_layer_weights(model, {k: v.nodes for k, v in plan.layers.items()}), ops)
    return layer_precisions(matched), how
