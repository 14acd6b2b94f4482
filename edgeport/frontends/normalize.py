"""Normalization: any source -> one checked, shape-inferred, simplified ONNX model, proven
equal to the source by a parity check on reference inputs."""

from __future__ import annotations

import contextlib
import io
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from edgeport.core.errors import ConversionError, describe_exception
from edgeport.core.layers import record_layer_names, restore_layer_names
from edgeport.core.model import CanonicalModel, SourceModel, TensorSpec
from edgeport.frontends.custom_shapes import kept_output_shapes
from edgeport.frontends.onnx import (
    PER_CHANNEL_QDQ_OPSET,
    graph_input_specs,
    graph_output_specs,
    opset_of,
    refuse_unimplemented_custom_nodes,
)
from edgeport.ops.onnx import annotate_custom_outputs, inline_decompositions, torch_translation_table
from edgeport.options.groups import SourceOptions
from edgeport.runtime.ort import OrtRunner

# Below this many bytes a ModelProto can be checked in memory; above it protobuf's 2 GB limit
# forces a path-based check (not reached by the models edgeport targets today).
_CHECKER_INLINE_LIMIT = 1_800_000_000


# A PyTorch module with at least this many bytes of parameters and buffers is exported with its
# weights in external data (a temporary folder removed at exit), as an ONNX source of
# frontends/onnx.py KEEP_EXTERNAL_BYTES keeps them: over protobuf's 2 GB limit nothing else
# saves, and every later step reads them from that folder (see weights_folder).
EXPORT_EXTERNAL_BYTES = 1 << 30
# The model's metadata entry naming the folder its external data lies in, when that is not the
# source's own folder (a big PyTorch export); formats/onnx/external.py leaves it out when saving.
WEIGHTS_FOLDER_KEY = "edgeport.weights_folder"


def _parameter_bytes(model: Any) -> int:
    """Bytes of a module's parameters and buffers (an ExportedProgram's state dict); 0 when unknown."""
    import torch

    if isinstance(model, torch.export.ExportedProgram):
        tensors = [t for t in model.state_dict.values() if isinstance(t, torch.Tensor)]
    elif hasattr(model, "parameters"):
        tensors = [*model.parameters(), *model.buffers()]
    else:
        return 0
    return sum(t.numel() * t.element_size() for t in tensors)


def _export_folder() -> Path:
    """A temporary folder for a big export's weights, removed when the process exits."""
    import atexit
    import shutil
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="edgeport-export-"))
    atexit.register(shutil.rmtree, folder, True)
    return folder


def _graph_with_folder(path: Path) -> onnx.ModelProto:
    """The exported graph at ``path`` without its weights, naming their folder (WEIGHTS_FOLDER_KEY)."""
    model = onnx.load(str(path), load_external_data=False)
    entry = model.metadata_props.add()
    entry.key, entry.value = WEIGHTS_FOLDER_KEY, str(path.parent)
    return model


def _torch_export(
    source: SourceModel, feeds: dict[str, np.ndarray], opset: int
) -> tuple[onnx.ModelProto, str, list[str]]:
    """Export a PyTorch source to ONNX at ``opset``: dynamo first, the TorchScript exporter as fallback."""
    import logging

    import torch

    # The exporter logs a warning per missing optional library (torchvision) at every export.
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    notes: list[str] = []
    names = [s.name for s in source.inputs]
    args = tuple(torch.from_numpy(np.ascontiguousarray(feeds[n])) for n in names)
    model = source.live_model
    dynamic = [s.has_dynamic_batch for s in source.inputs]
    dynamo_error: str | None = None
    big = _parameter_bytes(model) >= EXPORT_EXTERNAL_BYTES
    folder = _export_folder() if big else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            kwargs: dict[str, Any] = {}
            table = torch_translation_table()  # registered custom ops (edgeport/ops)
            if table:
                kwargs["custom_translation_table"] = table
            if source.form != "exported_program" and any(dynamic):
                batch = torch.export.Dim("batch")
                kwargs["dynamic_shapes"] = tuple({0: batch} if d else {} for d in dynamic)
            program = torch.onnx.export(
                model,
                args,
                dynamo=True,
                external_data=False,
                opset_version=opset,
                verbose=False,
                report=False,
                **kwargs,
            )
            if folder is None:
                return program.model_proto, "torch.onnx.export(dynamo=True)", notes
            program.save(str(folder / "model.onnx"), external_data=True)
            notes.append("exported with its weights in external data (a big model)")
            return _graph_with_folder(folder / "model.onnx"), "torch.onnx.export(dynamo=True)", notes
        except Exception as exc:  # the exporter raises many unrelated types
            dynamo_error = describe_exception(exc)
        if source.form == "exported_program":
            raise ConversionError(
                f"torch.onnx.export failed on the ExportedProgram: {dynamo_error}",
                hint="export a TorchScript file or pass a module:factory so the TorchScript exporter can be tried",
            )
        notes.append(f"dynamo exporter failed ({dynamo_error}); used the TorchScript exporter instead")
        buffer = io.BytesIO()
        try:
            torch.onnx.export(
                model,
                args,
                buffer if folder is None else str(folder / "model.onnx"),
                dynamo=False,
                input_names=names,
                opset_version=opset,
                dynamic_axes={n: {0: "batch"} for n, d in zip(names, dynamic, strict=False) if d},
            )
        except Exception as exc:
            raise ConversionError(
                f"both ONNX exporters failed; dynamo: {dynamo_error}; TorchScript: {describe_exception(exc)}",
                hint="simplify the unsupported part of forward() or export the model to .onnx yourself",
            ) from exc
        if folder is not None:
            return _graph_with_folder(folder / "model.onnx"), "torch.onnx.export(dynamo=False)", notes
        return onnx.load_from_string(buffer.getvalue()), "torch.onnx.export(dynamo=False)", notes


