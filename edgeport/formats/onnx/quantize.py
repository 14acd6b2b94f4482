"""Apply a precision plan to an ONNX model with onnxruntime.quantization / fp16 converters."""

from __future__ import annotations

import contextlib
import gc
import hashlib
import importlib
import json
import logging
import shutil
import warnings
from collections.abc import Iterator
from pathlib import Path

import onnx

from edgeport.core.errors import ConversionError, describe_exception
from edgeport.core.extras import import_hiding
from edgeport.core.plan import CALIBRATED_SCHEMES, PrecisionPlan
from edgeport.data.dataset import Dataset
from edgeport.formats.onnx.custom_sessions import custom_op_sessions
from edgeport.frontends.onnx import PER_CHANNEL_QDQ_OPSET, opset_of
from edgeport.ops.onnx import kept_custom_nodes
from edgeport.quantize.calibrate import DatasetReader
from edgeport.quantize.rewrites import apply_rewrites


def _quant_type(name: str):
    from onnxruntime.quantization import QuantType

    return {"uint8": QuantType.QUInt8, "int16": QuantType.QInt16}.get(name, QuantType.QInt8)


@contextlib.contextmanager
def in_work_folder(work: Path) -> Iterator[Path]:
    """Run third-party ONNX tools with a fresh folder inside ``work`` as the working directory;
    yields that folder (removed with ``work``).

    Why: ONNX Runtime's symbolic shape inference (run by ``quant_pre_process``) saves
    ``sym_shape_infer_temp.onnx`` plus a uuid-named ``.data`` file holding every weight into the
    *current directory* whenever it cannot infer every shape, and never removes them
    (onnxruntime/tools/symbolic_shape_infer.py, ``infer_shapes``). One ``auto`` run quantizes many
    candidates, so a 90 MB model left ~50 such files in the user's folder. Callers pass absolute
    paths. The working directory is process-wide: do not quantize from two threads at once.
    """
    folder = work.resolve() / "cwd"
    folder.mkdir(parents=True, exist_ok=True)
    with contextlib.chdir(folder):
        yield folder


def _has_external_data(path: Path) -> bool:
    """Whether the ONNX file at ``path`` keeps tensors in external data files (reads the graph only)."""
    from onnx.external_data_helper import _get_all_tensors, uses_external_data

    return any(uses_external_data(t) for t in _get_all_tensors(onnx.load(str(path), load_external_data=False)))


def _file_key(path: Path) -> str:
    """A short key naming one version of a file (path, size, modification time)."""
    stat = path.stat()
    return hashlib.sha256(f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:16]


def _preprocess(fp32_path: Path, work: Path, notes: list[str]) -> Path:
    """Run ORT's quant_pre_process shape inference when it can; else keep the input.

    Returns the preprocessed file, made once per fp32 file and reused (``auto`` quantizes the
    same baseline for every candidate). When symbolic shape inference cannot finish (shapes
    that depend on data, e.g. an Expand to a computed shape) ONNX shape inference alone is tried.

    Its graph optimization is skipped: it fuses MatMul+Add into Gemm under new node names,
    which the plan cannot address, and ORT then refused partly quantized MiniLM models
    (bench/results/minilm_explore.md). The session optimizer fuses at load time anyway.
    """
    import_hiding("onnxruntime.tools.symbolic_shape_infer", ("torch",))  # quant_pre_process imports it later
    from onnxruntime.quantization.shape_inference import quant_pre_process

    key = _file_key(fp32_path)
    out = work / f"preprocessed-{key}.onnx"
    failed = work / f"preprocessed-{key}.failed"
    if out.exists():
        return out
    if failed.exists():
        notes.append(failed.read_text())
        return fp32_path
    errors = []
    external = _has_external_data(fp32_path)
    for symbolic in (True, False):
        try:
            if external:
                _preprocess_graph_only(quant_pre_process, fp32_path, out, symbolic)
            else:
                quant_pre_process(str(fp32_path), str(out), skip_optimization=True, skip_symbolic_shape=not symbolic)
            if errors:
                notes.append(f"quant_pre_process without symbolic shape inference ({errors[0]})")
            return out
        except Exception as exc:  # it fails on some graphs; quantization can still go on
            errors.append(describe_exception(exc))
    failed.write_text(f"quant_pre_process skipped: {'; '.join(errors)}")
    notes.append(failed.read_text())
    return fp32_path


