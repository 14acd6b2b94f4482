"""Models with custom ops converted end to end to ONNX: a torch model with both example ops and
two ONNX models with custom-domain nodes, on the real Fashion-MNIST test images; an unregistered
custom op still exits 4, with a hint that names the registry."""

from __future__ import annotations

import json

import onnx
import pytest
from click.testing import CliRunner

from edgeport import convert
from edgeport.cli.main import main
from edgeport.verify.gate import DEFAULT_BUDGET
from tests.ops.conftest import EXAMPLES

OPS = str(EXAMPLES / "custom_ops" / "ops.py")
DATA = {
    "calibration_data": str(EXAMPLES / "fashion_mnist_calib.npz"),
    "eval_data": str(EXAMPLES / "fashion_mnist_test_1k.npz"),
}


def _convert(path, out, quantization="int8"):
    return convert(
        str(path), output_format="onnx", quantization=quantization, optimize_for="cpu", output_dir=str(out),
        latency_runs=20, custom_ops=OPS, **DATA,
    )  # fmt: skip


def _producers(model: onnx.ModelProto) -> dict[str, onnx.NodeProto]:
    return {out: node for node in model.graph.node for out in node.output}


def _fed_by_dequantize(model: onnx.ModelProto, op_type: str) -> int:
    producers = _producers(model)
    nodes = [n for n in model.graph.node if n.op_type == op_type]
    return sum(all(producers.get(i) is not None and producers[i].op_type == "DequantizeLinear" for i in n.input)
               for n in nodes)  # fmt: skip


@pytest.fixture(scope="module")
def torch_int8(custom_op_models, tmp_path_factory):
    return _convert(custom_op_models["pt2"], tmp_path_factory.mktemp("pt2") / "bundle")


def test_torch_model_int8_quantizes_the_decomposed_op_and_keeps_the_kernel_op_float(torch_int8, custom_op_models):
    report = torch_int8.report
    fidelity = report["fidelity"]
    assert torch_int8.passed
    # The ONNX fp32 baseline is the torch model (same 1,000 images), and int8 stays in the budget.
    assert fidelity["reference_top1"] == pytest.approx(custom_op_models["torch_top1"], abs=0.2)
    assert fidelity["reference_top1"] > 70
    assert fidelity["reference_top1"] - fidelity["artifact_top1"] <= DEFAULT_BUDGET
    artifact = onnx.load(str(torch_int8.artifact))
    # The decomposed fused_gated_gelu is in standard ops, quantized: its Tanh and Sigmoid read int8 tensors.
    assert _fed_by_dequantize(artifact, "Tanh") == 1
    assert _fed_by_dequantize(artifact, "Sigmoid") == 1
    assert not any(n.op_type == "FusedGatedGelu" for n in artifact.graph.node)
    # rms_norm stays one mylib node, float (a float island), with what the app must register.
    kept = [n for n in artifact.graph.node if n.domain == "mylib"]
    assert [n.op_type for n in kept] == ["RmsNormNoWeight"]
    section = report["custom_ops"]
    assert section["float_islands"] == [kept[0].name]
    parity = {name: op["parity"] for name, op in section["ops"].items()}
    assert parity["mylib::fused_gated_gelu"]["measured_on"] == "ONNX Runtime, the decomposition alone"
    assert parity["mylib::rms_norm"]["measured_on"] == "ONNX Runtime, the Python kernel (PyOp)"
    for figures in parity.values():
        assert figures["samples"] >= 1
        assert figures["max_abs_diff"] < 1e-5 * max(1.0, figures["reference_max_abs"])
    manifest = json.loads((torch_int8.bundle_dir / "manifest.json").read_text())
    assert manifest["custom_ops"]["mylib::fused_gated_gelu"] is None
    assert "the app must register a kernel for mylib::RmsNormNoWeight" in manifest["custom_ops"]["mylib::rms_norm"]
    flagged = {f["op"] for f in report["op_check"]["flagged"]}
    assert "mylib::RmsNormNoWeight" in flagged
    assert any(n.startswith("latency includes the Python kernel of mylib::rms_norm") for n in report["notes"])
    html = (torch_int8.bundle_dir / "report.html").read_text()
    assert "<h2>Custom ops</h2>" in html and "float island" in html and "the decomposition alone" in html