def _rename_batch_dims(model: onnx.ModelProto, specs: list[TensorSpec]) -> None:
    """Give the exporter's symbolic batch dims (s0, s77...) the name 'batch' in graph I/O."""
    dynamic_inputs = {s.name for s in specs if s.has_dynamic_batch}
    old_names = set()
    for value in model.graph.input:
        dims = value.type.tensor_type.shape.dim
        if value.name in dynamic_inputs and dims and dims[0].dim_param:
            old_names.add(dims[0].dim_param)
            dims[0].dim_param = "batch"
    for value in model.graph.output:
        dims = value.type.tensor_type.shape.dim
        if dims and dims[0].dim_param in old_names:
            dims[0].dim_param = "batch"


def weights_folder(model: onnx.ModelProto, source_path: str | Path) -> Path | None:
    """The folder holding ``model``'s weights when they were left in external data files (an ONNX
    source of at least frontends/onnx.py KEEP_EXTERNAL_BYTES): the source's folder; else None.

    Such a ModelProto is the graph with references only: it is checked, run (ONNX Runtime reads
    the files itself) and saved (formats/onnx/external.py copies the data) without the weights
    ever entering Python, so a model over protobuf's 2 GB limit is held once, by ONNX Runtime.
    """
    from onnx.external_data_helper import _get_all_tensors, uses_external_data

    if any(uses_external_data(t) for t in _get_all_tensors(model)):
        named = [p.value for p in model.metadata_props if p.key == WEIGHTS_FOLDER_KEY]
        return Path(named[0]) if named else Path(source_path).resolve().parent
    return None


def check_and_simplify(model: onnx.ModelProto, folder: Path | None = None) -> tuple[onnx.ModelProto, list[str]]:
    """Run onnx.checker, shape inference and onnxslim; return the simplified model and notes.
    ``folder``: where the weights lie when the model keeps them in external data (onnxslim, which
    needs them in memory, is then skipped).

    Raises ConversionError when the model fails the checker.
    """
    notes = []
    layer_names = record_layer_names(model)
    try:
        # The in-memory checker looks for external data relative to the working directory: run it
        # from the weights' folder (it only reads them; single-threaded here).
        with contextlib.chdir(folder) if folder is not None else contextlib.nullcontext():
            onnx.checker.check_model(model, full_check=model.ByteSize() < _CHECKER_INLINE_LIMIT)
    except onnx.checker.ValidationError as exc:
        raise ConversionError(f"the ONNX model fails onnx.checker: {describe_exception(exc, with_type=False)}") from exc
    try:
        model = onnx.shape_inference.infer_shapes(model, strict_mode=False, data_prop=True)
    except Exception as exc:
        notes.append(f"shape inference skipped: {type(exc).__name__}")
    if folder is not None:
        notes.append("onnxslim skipped: the weights stay in their external data files (a big model)")
        restore_layer_names(model, layer_names)
        return model, notes
    try:
        import onnxslim

        before = len(model.graph.node)
        # No MatMul+Add -> Reshape+Gemm+Reshape rewrite: dynamic int8 (MatMulInteger) and
        # weight-only int8/int4 (MatMulNBits) quantize MatMul, not Gemm, and the reshapes cost
        # time; ORT fuses MatMul+Add itself at load time. Seen on all-MiniLM-L6-v2.
        slimmed = onnxslim.slim(model, skip_fusion_patterns=["FusionGemm", "FusionGemmMul", "FusionGemmAdd"])
        if slimmed is not None:
            onnx.checker.check_model(slimmed)
            notes.append(f"onnxslim: {before} -> {len(slimmed.graph.node)} nodes")
            model = slimmed
    except Exception as exc:  # a simplifier failure must not block a valid model
        notes.append(f"onnxslim skipped: {describe_exception(exc)}")
    restore_layer_names(model, layer_names)
    return model, notes


