"""Emulated accuracy of a Core ML package on hosts that cannot run Core ML (everything but macOS).

Core ML predictions are macOS-only, so on Linux a package's accuracy is *emulated*, never
measured: the fp32 ONNX model (the parity-checked graph every analysis uses, with BatchNorm
already folded into the convs as in the package) runs in ONNX Runtime with

- each planned layer's weight replaced by the weight **read back from the saved package** and
  decompressed by coremltools (``materialized_val_inference`` of its ``constexpr_*`` op: the
  look-up table, or the int8/int4 values times their scales), so the emulation uses exactly the
  compressed values Core ML will use, not a second compression made the same way;
- when the package computes in fp16: every other float constant rounded to fp16 (Core ML stores
  it so), and every float tensor between ops rounded to fp16 by a Cast pair, except the outputs
  of the layers the package keeps in fp32;
- for inputs the package takes as Core ML images: the model input turned back into 8-bit pixels
  (``round((x - bias) / scale)`` clipped to 0..255) and through the image's ``scale * pixel +
  bias`` again, so data that are not whole pixels lose what an image input would lose.

What it does not emulate: the order and precision of accumulation inside Core ML's kernels
(GPU/Neural Engine), and fused activations. The figures are labelled "emulated" in the report.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from edgeport.runtime.ort import OrtRunner

EMULATION_HOW = (
    "emulated: the weights decompressed by coremltools from the saved .mlpackage, run in ONNX Runtime on "
    "the parity-checked fp32 ONNX graph{fp16}; Core ML itself runs only on macOS, so this is not the "
    "device's result (edgeport verify BUNDLE --runner ssh://user@mac runs the real package)"
)
FP16_TEXT = " with every activation and constant rounded to fp16 (the package's fp16 compute)"
IMAGE_TEXT = ", the image inputs rounded to 8-bit pixels (the package's image inputs)"


def decompressed_weights(package: Path) -> dict[str, np.ndarray]:
    """Return ``{weight name: dense float32 array}`` for the weight of every weighted op in a saved
    package: plain constants as stored (fp16/fp32), ``constexpr_*`` ops decompressed by coremltools."""
    from coremltools.converters.mil.frontend.milproto.load import load as load_milproto

    from edgeport.formats.coreml.match import WEIGHT_INPUTS, walk_ops
    from edgeport.formats.coreml.tools import import_coremltools, quiet

    ct = import_coremltools()
    with quiet():
        model = ct.models.MLModel(str(package), skip_model_load=True)
        spec = model.get_spec()
        program = load_milproto(
            spec, specification_version=spec.specificationVersion, file_weights_dir=model.weights_dir
        )
    weights: dict[str, np.ndarray] = {}
    for function in program.functions.values():
        for op in walk_ops(function):
            for input_name in WEIGHT_INPUTS.get(op.op_type, ()):
                var = op.inputs.get(input_name)
                producer = getattr(var, "op", None)
                if producer is None:
                    continue
                if producer.op_type == "const":
                    value = var.val
                elif producer.op_type.startswith("constexpr_"):
                    value = producer.materialized_val_inference()
                else:
                    continue
                if value is not None and np.ndim(value) >= 2:
                    weights[var.name] = np.asarray(value, dtype=np.float32)
    return weights


def _as_image_pixels(model: onnx.ModelProto, images: dict[str, dict[str, Any]]) -> None:
    """Route each image input through 8-bit pixels and back (``scale * pixel + bias``), as a
    Core ML image input holds it. ``images``: ``{input: ImageInput facts}``."""
    graph = model.graph
    nodes: list[onnx.NodeProto] = []
    renamed: dict[str, str] = {}
    for value in graph.input:
        image = images.get(value.name)
        if image is None:
            continue
        view = [1, -1, 1, 1] if image["channel_first"] else [1, 1, 1, -1]
        name = value.name
        scale, bias = f"{name}__image_scale", f"{name}__image_bias"
        graph.initializer.extend(
            [
                numpy_helper.from_array(np.asarray(image["scale"], np.float32), scale),
                numpy_helper.from_array(np.asarray(image["bias"], np.float32).reshape(view), bias),
                numpy_helper.from_array(np.asarray(0.0, np.float32), f"{name}__pixel_min"),
                numpy_helper.from_array(np.asarray(255.0, np.float32), f"{name}__pixel_max"),
            ]
        )
        steps = [
            ("Sub", [name, bias]),
            ("Div", [f"{name}__image_0", scale]),
            ("Round", [f"{name}__image_1"]),
            ("Clip", [f"{name}__image_2", f"{name}__pixel_min", f"{name}__pixel_max"]),
            ("Mul", [f"{name}__image_3", scale]),
            ("Add", [f"{name}__image_4", bias]),
        ]
        for i, (op, inputs) in enumerate(steps):
            nodes.append(helper.make_node(op, inputs, [f"{name}__image_{i}"], name=f"{name}__image_op_{i}"))
        renamed[name] = f"{name}__image_{len(steps) - 1}"
    for node in graph.node:
        for i, input_name in enumerate(node.input):
            if input_name in renamed:
                node.input[i] = renamed[input_name]
    original = list(graph.node)  # the pixel ops go first (ONNX wants a topological order)
    del graph.node[:]
    graph.node.extend(nodes + original)


def _float_value_names(model: onnx.ModelProto) -> set[str]:
    """Names of float32 tensors in the graph (inputs and intermediates), from shape inference."""
    inferred = onnx.shape_inference.infer_shapes(model)
    names = set()
    for value in list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output):
        if value.type.tensor_type.elem_type == TensorProto.FLOAT:
            names.add(value.name)
    return names


def _round_tensors_to_fp16(model: onnx.ModelProto, skip_nodes: set[str]) -> int:
    """Insert Cast(float16) -> Cast(float) after every float graph input and node output (except the
    outputs of ``skip_nodes``), so that each activation is rounded as fp16 storage rounds it.
    Returns the number of tensors rounded."""
    floats = _float_value_names(model)
    graph = model.graph
    initializers = {i.name for i in graph.initializer}
    rounded_inputs: dict[str, str] = {}
    nodes: list[onnx.NodeProto] = []
    count = 0
    for value in graph.input:
        if value.name in floats and value.name not in initializers:
            fp16, back = f"{value.name}__fp16", f"{value.name}__fp16_rounded"
            nodes.append(helper.make_node("Cast", [value.name], [fp16], to=TensorProto.FLOAT16))
            nodes.append(helper.make_node("Cast", [fp16], [back], to=TensorProto.FLOAT))
            rounded_inputs[value.name] = back
            count += 1
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name in rounded_inputs:
                node.input[i] = rounded_inputs[name]
        casts = []
        if node.name not in skip_nodes and node.op_type not in ("Cast", "Shape", "Constant"):
            for i, name in enumerate(node.output):
                if name not in floats or not name:
                    continue
                raw = f"{name}__fp32_raw"
                node.output[i] = raw
                casts.append(helper.make_node("Cast", [raw], [f"{name}__fp16"], to=TensorProto.FLOAT16))
                casts.append(helper.make_node("Cast", [f"{name}__fp16"], [name], to=TensorProto.FLOAT))
                count += 1
        nodes.append(node)
        nodes.extend(casts)
    del graph.node[:]
    graph.node.extend(nodes)
    return count


def build_emulation(
    baseline: Path,
    package: Path,
    weights_facts: dict[str, dict[str, Any]],
    fp16: bool,
    fp32_nodes: set[str],
    out: Path,
    images: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Write the emulation ONNX model of ``package`` to ``out`` (see the module docstring).

    ``weights_facts`` is the export's ``{onnx node: {initializer, const, transposed, ...}}``;
    ``images`` the ImageInput facts of inputs the package takes as images.
    Returns ``{"replaced": n weights, "rounded_tensors": n, "how": text}``. Raises ValueError when
    a matched weight is missing from the package (the emulation would not be the package).
    """
    from edgeport.formats.coreml.match import const_of

    model = onnx.load(str(baseline))
    weights = decompressed_weights(package)
    by_const: dict[str, str] = {}
    for name in weights:
        const = const_of(name, {f["const"] for f in weights_facts.values()})
        if const is not None:
            by_const[const] = name
    initializers = {i.name: i for i in model.graph.initializer}
    replaced = set()
    for fact in weights_facts.values():
        source = by_const.get(fact["const"])
        if source is None:
            raise ValueError(f"weight {fact['const']} of {fact['layer']} is not in {package.name}")
        value = weights[source].T if fact["transposed"] else weights[source]
        target = initializers[fact["initializer"]]
        original = numpy_helper.to_array(target)
        target.CopyFrom(numpy_helper.from_array(value.reshape(original.shape).astype(original.dtype), target.name))
        replaced.add(target.name)
    if images:
        _as_image_pixels(model, images)
    rounded = 0
    if fp16:
        for init in model.graph.initializer:
            if init.name not in replaced and init.data_type == TensorProto.FLOAT:
                value = numpy_helper.to_array(init)
                init.CopyFrom(numpy_helper.from_array(value.astype(np.float16).astype(np.float32), init.name))
        rounded = _round_tensors_to_fp16(model, fp32_nodes)
    onnx.save(model, str(out))
    return {
        "replaced": len(replaced),
        "rounded_tensors": rounded,
        "how": EMULATION_HOW.format(fp16=(FP16_TEXT if fp16 else "") + (IMAGE_TEXT if images else "")),
    }


class EmulatedCoreMLRunner(OrtRunner):
    """The emulation ONNX model of a Core ML package, in ONNX Runtime (see :func:`emulation_model`)."""

    kind = "coreml-emulated"

    def __init__(self, path: str | Path, threads: int = 1, package: str = "", how: str = "", **_: Any) -> None:
        super().__init__(path, threads)
        self.package = package
        self.how = how

    def describe(self) -> dict[str, Any]:
        """Says that this is an emulation, and how it was made."""
        described = super().describe()
        described.update({"runtime": "coreml (emulated in onnxruntime)", "emulated": self.how, "package": self.package})
        return described