def _preprocess_graph_only(quant_pre_process, fp32_path: Path, out: Path, symbolic: bool) -> None:
    """quant_pre_process for a model with external data (a big model): run on its graph with
    data-less stubs for the weights (it only infers shapes, but loads, deep-copies and re-saves
    the whole model several times: 3.3x the weights at peak on a 1 GiB model), then the weights'
    references put back and their bytes streamed into ``out``'s data file (formats/onnx/external.py)."""
    from edgeport.formats.onnx.external import restore_external_weights, save_with_external_data, stub_external_weights

    light, originals = stub_external_weights(onnx.load(str(fp32_path), load_external_data=False))
    graph_in, graph_out = out.with_name(out.stem + "-graph.onnx"), out.with_name(out.stem + "-graph-pre.onnx")
    onnx.save(light, str(graph_in))
    del light
    quant_pre_process(str(graph_in), str(graph_out), skip_optimization=True, skip_symbolic_shape=not symbolic)
    processed = onnx.load(str(graph_out))
    restore_external_weights(processed, originals)
    save_with_external_data(processed, fp32_path.parent, out)
    graph_in.unlink()
    graph_out.unlink()


def _to_fp16(fp32_path: Path, out: Path, notes: list[str]) -> None:
    """Convert to fp16 with fp32 I/O, trying both converters (each fails on some graphs)."""
    from edgeport.runtime.ort import OrtRunner

    if _has_external_data(fp32_path):  # a big model: converted one weight at a time
        from edgeport.formats.onnx.external import fp16_with_external_data

        try:
            fp16_with_external_data(fp32_path, out)
            OrtRunner(out)  # ORT must accept it, not only the checker
        except Exception as exc:
            raise ConversionError(f"fp16 conversion (external data) failed: {describe_exception(exc)}") from exc
        notes.append("fp16 conversion by onnxconverter-common, one weight at a time (external data)")
        return
    model = onnx.load(str(fp32_path))
    # Kept custom-domain nodes stay float32 (their kernels declare float inputs; edgeport/ops).
    blocked = [name for name, entry in kept_custom_nodes(model) if not entry.int8]
    errors = []
    for name in ("onnxconverter-common", "onnxruntime.transformers"):
        try:
            if name == "onnxconverter-common":
                from onnxconverter_common import float16

                converted = float16.convert_float_to_float16(model, keep_io_types=True, node_block_list=blocked)
            else:
                from onnxruntime.transformers.onnx_model import OnnxModel

                wrapper = OnnxModel(onnx.load(str(fp32_path)))
                wrapper.convert_float_to_float16(keep_io_types=True, node_block_list=blocked)
                wrapper.topological_sort()
                converted = wrapper.model
            onnx.checker.check_model(converted)
            OrtRunner(converted.SerializeToString())  # ORT must accept it, not only the checker
            onnx.save(converted, str(out))
            notes.append(f"fp16 conversion by {name}")
            return
        except Exception as exc:
            errors.append(f"{name}: {describe_exception(exc)}")
    raise ConversionError("fp16 conversion failed with both converters: " + "; ".join(errors))


# ORT's MatMulNBits: block-wise weight-only quantization of MatMul weights (compute in float).
WEIGHT_ONLY_BITS = {"int8-weight": 8, "int4-weight": 4}