def compare_outputs(
    expected: list[np.ndarray], actual: list[np.ndarray], names: list[str], rtol: float, atol: float
) -> dict[str, Any]:
    """Compare two output lists: per output max abs error and the tolerance it had
    (``atol + rtol * max|expected|``). Returns {"ok", "worst", "outputs": {...}}."""
    if len(expected) != len(actual):
        return {
            "ok": False,
            "worst": None,
            "outputs": {},
            "error": f"source has {len(expected)} outputs, ONNX has {len(actual)}",
        }
    results = {}
    worst, worst_ratio = None, -1.0
    for name, exp, act in zip(names, expected, actual, strict=False):
        exp64, act64 = np.asarray(exp, np.float64), np.asarray(act, np.float64)
        if exp64.shape != act64.shape:
            results[name] = {"ok": False, "error": f"shape {list(act64.shape)} != source {list(exp64.shape)}"}
            worst, worst_ratio = name, float("inf")
            continue
        max_err = float(np.max(np.abs(exp64 - act64))) if exp64.size else 0.0
        if not np.isfinite(max_err):
            max_err = float("inf")
        tolerance = atol + rtol * float(np.max(np.abs(exp64))) if exp64.size else atol
        ratio = max_err / tolerance if tolerance > 0 else float("inf")
        results[name] = {"ok": max_err <= tolerance, "max_abs_error": max_err, "tolerance": tolerance}
        if ratio > worst_ratio:
            worst, worst_ratio = name, ratio
    return {"ok": all(r["ok"] for r in results.values()), "worst": worst, "outputs": results}


def run_onnx(
    model: onnx.ModelProto, feeds: dict[str, np.ndarray], what: str, folder: Path | None = None
) -> list[np.ndarray]:
    """Run ``model`` once on ``feeds`` with ONNX Runtime and return its outputs (``folder``: where
    its external data lies, see :func:`weights_folder`).

    Raises ConversionError (one line) when ONNX Runtime refuses the model or fails running it:
    a model that passes onnx.checker can still be unrunnable (bad attribute values, shapes that
    only clash at run time).
    """
    try:
        return OrtRunner(model.SerializeToString(), threads=1, external_folder=folder).run(feeds)
    except MemoryError as exc:
        raise ConversionError(f"{what} ran out of memory in ONNX Runtime", hint="see --max_memory") from exc
    except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph/RuntimeException types
        raise ConversionError(
            f"ONNX Runtime cannot run {what}: {describe_exception(exc, with_type=False)}",
            hint="check the model with onnx.checker.check_model(full_check=True) and onnxruntime",
        ) from exc


def parity_check(
    model: onnx.ModelProto,
    reference_outputs: list[np.ndarray],
    feeds: dict[str, np.ndarray],
    rtol: float,
    atol: float,
    folder: Path | None = None,
) -> dict[str, Any]:
    """Run ``model`` on ``feeds`` with ONNX Runtime and compare with the source's outputs.

    Returns the comparison; raises ConversionError naming the worst output when over tolerance.
    """
    actual = run_onnx(model, feeds, "the normalized ONNX model", folder)
    names = [o.name for o in model.graph.output]
    result = compare_outputs(reference_outputs, actual, names, rtol, atol)
    if not result["ok"]:
        if result.get("error"):
            raise ConversionError(f"parity check failed: {result['error']}")
        worst = result["outputs"][result["worst"]]
        detail = worst.get("error") or (
            f"max abs error {worst['max_abs_error']:.3g} > tolerance {worst['tolerance']:.3g}"
        )
        raise ConversionError(
            f"parity check failed: ONNX output {result['worst']!r} differs from the source model: {detail}",
            hint="the export changed the model's behaviour (random ops, training-mode layers, data-dependent branches)",
        )
    return result


