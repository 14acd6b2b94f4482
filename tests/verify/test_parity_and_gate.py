"""The parity check catches a broken export (exit 4); the accuracy gate fails with exit 3."""

from __future__ import annotations

import json

import onnx
import pytest

from edgeport.api import convert
from edgeport.core.errors import ConversionError, GateFailed
from edgeport.frontends.normalize import parity_check
from edgeport.runtime.ort import OrtRunner
from tests.conftest import factory


def test_export_that_changes_behaviour_fails_parity(tmp_path):
    with pytest.raises(ConversionError, match="parity check failed: ONNX output .* differs") as info:
        convert(factory("make_noisy"), quantization="none", input_shape="1,3,8,8", output_dir=str(tmp_path / "bundle"))
    assert info.value.exit_code == 4
    assert not (tmp_path / "bundle").exists()
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())


def test_parity_names_the_worst_output(tiny_files):
    model = onnx.load(str(tiny_files["onnx"]))
    import numpy as np

    x = np.random.default_rng(0).standard_normal((2, 3, 16, 16)).astype(np.float32)
    expected = OrtRunner(model.SerializeToString()).run({"x": x})
    assert parity_check(model, expected, {"x": x}, 1e-3, 1e-4)["ok"]
    # Tamper with one weight: a silent corruption the parity check must catch.
    weight = next(i for i in model.graph.initializer if len(i.dims) == 4)
    values = onnx.numpy_helper.to_array(weight).copy()
    values.flat[0] += 10.0
    weight.CopyFrom(onnx.numpy_helper.from_array(values, weight.name))
    output = model.graph.output[0].name
    with pytest.raises(ConversionError, match=f"'{output}'.*max abs error"):
        parity_check(model, expected, {"x": x}, 1e-3, 1e-4)


def test_gate_failure_keeps_the_artifact_marked_failed(tmp_path):
    out = tmp_path / "bundle"
    with pytest.raises(GateFailed) as info:
        convert(
            factory("make_feature_net"),
            quantization="int8",
            input_shape="1,3,12,12",
            max_accuracy_drop=0.0,
            output_dir=str(out),
            latency_runs=5,
        )
    assert info.value.exit_code == 3
    manifest = json.loads((out / "manifest.json").read_text())
    report = json.loads((out / "report.json").read_text())
    assert manifest["status"] == "failed" and report["status"] == "failed"
    assert report["gate"]["drop"] > 0 and not report["gate"]["passed"]
    # 16 raw conv channels: a dense map by the evidence, weakly; the decision names the flag.
    assert "IoU" in report["gate"]["metric"]
    decision = next(d for d in report["decisions"] if d["asked"].startswith("--metric auto"))
    assert "weak evidence" in decision["why"] and "=cosine" in decision["why"]
    assert (out / "model.onnx").is_file()


def test_gate_with_room_passes(tmp_path):
    result = convert(
        factory("make_feature_net"),
        quantization="int8",
        input_shape="1,3,12,12",
        max_accuracy_drop=5.0,
        output_dir=str(tmp_path / "bundle"),
        latency_runs=5,
    )
    assert result.passed and result.report["gate"]["drop"] < 5.0