def _weight_only(fp32_path: Path, plan: PrecisionPlan, out: Path, notes: list[str]) -> None:
    """Weight-only int8/int4 through MatMulNBits; layers it cannot express stay fp32 (noted)."""
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    model = onnx.load(str(fp32_path))
    initializers = {i.name: i for i in model.graph.initializer}
    by_name = {n.name: n for n in model.graph.node}
    include, skipped = [], []
    for layer_name, layer in plan.layers.items():
        if layer.precision != plan.scheme:
            continue
        for node_name in layer.nodes:
            node = by_name.get(node_name)
            weight = initializers.get(node.input[1]) if node is not None and len(node.input) > 1 else None
            if node is not None and node.op_type == "MatMul" and weight is not None and len(weight.dims) == 2:
                include.append(node_name)
            else:
                skipped.append(layer_name)
    if skipped:
        notes.append(
            f"{plan.scheme} not expressible in ONNX for {len(set(skipped))} layer(s) "
            f"(MatMulNBits covers MatMul with 2-D constant weights only), kept fp32: "
            + ", ".join(sorted(set(skipped))[:8])
        )
    op_types: tuple[str, ...] = ("MatMul",)
    if plan.details.get("embeddings") and WEIGHT_ONLY_BITS[plan.scheme] == 4:  # ORT's Gather path: 4 bits only
        from edgeport.quantize.size_budget import embedding_gathers

        embeddings = embedding_gathers(model)
        include += embeddings
        op_types = ("MatMul", "Gather")
        if embeddings:
            notes.append(
                f"{len(embeddings)} embedding table(s) (Gather over a 2-D constant) stored in {plan.scheme} as "
                "GatherBlockQuantized (com.microsoft), for size; the model's opset becomes 21 (int4 types)"
            )
    if not include:
        shutil.copyfile(fp32_path, out)
        return
    block = int(plan.details.get("block_size", 32))
    try:
        quantizer = MatMulNBitsQuantizer(
            model,
            bits=WEIGHT_ONLY_BITS[plan.scheme],
            block_size=block,
            is_symmetric=bool(plan.details.get("symmetric", True)),
            nodes_to_include=include,
            op_types_to_quantize=op_types,
        )
        quantizer.process()
        quantizer.model.save_model_to_file(str(out), use_external_data_format=False)
    except Exception as exc:
        raise ConversionError(f"weight-only quantization ({plan.scheme}) failed: {describe_exception(exc)}") from exc


ACTIVATIONS = ("Relu", "Clip", "LeakyRelu", "Sigmoid", "HardSigmoid", "HardSwish")


def _trailing_activations(model: onnx.ModelProto, layer_nodes: list[str]) -> list[str]:
    """The activation right after each float layer: it belongs to the layer. Quantizing it
    alone puts a Q/DQ pair between a float conv and its ReLU6, which ORT cannot fuse, and
    the search then sees accuracy fall when it keeps more layers in float."""
    wanted = set(layer_nodes)
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    extra = []
    for node in model.graph.node:
        if node.name in wanted and node.output:
            following = consumers.get(node.output[0], [])
            if len(following) == 1 and following[0].op_type in ACTIVATIONS:
                extra.append(following[0].name)
    return extra


# A constant this large is a mask fill value (transformers' attention mask adds float32.min),
# not a number int8 should represent: a tensor carrying it calibrates to a scale of ~1e36 and
# every real value in it quantizes to zero (all-MiniLM-L6-v2: cosine 0.41 with static int8).
MASK_FILL_MAGNITUDE = 1e9
# Ops through which a mask fill value reaches other tensors unchanged in magnitude.
_MASK_CARRIERS = {
    "Add", "Sub", "Mul", "Div", "Neg", "Where", "Expand", "Cast", "Reshape", "Unsqueeze", "Squeeze",
    "Transpose", "Concat", "Slice", "Gather", "Identity", "Min", "Max", "Tile",
}  # fmt: skip


def mask_fill_nodes(model: onnx.ModelProto, base_dir: str = "") -> list[str]:
    """Nodes that take a tensor carrying a mask fill constant (|x| >= 1e9) as input.

    Static int8 must leave them in float: the attention-mask arithmetic, the ``scores + mask``
    Add and the Softmax it feeds (its output, in [0, 1], is an ordinary activation again).
    ``base_dir``: where the external data of a model loaded without it lies (read one tensor at a time).
    """
    import numpy as np
    from onnx import numpy_helper

    def extreme(array: np.ndarray) -> bool:
        return array.dtype.kind == "f" and array.size > 0 and bool(np.max(np.abs(array)) >= MASK_FILL_MAGNITUDE)

    carrying = {i.name for i in model.graph.initializer if extreme(numpy_helper.to_array(i, base_dir))}
    for node in model.graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            if extreme(numpy_helper.to_array(node.attribute[0].t)):
                carrying.update(node.output)
    excluded = []
    for node in model.graph.node:  # topological order: producers before consumers
        if node.op_type == "Constant" or not any(name in carrying for name in node.input):
            continue
        excluded.append(node.name)
        if node.op_type in _MASK_CARRIERS:
            carrying.update(node.output)
    return excluded


