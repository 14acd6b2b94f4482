"""Pruning (issue 8): structured channel pruning keeps a residual/depthwise/BN model consistent,
magnitude pruning hits its sparsity, the accuracy budget is honoured, and a pruned model goes
through every output format to a runnable artifact."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

from edgeport.api import convert
from edgeport.core.errors import InputError
from edgeport.core.runner_spec import RunnerSpec
from edgeport.options.prune_spec import parse_prune
from edgeport.options.recipe import Recipe
from edgeport.prune.budget import LayerCurve, allocate
from edgeport.prune.magnitude import WeightEditor, prunable_weights
from edgeport.prune.structured import find_groups, prune_channels, recalibrate_batchnorm
from edgeport.runtime.ort import OrtRunner
from tests import models_for_tests
from tests.conftest import EXAMPLES, factory

FASHION = dict(
    calibration_data=str(EXAMPLES / "fashion_mnist_calib.npz"),
    eval_data=str(EXAMPLES / "fashion_mnist_test_1k.npz"),
    eval_samples=300,
    latency_runs=20,
)


@pytest.fixture(scope="module")
def residual_data(tmp_path_factory) -> str:
    """64 random images for the residual test model (no labels)."""
    path = tmp_path_factory.mktemp("prune") / "residual.npz"
    np.savez(path, x=np.random.default_rng(0).standard_normal((64, 3, 16, 16)).astype(np.float32))
    return str(path)


def _residual(tmp_path, data: str, output_format: str, quantization: str, optimize_for: str = "cpu"):
    return convert(
        factory("make_residual_depthwise"),
        optimize_for=optimize_for,
        input_shape="1,3,16,16",
        dynamic_batch=True,
        output_format=output_format,
        quantization=quantization,
        calibration_data=data,
        eval_data=data,
        prune="channels:0.5",
        finetune_steps=5,
        latency_runs=10,
        output_dir=str(tmp_path / output_format),
    )


def test_structured_pruning_keeps_residual_depthwise_batchnorm_consistent():
    model = models_for_tests.make_residual_depthwise()
    example = (torch.randn(4, 3, 16, 16),)
    groups = {g.name: g for g in find_groups(model, example)}
    # The residual add couples stem and project; the depthwise conv rides with expand; the
    # classifier's outputs (the model's output) are not prunable.
    assert "project" in groups["stem"].coupled and "depthwise" in groups["expand"].coupled
    assert "fc" not in groups
    counts = prune_channels(model, {name: g.channels // 2 for name, g in groups.items()}, example)
    assert all(after == before - before // 2 for before, after in counts.values())
    recalibrate_batchnorm(model, [example])
    model.eval()
    m = dict(model.named_modules())
    assert m["stem"].out_channels == m["project"].out_channels == m["stem_bn"].num_features == 8
    assert m["expand"].out_channels == m["depthwise"].in_channels == m["depthwise"].out_channels == 16
    assert m["depthwise"].groups == 16 and m["depthwise_bn"].num_features == 16
    assert m["project"].in_channels == 16 and m["branch"].in_channels == 8
    assert m["head_conv"].in_channels == m["stem"].out_channels + m["branch"].out_channels
    assert m["fc"].in_features == m["head_conv"].out_channels and m["fc"].out_features == 5
    with torch.no_grad():
        assert model(*example).shape == (4, 5)


def test_magnitude_pruning_hits_the_requested_sparsity(tmp_path):
    torch_model = models_for_tests.make_residual_depthwise()
    path = tmp_path / "residual.onnx"
    torch.onnx.export(torch_model, (torch.randn(1, 3, 16, 16),), str(path), dynamo=True, external_data=False)
    model = onnx.load(str(path))
    layers = prunable_weights(model)
    assert {layer.op for layer in layers} >= {"Conv", "Gemm"}
    editor = WeightEditor(model, layers)
    achieved = editor.apply({layer.name: 0.6 for layer in layers})
    for layer in layers:
        assert achieved[layer.name] == pytest.approx(0.6, abs=1.0 / layer.size + 1e-9)
    pruned = editor.snapshot()
    inits = {i.name: numpy_helper.to_array(i) for i in pruned.graph.initializer}
    originals = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    for layer in layers:  # the zeros are the smallest weights
        kept = inits[layer.initializer] != 0
        original = np.abs(originals[layer.initializer])
        assert original[~kept].max() <= original[kept].min() + 1e-12
    OrtRunner(pruned.SerializeToString()).run({"x": np.zeros((1, 3, 16, 16), np.float32)})
    # Global target: per-layer ratios differ but together reach it.
    curves = [LayerCurve("a", 100, [0, 0.25, 0.5, 0.75], {0.75: 1.0}), LayerCurve("b", 300, [0, 0.25, 0.5, 0.75])]
    ratios = allocate(curves, 0.5, {})
    assert (ratios["a"] * 100 + ratios["b"] * 300) / 400 >= 0.5 and ratios["b"] > ratios["a"]


def test_magnitude_pipeline_reaches_sparsity_and_reports_what_it_buys(tmp_path):
    result = convert(
        str(EXAMPLES / "fashion_cnn.pt2"),
        quantization="none",
        prune="magnitude:0.5,classifier=0",
        output_dir=str(tmp_path / "mag"),
        **FASHION,
    )
    section = result.report["pruning"]
    rows = {row["layer"]: row for row in section["layers"]}
    assert rows["classifier"]["sparsity"] == 0 and rows["classifier"]["fixed"]
    free = [row for row in rows.values() if not row["fixed"]]
    overall = sum(r["sparsity"] * r["weights"] for r in free) / sum(r["weights"] for r in free)
    assert overall >= 0.5 - 1e-3
    assert len({round(r["ratio"], 2) for r in free}) > 1  # sensitivity, not one ratio everywhere
    original, pruned, final = section["stages"]
    assert pruned["gzip_bytes"] < original["gzip_bytes"] and pruned["bytes"] == original["bytes"]
    assert "no speed" in section["what_it_buys"]
    # The fidelity reference is the unpruned model: the report's drop is end to end.
    assert final["drop"] == pytest.approx(result.report["gate"]["drop"])
    assert "Pruning (<code>magnitude:0.5" in (result.bundle_dir / "report.html").read_text()


def test_budget_is_honoured(tmp_path):
    result = convert(
        str(EXAMPLES / "fashion_cnn.pt2"),
        quantization="none",
        prune="magnitude:0.9",
        max_accuracy_drop=0.5,
        output_dir=str(tmp_path / "budget"),
        **FASHION,
    )
    section = result.report["pruning"]
    attempts = section["attempts"]
    assert not attempts[0]["fits_budget"] and attempts[0]["drop"] > 0.5  # 90% everywhere costs too much
    assert section["accepted"] and attempts[-1]["fits_budget"] and attempts[-1]["sparsity"] < attempts[0]["sparsity"]
    assert section["budget"]["pruning_budget"] == 0.5  # no quantization: nothing reserved
    assert section["stages"][1]["drop"] <= 0.5 + 1e-9
    assert result.passed and result.report["gate"]["drop"] <= 0.5 + 1e-9


@pytest.mark.parametrize("output_format", ["onnx", "tflite", "coreml"])
def test_structured_pruning_through_each_format(tmp_path, residual_data, output_format):
    quantization = {"onnx": "int8", "tflite": "int8", "coreml": "int8-weight"}[output_format]
    target = "metal" if output_format == "coreml" else "cpu"  # Core ML runs on Apple devices only
    result = _residual(tmp_path, residual_data, output_format, quantization, optimize_for=target)
    section = result.report["pruning"]
    assert section["method"] == "channels" and section["finetune_steps"] == 5
    assert section["attempts"][0]["recovery"]["steps"] == 5
    original, pruned, final = section["stages"]
    assert pruned["macs"] < 0.7 * original["macs"] and pruned["params"] < original["params"]
    bundle = result.bundle_dir
    # The baseline (fidelity reference) is the original model; quantization started from the pruned one.
    baseline, pruned_model = onnx.load(str(bundle / "baseline_fp32.onnx")), onnx.load(str(bundle / "pruned_fp32.onnx"))
    assert sum(i.ByteSize() for i in pruned_model.graph.initializer) < sum(
        i.ByteSize() for i in baseline.graph.initializer
    )
    runner = json.loads((bundle / "manifest.json").read_text())["runner"]

    feeds = {"x": np.zeros((1, 3, 16, 16), np.float32)}
    if output_format == "coreml" and result.report["fidelity"].get("emulated"):
        # Core ML runs on macOS only; here the package must exist and its emulation must have run.
        assert (bundle / "model.mlpackage").is_dir() and result.report["fidelity"]["samples"] > 0
    else:
        outputs = RunnerSpec(runner["kind"], str(bundle / runner["file"]), runner["kwargs"]).open().run(feeds)
        assert outputs[0].shape == (1, 5) and np.all(np.isfinite(outputs[0]))
    assert final["stage"].startswith("pruned + ")


def test_magnitude_pruning_reaches_coreml_and_its_sparse_storage(tmp_path):
    result = convert(
        str(EXAMPLES / "fashion_cnn_state_dict.pt"),
        model_class=str(EXAMPLES / "fashion_cnn.py") + ":FashionCNN",
        input_shape="1,1,28,28",
        output_format="coreml",
        optimize_for="metal",
        quantization="none",
        prune="magnitude:0.5",
        output_dir=str(tmp_path / "coreml"),
        **FASHION,
    )
    section = result.report["pruning"]
    # Core ML converts from the PyTorch module: the same weights were zeroed there.
    assert "5 of 5 tensors matched" in section["coreml"]
    sparse = section["coreml_sparse_storage"]
    assert sparse["measured"] and sparse["sparse_bytes"] < 0.8 * sparse["dense_bytes"]


def test_structured_pruning_refuses_sources_without_a_module(tmp_path):
    with pytest.raises(InputError, match="ExportedProgram"):
        convert(
            str(EXAMPLES / "fashion_cnn.pt2"),
            quantization="none",
            prune="channels:0.3",
            output_dir=str(tmp_path / "pt2"),
            **FASHION,
        )


def test_prune_option_parsing():
    spec = parse_prune("magnitude:0.5,features.*=0.2,classifier=0")
    assert spec.ratio == 0.5 and spec.fixed_ratio("features.1") == 0.2 and spec.fixed_ratio("classifier") == 0
    for bad in ("magnitude", "sparse:0.5", "channels:1.5", "channels:0.3,0.4", "magnitude:=0.3"):
        with pytest.raises(InputError):
            parse_prune(bad)
    with pytest.raises(InputError, match="needs --prune"):
        Recipe(input_model="x.onnx", finetune_steps=10)