def test_onnx_model_with_a_decomposable_node_is_inlined_and_verified(custom_op_models, tmp_path):
    result = _convert(custom_op_models["gelu_node"], tmp_path / "bundle")
    fidelity = result.report["fidelity"]
    assert result.passed and fidelity["reference_top1"] - fidelity["artifact_top1"] <= DEFAULT_BUDGET
    artifact = onnx.load(str(result.artifact))
    assert {n.domain for n in artifact.graph.node} <= {"", "ai.onnx"}
    assert _fed_by_dequantize(artifact, "Tanh") == 1
    parity = result.report["custom_ops"]["ops"]["mylib::fused_gated_gelu"]["parity"]
    assert parity["measured_on"] == "ONNX Runtime, the inlined decomposition in the model"
    assert parity["max_abs_diff"] < 1e-5 * max(1.0, parity["reference_max_abs"])
    assert any("inlined from their registered decompositions" in n for n in result.report["notes"])


def test_onnx_model_with_a_python_kernel_node_is_kept_and_verified(custom_op_models, tmp_path):
    result = _convert(custom_op_models["rmsnorm_node"], tmp_path / "bundle", quantization="fp16")
    fidelity = result.report["fidelity"]
    assert result.passed and abs(fidelity["reference_top1"] - fidelity["artifact_top1"]) <= DEFAULT_BUDGET
    artifact = onnx.load(str(result.artifact))
    assert [n.op_type for n in artifact.graph.node if n.domain == "mylib"] == ["RmsNormNoWeight"]
    parity = result.report["custom_ops"]["ops"]["mylib::rms_norm"]["parity"]
    assert parity["measured_on"] == "ONNX Runtime, the Python kernel (PyOp)"
    assert 0 < parity["max_abs_diff"] < 1e-5 * max(1.0, parity["reference_max_abs"])  # float32 kernel vs float64


def test_an_unregistered_custom_op_exits_4_naming_the_registry(custom_op_models, tmp_path):
    model = onnx.load(str(custom_op_models["rmsnorm_node"]))
    for node in model.graph.node:
        if node.domain == "mylib":
            node.domain, node.op_type = "otherlib", "NotRegistered"
    model.opset_import.append(onnx.helper.make_opsetid("otherlib", 1))
    path = tmp_path / "unregistered.onnx"
    onnx.save(model, str(path))
    result = CliRunner().invoke(main, ["convert", "--input_model", str(path), "--output_dir", str(tmp_path / "b")])
    assert result.exit_code == 4
    assert "'NotRegistered' of domain 'otherlib'" in result.stderr
    assert "register it with edgeport.ops.register_op and pass --custom_ops FILE" in result.stderr


def test_verify_reruns_a_bundle_with_a_kept_custom_op(torch_int8):
    bundle = str(torch_int8.bundle_dir)
    refused = CliRunner().invoke(main, ["verify", bundle, "--runs", "5"])
    assert refused.exit_code == 2
    assert "keeps custom ops that ONNX Runtime needs an implementation of: mylib::rms_norm" in refused.stderr
    rerun = CliRunner().invoke(main, ["verify", bundle, "--runs", "5", "--custom_ops", OPS])
    assert rerun.exit_code == 0, rerun.stderr
    assert "files match the manifest" in rerun.stdout
    reports = sorted(torch_int8.bundle_dir.glob("report.verify-*.json"))
    assert len(reports) == 1
    fidelity = json.loads(reports[0].read_text())["verification"]["fidelity"]
    assert fidelity["samples"] == 8 and fidelity["top1_agreement"] >= 75  # the 8 reference inputs, run again