def _calibration_method(details: dict):
    """ORT calibration method named in the plan (minmax by default)."""
    from onnxruntime.quantization import CalibrationMethod

    return {"percentile": CalibrationMethod.Percentile, "entropy": CalibrationMethod.Entropy}.get(
        str(details.get("calibration", "minmax")).lower(), CalibrationMethod.MinMax
    )


def apply_plan(
    fp32_path: Path,
    plan: PrecisionPlan,
    out: Path,
    work: Path,
    calibration: Dataset | None,
    batch_size: int,
    progress=None,
) -> list[str]:
    """Write ``fp32_path`` quantized as ``plan`` says to ``out``; return notes on what was done.

    Everything the third-party quantizers write goes to ``work`` (see :func:`in_work_folder`).
    Raises ConversionError when the quantizer fails.
    """
    fp32_path, out, work = fp32_path.resolve(), out.resolve(), work.resolve()
    with in_work_folder(work):
        with custom_op_sessions():  # the calibrator runs the model's custom ops too (edgeport/ops)
            return _apply_plan(fp32_path, plan, out, work, calibration, batch_size, progress)


def _apply_plan(
    fp32_path: Path,
    plan: PrecisionPlan,
    out: Path,
    work: Path,
    calibration: Dataset | None,
    batch_size: int,
    progress=None,
) -> list[str]:
    """The body of :func:`apply_plan` (absolute paths, run inside the work folder)."""
    notes: list[str] = []
    if plan.scheme == "none":
        shutil.copyfile(fp32_path, out)
        return notes
    if plan.scheme == "fp16":
        _to_fp16(fp32_path, out, notes)
        return notes
    if plan.scheme in WEIGHT_ONLY_BITS:
        _weight_only(fp32_path, plan, out, notes)
        gc.collect()  # the quantizer's model (all the weights) sits in reference cycles
        return notes
    source = apply_rewrites(_preprocess(fp32_path, work, notes), plan, work, calibration, notes)
    # Weighted layers planned in another precision are excluded; everything else the quantizer
    # can handle (Relu, MaxPool, Add...) is quantized too, so int8 tensors flow between layers
    # without a Dequantize/Quantize pair at every op (measured: 2.27x -> 2.57x on the example).
    excluded = plan.nodes_not_in(plan.scheme)
    # The graph without its weights: a big model's are read by the quantizer, not held here too.
    graph = onnx.load(str(source), load_external_data=False)
    excluded += _trailing_activations(graph, excluded)
    # Kept custom-domain nodes stay float unless their entry declares an int8 form (edgeport/ops).
    excluded += [name for name, entry in kept_custom_nodes(graph) if not entry.int8 and name not in excluded]
    if plan.scheme in CALIBRATED_SCHEMES:
        masked = [n for n in mask_fill_nodes(graph, str(source.parent)) if n not in excluded]
        if masked:
            excluded += masked
            notes.append(
                f"{len(masked)} node(s) fed by mask fill values (|x| >= {MASK_FILL_MAGNITUDE:g}, e.g. the attention "
                "mask) kept in float: int8 activations cannot represent them"
            )
    if not plan.nodes_in(plan.scheme):
        notes.append("no weighted layer to quantize: the artifact equals the fp32 model")
        shutil.copyfile(fp32_path, out)
        return notes
    per_channel = bool(plan.details.get("per_channel"))
    opset = opset_of(graph)
    if per_channel and plan.scheme in CALIBRATED_SCHEMES and opset < PER_CHANNEL_QDQ_OPSET:
        per_channel = False
        notes.append(
            f"per-tensor weights instead of per-channel: the model is at opset {opset} and per-channel "
            f"Q/DQ needs opset {PER_CHANNEL_QDQ_OPSET} (its upgrade did not pass)"
        )
    # ORT's quantizer logs every node at INFO and warns about things edgeport reports itself.
    logging.getLogger().setLevel(logging.WARNING)
    attempts = [("the plan's scheme", source, per_channel, False)]
    if per_channel:
        attempts.append(("per-tensor weights", source, False, False))
    # ONNX Runtime's own defaults on the unprocessed model: edgeport never does worse than the
    # quantizer it wraps called by hand (the plan's float layers stay excluded).
    attempts.append(("ONNX Runtime's default settings", fp32_path, False, True))
    # ``auto`` quantizes the same baseline for every candidate: once a fallback was needed, later
    # candidates start from it instead of failing (and calibrating) again.
    memo = work / f"quantizer-{_file_key(fp32_path)}-{plan.scheme}.json"
    worked, errors = json.loads(memo.read_text()) if memo.exists() else (None, [])
    start = next((i for i, attempt in enumerate(attempts) if attempt[0] == worked), 0)
    for what, model_path, channel, defaults in attempts[start:]:
        try:
            _quantize(model_path, out, plan, excluded, calibration, batch_size, progress, channel, defaults)
            gc.collect()  # ORT's quantizer leaves its model (all the weights) in reference cycles
            _check_quantized(out)
        except Exception as exc:  # ORT raises many types; the checker ValidationError; ORT's Fail
            errors.append(f"{what}: {describe_exception(exc, with_type=False)}")
            continue
        if errors:
            notes.append(f"{plan.scheme} with {what}, because {'; '.join(errors)}")
            memo.write_text(json.dumps([what, errors]))
        return notes
    raise ConversionError(
        f"onnxruntime quantization ({plan.scheme}) failed: {errors[0]}",
        hint="try --quantization int8-dynamic or fp16; every fallback failed too: " + "; ".join(errors[1:]),
    )


