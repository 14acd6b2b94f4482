"""TFLite custom operators (issue 20): a registered op kept as an ONNX custom-domain node becomes a
real TFLite custom op (``TFLiteCustom``), int8 around it with its ranges recalibrated by its
reference, and the file is emulated here (LiteRT + the op's Python reference) since LiteRT's
Python API cannot register kernels. Real conversions (onnx2tf + TFLite converter), a CNN trained
for a few seconds on Fashion-MNIST and measured on the 1,000 bundled test images."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper

from edgeport.cli.main import main
from edgeport.core.errors import ConversionError
from edgeport.core.plan import uniform_plan
from edgeport.data import load_dataset, parse_preprocess
from edgeport.formats.tflite.custom_emulation import CustomOpEmulationRunner
from edgeport.formats.tflite.custom_ops import custom_op_emulation
from edgeport.formats.tflite.export import export_tflite
from edgeport.formats.tflite.op_check import check_tflite
from edgeport.formats.tflite.ranges import unpack_model
from edgeport.frontends.onnx import graph_input_specs
from edgeport.ops import find_torch_op, load_custom_ops, unregister_op
from edgeport.profiles import resolve_profile
from edgeport.runtime.litert import LiteRTRunner
from tests.conftest import EXAMPLES

OPS = Path(__file__).with_name("tflite_custom_ops.py")
DATA = Path("/usr/share/datasets/fashion-mnist")


def _idx(name: str) -> np.ndarray:
    data = gzip.open(DATA / name).read()
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(data[3])]
    return np.frombuffer(data, np.uint8, offset=4 + 4 * len(dims)).reshape(dims)


def _rms(x: torch.Tensor) -> torch.Tensor:
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6)


def _train() -> list[np.ndarray]:
    """Conv(1->8, 3x3, stride 2) -> ReLU -> rms norm (last axis) -> Gemm(1352 -> 10), one epoch."""
    torch.manual_seed(0)
    conv, head = torch.nn.Conv2d(1, 8, 3, stride=2), torch.nn.Linear(8 * 13 * 13, 10)
    x = torch.from_numpy(_idx("train-images-idx3-ubyte.gz")[:, None].astype(np.float32) / 255)
    y = torch.from_numpy(_idx("train-labels-idx1-ubyte.gz").astype(np.int64))
    optimizer = torch.optim.Adam([*conv.parameters(), *head.parameters()], 3e-3)
    for start in range(0, len(x), 256):
        logits = head(_rms(torch.relu(conv(x[start : start + 256]))).flatten(1))
        loss = torch.nn.functional.cross_entropy(logits, y[start : start + 256])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return [p.detach().numpy() for p in (conv.weight, conv.bias, head.weight, head.bias)]


def _onnx(weights: list[np.ndarray], op_type: str = "RmsNormNoWeight", second_input: bool = False) -> onnx.ModelProto:
    """The trained CNN with its rms norm as one ``tfltest`` node."""
    w, b, hw, hb = weights
    inits = [
        numpy_helper.from_array(w, "w"),
        numpy_helper.from_array(b, "b"),
        numpy_helper.from_array(hw.T.copy(), "hw"),
        numpy_helper.from_array(hb, "hb"),
        numpy_helper.from_array(np.array([0, -1], np.int64), "flat"),
    ]
    custom_inputs = ["r", "r"] if second_input else ["r"]
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv", strides=[2, 2]),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node(op_type, custom_inputs, ["n"], name="norm", domain="tfltest"),
        helper.make_node("Reshape", ["n", "flat"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", "hw", "hb"], ["logits"], name="head"),
    ]
    graph = helper.make_graph(
        nodes,
        "custom_cnn",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 28, 28])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 10])],
        inits,
    )
    opsets = [helper.make_opsetid("", 18), helper.make_opsetid("tfltest", 1)]
    return helper.make_model(graph, opset_imports=opsets, ir_version=10)


def _numpy_forward(weights: list[np.ndarray], x: np.ndarray) -> np.ndarray:
    """The fp32 reference: the same network in torch, the rms norm by the op's numpy reference."""
    # the op module's own reference, from the registry (importing the module would register it again)
    rms_norm_reference = find_torch_op("tfltest::rms_norm").reference
    w, b, hw, hb = (torch.from_numpy(a) for a in weights)
    with torch.no_grad():
        r = torch.relu(torch.nn.functional.conv2d(torch.from_numpy(x), w, b, stride=2)).numpy()
        n = torch.from_numpy(rms_norm_reference(r)).flatten(1)
        return (n @ hw.T + hb).numpy()


