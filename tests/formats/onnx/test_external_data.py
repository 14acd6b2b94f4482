"""Big models (issue #21, point 4) on a small one: an ONNX source of a few MB whose weights are all
in external data, converted with the big-model path forced (frontends/onnx.py KEEP_EXTERNAL_BYTES
= 0: the weights are never loaded into Python). The bundle's fp32 baseline and quantized model,
with their .data files, must load from the bundle alone and run close to the source."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgeport.api import convert
from edgeport.runtime.ort import OrtRunner

WIDTH, LAYERS = 384, 4  # 4 x 384 x 384 float32: ~2.4 MB of weights


def _stack(path: Path) -> Path:
    """A stack of MatMul+Add+Relu layers saved with every tensor in one external data file."""
    rng = np.random.default_rng(0)
    nodes, weights, current = [], [], "x"
    for i in range(LAYERS):
        w = (rng.standard_normal((WIDTH, WIDTH)) / np.sqrt(WIDTH)).astype(np.float32)
        b = (rng.standard_normal(WIDTH) * 0.1).astype(np.float32)
        weights += [numpy_helper.from_array(w, f"w{i}"), numpy_helper.from_array(b, f"b{i}")]
        nodes += [
            helper.make_node("MatMul", [current, f"w{i}"], [f"m{i}"], name=f"fc{i}"),
            helper.make_node("Add", [f"m{i}", f"b{i}"], [f"a{i}"], name=f"bias{i}"),
            helper.make_node("Relu", [f"a{i}"], [f"r{i}"], name=f"relu{i}"),
        ]
        current = f"r{i}"
    graph = helper.make_graph(
        nodes,
        "stack",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", WIDTH])],
        [helper.make_tensor_value_info(current, TensorProto.FLOAT, ["batch", WIDTH])],
        weights,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path), save_as_external_data=True, location="weights.bin", size_threshold=0)
    return path


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("external")
    path = _stack(root / "model" / "stack.onnx")
    rng = np.random.default_rng(1)
    data = root / "calib.npz"
    np.savez(data, x=rng.standard_normal((64, WIDTH)).astype(np.float32))
    x = rng.standard_normal((8, WIDTH)).astype(np.float32)
    return {"path": path, "data": data, "x": x, "fp32": OrtRunner(path).run({"x": x})[0]}


@pytest.mark.parametrize("scheme", ["int8", "int8-dynamic", "int8-weight", "fp16"])
def test_external_data_source_end_to_end(source, tmp_path, monkeypatch, scheme):
    import edgeport.frontends.onnx as frontend

    monkeypatch.setattr(frontend, "KEEP_EXTERNAL_BYTES", 0)
    loaded = []
    real = onnx.load_external_data_for_model
    monkeypatch.setattr(onnx, "load_external_data_for_model", lambda *a, **k: loaded.append(a) or real(*a, **k))
    result = convert(
        str(source["path"]),
        output_format="onnx",
        quantization=scheme,
        calibration_data=str(source["data"]),
        calibration_samples=32,
        eval_samples=32,
        latency_runs=3,
        output_dir=str(tmp_path / "bundle"),
    )
    # The source's weights are never loaded into Python (the quantizer reads the bundle's copy once).
    assert [a for a in loaded if Path(a[1]) == source["path"].parent] == [], "the weights were loaded into Python"
    report = result.report
    assert any("weights stay in their external data" in note for note in report["notes"]), report["notes"]
    bundle = result.bundle_dir
    baseline = bundle / "baseline_fp32.onnx"
    assert (bundle / "baseline_fp32.onnx.data").is_file()
    # Weights on disk, not in the protobuf: the baseline file is the graph only.
    assert baseline.stat().st_size < 50_000
    onnx.checker.check_model(str(baseline), full_check=True)
    np.testing.assert_allclose(OrtRunner(baseline).run({"x": source["x"]})[0], source["fp32"], rtol=1e-5, atol=1e-5)
    onnx.checker.check_model(str(result.artifact))
    quantized = OrtRunner(result.artifact).run({"x": source["x"]})[0]
    cosine = float(np.sum(quantized * source["fp32"]) / np.linalg.norm(quantized) / np.linalg.norm(source["fp32"]))
    assert cosine > 0.98, cosine
    graph = onnx.load(str(result.artifact), load_external_data=False).graph
    ops = {n.op_type for n in graph.node}
    if scheme == "fp16":  # converted one weight at a time into the artifact's own data file
        assert {t.data_type for t in graph.initializer} == {TensorProto.FLOAT16}
        assert Path(str(result.artifact) + ".data").is_file()
        assert result.artifact.stat().st_size < 50_000
        return
    expected = {"int8": "QuantizeLinear", "int8-dynamic": "MatMulInteger", "int8-weight": "MatMulNBits"}[scheme]
    assert expected in ops or "DynamicQuantizeMatMul" in ops, ops
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert "baseline_fp32.onnx.data" in json.dumps(manifest)


def test_small_external_data_is_loaded_as_before(source, tmp_path):
    """Below the threshold an external-data source is loaded and simplified as any other."""
    result = convert(
        str(source["path"]),
        output_format="onnx",
        quantization="int8-dynamic",
        eval_samples=16,
        latency_runs=3,
        output_dir=str(tmp_path / "bundle"),
    )
    assert not any("weights stay in their external data" in n for n in result.report["notes"])
    assert not (result.bundle_dir / "baseline_fp32.onnx.data").exists()


def test_big_torch_export_keeps_its_weights_in_external_data(tmp_path, monkeypatch):
    """A PyTorch source over frontends/normalize.py EXPORT_EXTERNAL_BYTES (forced to 0 here) is
    exported with its weights in external data, in a temporary folder removed at exit; the bundle's
    baseline gets them streamed into its own .data file and converts as any other."""
    import tempfile

    import torch

    import edgeport.frontends.normalize as normalize
    from tests import models_for_tests
    from tests.conftest import factory

    monkeypatch.setattr(normalize, "EXPORT_EXTERNAL_BYTES", 0)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    result = convert(
        factory("make_tiny"),
        output_format="onnx",
        quantization="int8-dynamic",
        input_shape="1,3,16,16",
        eval_samples=16,
        latency_runs=3,
        output_dir=str(tmp_path / "bundle"),
    )
    assert any("weights in external data" in note for note in result.report["notes"]), result.report["notes"]
    baseline = result.bundle_dir / "baseline_fp32.onnx"
    assert (result.bundle_dir / "baseline_fp32.onnx.data").is_file()
    graph = onnx.load(str(baseline), load_external_data=False)
    assert normalize.WEIGHTS_FOLDER_KEY not in {p.key for p in graph.metadata_props}
    reference = np.load(result.bundle_dir / "reference.npz")
    x = reference["inputs/x"]
    expected = models_for_tests.make_tiny()(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(OrtRunner(baseline).run({"x": x})[0], expected, rtol=1e-4, atol=1e-5)
    assert result.report["model"]["parity"]["ok"]
    assert OrtRunner(result.artifact).run({"x": x})[0].shape == expected.shape
