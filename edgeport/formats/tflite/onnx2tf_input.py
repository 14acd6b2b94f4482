"""The conversion child's input: a working folder holding a copy of the ONNX file (onnx2tf
rewrites its input in place; the original is never written), its external data, a placeholder
for the calibration sample images onnx2tf would otherwise download, and the copy rewritten
where onnx2tf is known to convert badly (:mod:`edgeport.formats.tflite.onnx2tf_rewrites`),
each rewrite checked against the original in ONNX Runtime and noted."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np
import onnx

from edgeport.formats.tflite.onnx2tf_gelu import canonical_gelu
from edgeport.formats.tflite.onnx2tf_rewrites import fix_input_dims, spatial_dims_to_fix
from edgeport.formats.tflite.onnx2tf_unroll import RECURRENT_OPS, unroll_recurrent
from edgeport.formats.tflite.shapes import onnx_shape

PLACEHOLDER_NAME = "calibration_image_sample_data_20x128x128x3_float32.npy"


def external_files(model: onnx.ModelProto) -> set[str]:
    """Return the external-data file names the model's tensors refer to."""
    files = set()
    for tensor in model.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location":
                files.add(entry.value)
    return files


def prepare_folder(onnx_path: Path, work: Path, external: set[str]) -> tuple[Path, Path]:
    """Make a new folder under ``work`` with a copy of ``onnx_path`` and its ``external`` data
    files, and onnx2tf's calibration placeholder; return ``(folder, the ONNX copy)``."""
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
    return folder, copy


def fix_spatial_dims(
    model: onnx.ModelProto, copy: Path, shapes: dict[str, list[int]], batch_size: int | None, notes: list[str]
) -> onnx.ModelProto:
    """Fix the symbolic height/width of image-like inputs to ``shapes`` in onnx2tf's input
    ``copy`` (onnx2tf converts them into files that fail to run); return the model as fixed.

    A symbolic batch of those inputs is fixed to ``batch_size`` in the graph too: left to
    onnx2tf's own batch option, the NHWC input of a tf2onnx export was taken for NCHW
    (``Depth of input (64) is not a multiple of input depth of filter (3)``)."""
    fixed = spatial_dims_to_fix(model, shapes)
    if not fixed:
        return model
    if batch_size:
        fixed = {name: [batch_size if d < 0 else d for d in shape] for name, shape in fixed.items()}
    from edgeport.frontends.normalize import check_and_simplify

    before = {v.name: onnx_shape(v) for v in model.graph.input}
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


def rewrite_for_onnx2tf(model: onnx.ModelProto, copy: Path, notes: list[str]) -> dict[str, tuple[str, str]]:
    """Rewrite the onnx2tf input ``copy`` where onnx2tf is known to convert badly.

    See :mod:`edgeport.formats.tflite.onnx2tf_rewrites`: Erf-based GELU becomes the form onnx2tf
    maps to TFLite's ``GELU`` builtin (else ``Erf`` needs Flex ops), and LSTM/GRU/RNN nodes
    are unrolled per time step (onnx2tf's own recurrent conversion fails, and its ``WHILE``
    loop crashed TFLite's int8 calibrator). The rewritten model is used only when ONNX
    Runtime gives the same outputs as the original on seeded inputs; each rewrite adds a
    note. Returns ``{node: (op, why)}`` for recurrent nodes left to onnx2tf (empty if none).
    """
    rewritten, gelus = canonical_gelu(model)
    recurrent = {n.name or n.output[0]: n.op_type for n in model.graph.node if n.op_type in RECURRENT_OPS}
    result = unroll_recurrent(rewritten)
    left = {name: (recurrent.get(name, "recurrent"), why) for name, why in result.skipped.items()}
    if gelus or result.unrolled:
        error = max_output_difference(model, result.model)
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


def max_output_difference(a: onnx.ModelProto, b: onnx.ModelProto) -> float | None:
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