def upgrade_opset(
    model: onnx.ModelProto,
    feeds: dict[str, np.ndarray],
    reference_outputs: list[np.ndarray],
    options: SourceOptions,
    folder: Path | None = None,
) -> tuple[onnx.ModelProto, list[dict[str, str]]]:
    """Upgrade an ONNX source quantized to ONNX below the opset per-channel Q/DQ needs (13) with
    the ONNX version converter, to ``options.opset`` or else to 13, and keep the upgrade only when
    ONNX Runtime gives the original's outputs on ``feeds`` (parity tolerances of the options).
    ``options`` is the SourceOptions.

    Returns the model (the original when no upgrade was needed or none passed) and the report
    decisions. Never raises for a failed upgrade: the quantizer then uses per-tensor weights,
    which Q/DQ supports from opset 10.
    """
    opset = opset_of(model)
    # Only ONNX artifacts carry Q/DQ nodes; onnx2tf and Core ML read old opsets as they are.
    if options.output_format != "onnx" or options.quantization == "none" or not 0 < opset < PER_CHANNEL_QDQ_OPSET:
        return model, []
    from onnx import version_converter

    asked = f"ONNX source at opset {opset}, --quantization {options.quantization}"
    names = [o.name for o in model.graph.output]
    errors = []
    for target in dict.fromkeys((max(options.opset, PER_CHANNEL_QDQ_OPSET), PER_CHANNEL_QDQ_OPSET)):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                upgraded = version_converter.convert_version(model, target)
            onnx.checker.check_model(upgraded)
            comparison = compare_outputs(
                reference_outputs,
                run_onnx(upgraded, feeds, f"the model upgraded to opset {target}", folder),
                names,
                options.parity_rtol,
                options.parity_atol,
            )
        except Exception as exc:  # the converter raises RuntimeError/ValidationError/ConversionError
            errors.append(f"to {target}: {describe_exception(exc)}")
            continue
        if not comparison["ok"]:
            worst = comparison["outputs"].get(comparison["worst"], {})
            errors.append(f"to {target}: parity failed ({worst.get('error') or worst.get('max_abs_error')})")
            continue
        worst_error = max((o.get("max_abs_error", 0.0) for o in comparison["outputs"].values()), default=0.0)
        done = f"upgraded opset {opset} -> {target}, parity max abs err {worst_error:.3g}"
        if errors:
            done += f" (the upgrade {'; '.join(errors)})"
        why = (
            f"per-channel int8 weights (Q/DQ with an axis) need opset >= {PER_CHANNEL_QDQ_OPSET}; the upgraded "
            "model gives the original's outputs on the reference inputs in ONNX Runtime"
        )
        return upgraded, [{"asked": asked, "done": done, "why": why}]
    done = f"kept opset {opset}: int8 weights quantized per tensor, not per channel"
    why = f"the ONNX version converter could not upgrade it ({'; '.join(errors)})"
    return model, [{"asked": asked, "done": done, "why": why}]


def normalize(
    source: SourceModel,
    onnx_model: onnx.ModelProto | None,
    feeds: dict[str, np.ndarray],
    options: SourceOptions,
) -> tuple[CanonicalModel, list[np.ndarray]]:
    """Produce the CanonicalModel: export (framework sources), check, simplify, parity-check.

    ``feeds`` are the reference inputs; ``options`` the SourceOptions. Returns the canonical model and
    the source's outputs on them.
    """
    notes: list[str] = list(source.notes)
    decisions: list[dict[str, str]] = []
    folder = None
    if onnx_model is None:
        if source.to_onnx is not None:  # TensorFlow (tf2onnx), Hugging Face (optimum)
            model, exporter, export_notes = source.to_onnx(feeds, options)
        else:
            model, exporter, export_notes = _torch_export(source, feeds, options.opset)
        _rename_batch_dims(model, source.inputs)
        refuse_unimplemented_custom_nodes(model)
        folder = weights_folder(model, source.path)  # a big PyTorch export: its temporary folder
        notes += export_notes
        reference_outputs = source.run(feeds)
    else:
        model, exporter = onnx_model, "none (ONNX source)"
        model, inlined = inline_decompositions(model)
        if inlined:
            notes.append(f"custom ops inlined from their registered decompositions: {', '.join(inlined)}")
        refuse_unimplemented_custom_nodes(model)
        folder = weights_folder(model, source.path)
        reference_outputs = run_onnx(model, feeds, "the ONNX model", folder)
        model, decisions = upgrade_opset(model, feeds, reference_outputs, options, folder)
    model, check_notes = check_and_simplify(model, folder)
    # Kept custom nodes: typed outputs, shaped by one run (not for weights kept on disk: a big model).
    model = annotate_custom_outputs(model, kept_output_shapes(model, feeds) if folder is None else None)
    notes += check_notes
    parity = parity_check(model, reference_outputs, feeds, options.parity_rtol, options.parity_atol, folder)
    inputs = graph_input_specs(model)
    # Keep the dtypes and dims the user asked for where ONNX left dims symbolic.
    declared = {s.name: s for s in source.inputs}
    for spec in inputs:
        if spec.name in declared and len(declared[spec.name].shape) == len(spec.shape):
            spec.shape = [d if isinstance(d, int) else declared[spec.name].shape[i] for i, d in enumerate(spec.shape)]
            spec.layout = declared[spec.name].layout
    canonical = CanonicalModel(model, inputs, graph_output_specs(model), source, exporter, notes, parity, decisions)
    return canonical, reference_outputs