def _quantize(
    source: Path,
    out: Path,
    plan: PrecisionPlan,
    excluded: list[str],
    calibration: Dataset | None,
    batch_size: int,
    progress,
    per_channel: bool,
    defaults: bool,
) -> None:
    """Run ORT's quantize_static (QDQ) or quantize_dynamic once; ``defaults``: ORT's own
    settings (only the excluded nodes kept), else the plan's details. Raises what ORT raises."""
    from onnxruntime.quantization import quantize_dynamic, quantize_static

    details = plan.details
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if plan.scheme in CALIBRATED_SCHEMES:
            assert calibration is not None
            reader = DatasetReader(calibration, batch_size, progress)
            # A big model (external data): the calibration model is saved with external data too
            # (over 2 GB nothing else saves), and the calibrator drops its copy once it is saved.
            big = _has_external_data(source)
            if defaults:
                strided = {"CalibStridedMinMax": 1} if calibration.ragged else None
                with _calibrator_without_model():
                    quantize_static(
                        str(source), str(out), reader, nodes_to_exclude=excluded, extra_options=strided,
                        use_external_data_format=big,
                    )  # fmt: skip
                return
            with _calibrator_without_model():
                _static_with_details(source, out, reader, details, excluded, per_channel, big)
        elif defaults:
            with _without_weight_copies():
                quantize_dynamic(str(source), str(out), nodes_to_exclude=excluded)
        else:
            with _without_weight_copies():
                quantize_dynamic(
                    str(source),
                    str(out),
                    weight_type=_quant_type(details["weight_type"]),
                    per_channel=per_channel,
                    reduce_range=details["reduce_range"],
                    nodes_to_exclude=excluded,
                )


def _static_with_details(
    source: Path, out: Path, reader: DatasetReader, details: dict, excluded: list[str], per_channel: bool, big: bool
) -> None:
    """quantize_static (QDQ) with the plan's details; ``big``: save with external data."""
    from onnxruntime.quantization import QuantFormat, quantize_static

    calibration = reader.dataset
    quantize_static(
        str(source),
        str(out),
        reader,
        use_external_data_format=big,
        quant_format=QuantFormat.QDQ,
        activation_type=_quant_type(details["activation_type"]),
        weight_type=_quant_type(details["weight_type"]),
        per_channel=per_channel,
        reduce_range=details.get("reduce_range", False),
        nodes_to_exclude=excluded,
        calibrate_method=_calibration_method(details),
        extra_options={
            # Ragged data (sentences at their own length): collect one batch at a
            # time, since the histogram calibrators cannot stack shapes that differ.
            "CalibStridedMinMax": 1 if calibration.ragged else None,
            "CalibPercentile": float(details.get("percentile", 99.999)),
            # Keep ReLU/Clip nodes when some layers stay float: ORT's optimizer
            # mis-ran a float conv fed by a quantized conv whose Clip the quantizer
            # had removed (EfficientNet-Lite0: 0.92 -> 0.62 top-1 agreement).
            "QDQKeepRemovableActivations": bool(excluded),
            "WeightSymmetric": details.get("weight_symmetric", True),
            "ActivationSymmetric": details.get("activation_symmetric", False),
            # 16-bit Q/DQ is standard only from opset 21; the com.microsoft
            # Q/DQ ops carry it at any opset on ORT.
            "UseQDQContribOps": details.get("activation_type") == "int16",
        },
    )