@pytest.fixture(scope="module")
def custom_cnn(tmp_path_factory):
    """The trained CNN as ONNX with a custom node, its op module loaded, data and references."""
    load_custom_ops(str(OPS))
    root = tmp_path_factory.mktemp("tflite_custom")
    weights = _train()
    path = root / "custom_cnn.onnx"
    onnx.save(_onnx(weights), str(path))
    specs = graph_input_specs(onnx.load(str(path)))
    calibration = load_dataset(str(EXAMPLES / "fashion_mnist_calib.npz"), specs, 128, parse_preprocess(None))
    test = load_dataset(str(EXAMPLES / "fashion_mnist_test_1k.npz"), specs, 1000, parse_preprocess(None))
    feeds = test.batch(0, 1000)
    yield {
        "root": root,
        "onnx": path,
        "weights": weights,
        "calibration": calibration,
        "feeds": feeds,
        "labels": test.labels,
        "reference": _numpy_forward(weights, feeds["x"]),
    }
    for name in ("tfltest::rms_norm", "tfltest::gate2", "tfltest::nolower"):
        unregister_op(name)  # later tests of the run see no custom ops


def _export(custom_cnn, scheme: str, name: str):
    model = onnx.load(str(custom_cnn["onnx"]))
    plan = uniform_plan(model, scheme, resolve_profile("arm64-neon")[0])
    calibration = custom_cnn["calibration"] if scheme == "int8" else None
    out = custom_cnn["root"] / f"{name}.tflite"
    return export_tflite(custom_cnn["onnx"], plan, out, custom_cnn["root"] / "work", calibration)


def _custom_codes(path: Path) -> list[str]:
    model = unpack_model(path.read_bytes())
    codes = [c.customCode.decode() for c in model.operatorCodes if c.customCode]
    used = [model.operatorCodes[op.opcodeIndex] for op in model.subgraphs[0].operators]
    return [c for c in codes for u in used if u.customCode and u.customCode.decode() == c]


def _emulate(export) -> CustomOpEmulationRunner:
    facts, spec = custom_op_emulation(export.custom_ops, export.path, export.runner_kwargs())
    assert facts[0]["tflite_custom_op"] == "RmsNormNoWeight" and "must register" in facts[0]["app_must_register"]
    assert spec.kind == "litert-custom-emulated" and "not run" in spec.kwargs["not_run"]
    return spec.open(1)


