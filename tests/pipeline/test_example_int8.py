"""The bundled Fashion-MNIST example converted to int8 ONNX: accuracy, artifact, bundle."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort

from edgeport.core.hashing import sha256_file
from edgeport.reports.json import REPORT_VERSION, read_report
from tests.conftest import EXAMPLES


def test_int8_accuracy_within_half_a_point(example_int8):
    fidelity = example_int8.report["fidelity"]
    assert fidelity["samples"] == 1000
    # The fp32 model is a real classifier on the real test subset, not a toy.
    assert fidelity["reference_top1"] > 85.0
    assert fidelity["reference_top1"] - fidelity["artifact_top1"] <= 0.5
    assert fidelity["top1_agreement"] >= 98.0
    assert example_int8.report["gate"]["passed"]


def test_int8_artifact_is_quantized_and_runs_in_onnxruntime(example_int8):
    artifact = example_int8.artifact
    model = onnx.load(str(artifact))
    onnx.checker.check_model(model)
    ops = {n.op_type for n in model.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    # uint8 activations (the profile's U8S8 scheme): the first QuantizeLinear's zero point is uint8.
    zero_points = {i.name: i for i in model.graph.initializer}
    first_q = next(n for n in model.graph.node if n.op_type == "QuantizeLinear")
    assert zero_points[first_q.input[2]].data_type == onnx.TensorProto.UINT8
    data = np.load(EXAMPLES / "fashion_mnist_test_1k.npz")
    x = data["x"][:64, None].astype(np.float32) / 255.0
    session = ort.InferenceSession(str(artifact), providers=["CPUExecutionProvider"])
    predictions = session.run(None, {"x": x})[0].argmax(1)
    assert np.mean(predictions == data["y"][:64]) > 0.8
    assert artifact.stat().st_size < 0.35 * (example_int8.bundle_dir / "baseline_fp32.onnx").stat().st_size


def test_bundle_manifest_hashes_every_file(example_int8):
    bundle = example_int8.bundle_dir
    manifest = json.loads((bundle / "manifest.json").read_text())
    expected = {
        "model.onnx",
        "baseline_fp32.onnx",
        "reference.npz",
        "precision_plan.json",
        "report.json",
        "report.html",
    }
    assert expected <= set(manifest["files"])
    for name, entry in manifest["files"].items():
        assert sha256_file(bundle / name) == entry["sha256"]
    assert manifest["libraries"]["onnxruntime"] == ort.__version__
    assert manifest["status"] == "passed"
    assert manifest["profile"]["int8"]["activation_type"] == "uint8"
    assert not list(bundle.parent.glob(".*partial*"))


def test_reference_npz_reproduces_source_outputs(example_int8):
    bundle = example_int8.bundle_dir
    reference = np.load(bundle / "reference.npz")
    session = ort.InferenceSession(str(bundle / "baseline_fp32.onnx"), providers=["CPUExecutionProvider"])
    output_name = example_int8.report["model"]["outputs"][0]["name"]
    fp32 = session.run(None, {"x": reference["inputs/x"]})[0]
    np.testing.assert_allclose(fp32, reference[f"outputs/{output_name}"], atol=1e-4)
    assert reference["labels"].shape == (reference["inputs/x"].shape[0],)


def test_report_json_and_html(example_int8):
    report = read_report(example_int8.bundle_dir / "report.json")
    assert report["schema_version"] == REPORT_VERSION
    latency = report["latency"]
    assert latency["threads"] == 1 and latency["batch"] == 1
    for side in ("reference", "artifact"):
        assert 0 < latency[side]["p50_ms"] <= latency[side]["p90_ms"] <= latency[side]["p99_ms"]
        assert report["memory"][side]["loaded_mb"] > 0
        assert report["load_time_s"][side] > 0
    assert latency["speedup"] > 0
    assert report["model"]["exporter"] == "torch.onnx.export(dynamo=True)"
    assert report["model"]["parity"]["ok"]
    # Layers are named by source module path, not ONNX node ids.
    assert "classifier" in report["precision_plan"]["layers"]
    assert all(layer["precision"] == "int8" for layer in report["precision_plan"]["layers"].values())
    assert any(d["asked"] == "--optimize_for cpu" for d in report["decisions"])
    html = (example_int8.bundle_dir / "report.html").read_text()
    assert "top-1 accuracy" in html and "http://" not in html and "https://" not in html
    plan = json.loads((example_int8.bundle_dir / "precision_plan.json").read_text())
    assert plan["scheme"] == "int8" and plan["details"]["per_channel"] is True