@contextlib.contextmanager
def _calibrator_without_model() -> Iterator[None]:
    """ORT's calibrator keeps the model it loaded (all the weights, beside the quantizer's own copy)
    and its calibration session (the weights again) until quantize_static ends, though it reads the
    model only to write the augmented one and runs the session only while calibrating: the model is
    dropped before the session is made, the session when the quantizer is made (after the ranges
    are computed). ORT versions without these names are left as they are."""
    from onnxruntime.quantization import calibrate

    # The module, not the function ``onnxruntime.quantization.quantize`` that the package exports.
    ort_quantize = importlib.import_module("onnxruntime.quantization.quantize")
    base = calibrate.CalibraterBase
    make_session = base.__dict__.get("create_inference_session")
    quantizers = {name: getattr(ort_quantize, name, None) for name in ("QDQQuantizer", "ONNXQuantizer")}
    if make_session is None or None in quantizers.values():
        yield
        return
    calibrators = []

    def create_inference_session(self):
        if isinstance(getattr(self, "model", None), onnx.ModelProto):
            self.model = onnx.ModelProto()  # already saved as the augmented model
            gc.collect()
        calibrators.append(self)
        return make_session(self)

    def releasing(quantizer):
        def make(*args, **kwargs):
            for calibrator in calibrators:  # calibration is over: its ranges are computed
                calibrator.infer_session = None
            calibrators.clear()
            gc.collect()
            return quantizer(*args, **kwargs)

        return make

    base.create_inference_session = create_inference_session
    for name, quantizer in quantizers.items():
        setattr(ort_quantize, name, releasing(quantizer))
    try:
        yield
    finally:
        base.create_inference_session = make_session
        for name, quantizer in quantizers.items():
            setattr(ort_quantize, name, quantizer)


def _shapes_only(model: onnx.ModelProto) -> onnx.ModelProto:
    """``model`` itself with the value infos of shape inference run on its graph alone (its large
    initializers as data-less stubs): ORT's ``save_and_reload_model_with_shape_infer`` without
    the copies of the weights (ORT replaces its model with the result, so no caller sees the change)."""
    from onnx import helper

    stubs = []
    for tensor in model.graph.initializer:
        if tensor.ByteSize() < 4096:
            stubs.append(tensor)
            continue
        stubs.append(onnx.TensorProto(name=tensor.name, data_type=tensor.data_type, dims=tensor.dims))
    graph = model.graph
    light = helper.make_model(
        helper.make_graph(graph.node, graph.name, graph.input, graph.output, stubs, value_info=graph.value_info),
        opset_imports=model.opset_import,
        ir_version=model.ir_version,
        functions=model.functions,
    )
    inferred = onnx.shape_inference.infer_shapes(light)
    del model.graph.value_info[:]
    model.graph.value_info.extend(inferred.graph.value_info)
    return model


@contextlib.contextmanager
def _without_weight_copies() -> Iterator[None]:
    """ORT's dynamic quantizer refreshes its value infos by deep-copying the whole model, saving it
    and loading it again (onnx_quantizer.py, ``save_and_reload_model_with_shape_infer``): three
    copies of the weights at once (4.4x the weights at peak on a 1 GiB model). Only the value infos
    are read from it, so it gets them from the graph alone. ORT versions without that call are
    left as they are."""
    from onnxruntime.quantization import onnx_quantizer

    real = getattr(onnx_quantizer, "save_and_reload_model_with_shape_infer", None)
    if real is None:
        yield
        return
    onnx_quantizer.save_and_reload_model_with_shape_infer = _shapes_only
    try:
        yield
    finally:
        onnx_quantizer.save_and_reload_model_with_shape_infer = real


def _check_quantized(path: Path) -> None:
    """The quantized file must pass onnx.checker and load in ONNX Runtime (raises otherwise)."""
    from edgeport.runtime.ort import OrtRunner

    try:
        onnx.checker.check_model(str(path))
    except onnx.checker.ValidationError as exc:
        raise ValueError(f"the quantized model fails onnx.checker: {describe_exception(exc, with_type=False)}") from exc
    OrtRunner(path)