@pytest.mark.parametrize("scheme", ["none", "int8"])
def test_custom_op_is_in_the_file_and_emulation_matches_the_reference(custom_cnn, scheme):
    from ai_edge_litert.interpreter import Interpreter

    export = _export(custom_cnn, scheme, f"custom_{scheme}")
    assert _custom_codes(export.path) == ["RmsNormNoWeight"]  # one custom op, the node it stands for
    assert any("app must register" in n for n in export.notes)
    flagged = check_tflite(export.path, resolve_profile("arm64-neon")[0])["flagged"]
    assert [f["op"] for f in flagged if "must register" in f["why"]] == ["RmsNormNoWeight"]  # ops on the target
    interpreter = Interpreter(model_path=str(export.path))
    with pytest.raises(RuntimeError, match="unresolved custom op: RmsNormNoWeight"):
        interpreter.allocate_tensors()  # LiteRT in Python cannot run it: hence the emulation
    with pytest.raises(ConversionError) as info:
        LiteRTRunner(export.path)
    assert "custom op whose kernel the app registers" in info.value.hint

    runner = _emulate(export)
    (logits,) = runner.run(custom_cnn["feeds"])
    reference, labels = custom_cnn["reference"], custom_cnn["labels"]
    agreement = float(np.mean(logits.argmax(1) == reference.argmax(1)))
    accuracy = float(np.mean(logits.argmax(1) == labels))
    reference_accuracy = float(np.mean(reference.argmax(1) == labels))
    print(f"{scheme}: agreement {agreement:.3f}, accuracy {accuracy:.3f} (fp32 {reference_accuracy:.3f})")
    assert reference_accuracy > 0.75  # the CNN learnt something: a parity check on real predictions
    if scheme == "none":
        assert np.abs(logits - reference).max() < 1e-3 and agreement == 1.0
    else:
        (note,) = [n for n in export.notes if "recalibrated with their references" in n]
        assert int(re.search(r"(\d+) changed", note).group(1)) >= 1  # the ranges after the op were wrong
        assert set(export.applied.values()) == {"int8"}  # conv and gemm int8 around the float custom op
        assert agreement >= 0.97 and accuracy >= reference_accuracy - 0.02


def test_ops_tflite_cannot_lower_are_one_line_refusals(custom_cnn, tmp_path):
    plan_profile = resolve_profile("arm64-neon")[0]
    for op_type, two, message in (
        ("Gate2", True, "one float input and one output"),
        ("NoLower", False, "has no TFLite lowering"),
    ):
        path = tmp_path / f"{op_type}.onnx"
        onnx.save(_onnx(custom_cnn["weights"], op_type, two), str(path))
        plan = uniform_plan(onnx.load(str(path)), "none", plan_profile)
        with pytest.raises(ConversionError, match=message) as info:
            export_tflite(path, plan, tmp_path / f"{op_type}.tflite", tmp_path / "work", None)
        assert "\n" not in info.value.message and info.value.hint


# The examples (examples/custom_ops, the session fixture custom_op_models) through the pipeline.
EXAMPLE_OPS = str(EXAMPLES / "custom_ops" / "ops.py")


def _convert_example(path: Path, out: Path, quantization: str = "int8"):
    import edgeport

    return edgeport.convert(
        str(path), output_format="tflite", quantization=quantization, optimize_for="arm64-neon",
        output_dir=str(out), custom_ops=EXAMPLE_OPS, latency_runs=20,
        calibration_data=str(EXAMPLES / "fashion_mnist_calib.npz"),
        eval_data=str(EXAMPLES / "fashion_mnist_test_1k.npz"),
    )  # fmt: skip


def _input_types(path: Path, builtin: str) -> list[str]:
    """The element type of the first input of each ``builtin`` op of the .tflite."""
    from ai_edge_litert import schema_py_generated as schema

    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    types = {v: k for k, v in vars(schema.TensorType).items() if not k.startswith("_")}
    model = unpack_model(path.read_bytes())
    subgraph = model.subgraphs[0]
    return [
        types[subgraph.tensors[op.inputs[0]].type]
        for op in subgraph.operators
        if names[
            max(
                model.operatorCodes[op.opcodeIndex].builtinCode,
                model.operatorCodes[op.opcodeIndex].deprecatedBuiltinCode,
            )
        ]
        == builtin
    ]


def test_example_torch_model_to_int8_tflite_keeps_the_kernel_op_and_decomposes_the_other(custom_op_models, tmp_path):
    result = _convert_example(custom_op_models["pt2"], tmp_path / "bundle")
    report, fidelity = result.report, result.report["fidelity"]
    assert _custom_codes(result.artifact) == ["RmsNormNoWeight"]  # mylib::rms_norm: a TFLite custom op
    # mylib::fused_gated_gelu: standard ops (onnx2tf maps the tanh GELU to TFLite's GELU), in int8
    assert _input_types(result.artifact, "GELU") == ["INT8"] and _input_types(result.artifact, "LOGISTIC") == ["INT8"]
    assert fidelity["emulated"].startswith("LiteRT ran every builtin op")
    assert fidelity["reference_top1"] > 70 and fidelity["reference_top1"] - fidelity["artifact_top1"] <= 1.0
    assert fidelity["top1_agreement"] >= 97
    assert report["latency"]["not_run"] and "RmsNormNoWeight" in report["latency"]["measured"]
    flagged = [f["op"] for f in report["op_check"]["flagged"] if "must register" in f["why"]]
    assert flagged == ["RmsNormNoWeight"]
    manifest = json.loads((result.bundle_dir / "manifest.json").read_text())
    (fact,) = manifest["format_facts"]["custom_ops"]
    assert fact["tflite_custom_op"] == "RmsNormNoWeight" and "must register" in fact["app_must_register"]
    # The top-level entry says what this .tflite needs (not the ONNX node's kernel or library).
    assert manifest["custom_ops"] == {"mylib::fused_gated_gelu": None, "mylib::rms_norm": fact["app_must_register"]}
    # edgeport verify cannot re-run it (LiteRT's Python API registers no kernels): one line, exit 2.
    ops_file = str(EXAMPLES / "custom_ops" / "ops.py")
    verified = CliRunner().invoke(main, ["verify", str(result.bundle_dir), "--custom_ops", ops_file])
    assert verified.exit_code == 2 and "LiteRT's Python API cannot register kernels" in verified.output
    assert "Traceback" not in verified.output
    assert set(manifest["format_facts"]["applied"].values()) == {"int8"}  # the three Gemms


def test_auto_search_with_a_tflite_custom_op_ranks_untimed_through_the_emulation(custom_op_models, tmp_path):
    result = _convert_example(custom_op_models["pt2"], tmp_path / "bundle", quantization="auto")
    report, fidelity = result.report, result.report["fidelity"]
    assert result.passed and report["target"]["scheme"] == "int8" and _custom_codes(result.artifact)
    assert fidelity["emulated"] and report["latency"]["not_run"]
    assert fidelity["reference_top1"] - fidelity["artifact_top1"] <= 1.0  # the default budget


def test_example_onnx_model_with_a_decomposable_node_to_int8_tflite_runs_in_litert(custom_op_models, tmp_path):
    result = _convert_example(custom_op_models["gelu_node"], tmp_path / "bundle")
    fidelity = result.report["fidelity"]
    assert not _custom_codes(result.artifact)
    assert _input_types(result.artifact, "GELU") == ["INT8"] and _input_types(result.artifact, "LOGISTIC") == ["INT8"]
    assert "emulated" not in fidelity and result.report["latency"]["speedup"] > 0  # a real LiteRT run
    assert fidelity["top1_agreement"] >= 97 and fidelity["reference_top1"] - fidelity["artifact_top1"] <= 1.0
    assert any("CastLike node(s) written as Cast" in n for n in result.report["notes"])


def test_castlike_from_an_onnxscript_decomposition_becomes_cast():
    import onnxruntime as ort

    from edgeport.formats.tflite.onnx2tf_rewrites import castlike_to_cast

    nodes = [
        helper.make_node("Constant", [], ["c"], value=numpy_helper.from_array(np.array(0.5, np.float64))),
        helper.make_node("CastLike", ["c", "x"], ["h"]),
        helper.make_node("Mul", ["x", "h"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 3])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=10)
    rewritten, count = castlike_to_cast(model)
    assert count == 1 and [n.op_type for n in rewritten.graph.node] == ["Constant", "Cast", "Mul"]
    x = np.array([[1.0, -2.0, 4.0]], np.float32)
    run = [ort.InferenceSession(m.SerializeToString()).run(None, {"x": x})[0] for m in (model, rewritten)]
    assert np.array_equal(run[0], run[1]) and np.array_equal(run[1], x * 0.5)
