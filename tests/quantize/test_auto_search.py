"""--quantization auto: the budget is honoured, an impossible budget ends with the best model
and exit 3, and a saved plan re-applies to a byte-identical artifact."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

from edgeport.api import convert
from edgeport.core.errors import GateFailed, InputError
from edgeport.core.plan import LayerPrecision, PrecisionPlan
from edgeport.quantize.auto import parse_search_budget
from edgeport.quantize.search import SearchPoint, search
from edgeport.quantize.sensitivity import LayerSensitivity
from tests.conftest import EXAMPLES, factory

EXAMPLE = dict(
    calibration_data=str(EXAMPLES / "fashion_mnist_calib.npz"),
    eval_data=str(EXAMPLES / "fashion_mnist_test_1k.npz"),
    eval_samples=400,
    latency_runs=20,
    optimize_for="cpu",
)


@pytest.fixture(scope="module")
def example_auto(tmp_path_factory):
    out = tmp_path_factory.mktemp("auto") / "bundle"
    return convert(
        str(EXAMPLES / "fashion_cnn.pt2"), quantization="auto", output_dir=str(out), max_accuracy_drop=0.5, **EXAMPLE
    )


def test_auto_honours_the_budget_on_the_bundled_model(example_auto):
    report = example_auto.report
    fidelity = report["fidelity"]
    assert fidelity["reference_top1"] - fidelity["artifact_top1"] <= 0.5
    assert report["gate"]["passed"] and report["gate"]["max_accuracy_drop"] == 0.5
    search = report["search"]
    assert search["met_budget"] and search["chosen"]["feasible"]
    # It found a quantized model, and it is faster than fp32 on this CPU.
    assert search["base_scheme"].startswith("int8")
    assert report["latency"]["speedup"] > 1.3
    assert len(search["promotion_order"]) == len(report["precision_plan"]["layers"]) == 5
    assert all(point["drop"] is not None for point in search["points"])
    assert set(search["sensitivity"]) == set(report["precision_plan"]["layers"])


def test_saved_plan_reapplies_to_a_byte_identical_model(example_auto, tmp_path):
    plan_path = example_auto.bundle_dir / "precision_plan.json"
    again = convert(
        str(EXAMPLES / "fashion_cnn.pt2"), precision_plan=str(plan_path), output_dir=str(tmp_path / "again"), **EXAMPLE
    )
    assert again.artifact.read_bytes() == example_auto.artifact.read_bytes()
    assert again.report["search"] is None
    assert any("--precision_plan" in d["asked"] for d in again.report["decisions"])


def test_plan_for_another_model_is_refused(example_auto, tmp_path):
    plan = json.loads((example_auto.bundle_dir / "precision_plan.json").read_text())
    plan["layers"]["no.such.layer"] = {"precision": "int8", "op": "Conv", "nodes": []}
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(plan))
    with pytest.raises(InputError, match="layers not in this model"):
        convert(str(EXAMPLES / "fashion_cnn.pt2"), precision_plan=str(path), output_dir=str(tmp_path / "x"), **EXAMPLE)


def test_impossible_budget_returns_the_float_model_and_exits_3(tmp_path):
    """No quantized plan meets a budget the user set: the bundle holds the float model itself (no
    quantize/dequantize nodes), the report names the nearest quantized point, and the run exits 3."""
    out = tmp_path / "bundle"
    with pytest.raises(GateFailed, match="no quantized plan met") as info:
        convert(
            factory("make_feature_net"),
            quantization="auto",
            input_shape="1,3,12,12",
            dynamic_batch=True,
            max_accuracy_drop=0.0,
            search_budget="1",
            output_dir=str(out),
            latency_runs=5,
        )
    assert info.value.exit_code == 3
    report = json.loads((out / "report.json").read_text())
    search = report["search"]
    assert not search["met_budget"] and "--search_budget" in search["stopped_by"]
    assert search["blocking_layers"]
    assert search["float_fallback"] == "budget" and "nearest" in search["float_fallback_why"]
    quantized_drops = [p["drop"] for p in search["points"] if not p["metrics"].get("float_model")]
    assert min(quantized_drops) > 0.0
    assert search["chosen"]["metrics"]["float_model"] and search["chosen"]["drop"] <= 1e-6
    artifact = onnx.load(str(out / "model.onnx"))
    assert not [n for n in artifact.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    assert report["gate"]["drop"] <= 1e-6 and report["status"] == "failed"
    assert any("float model" in d["done"] for d in report["decisions"])


def test_search_promotes_the_harmful_layer_first():
    """A synthetic search: layer 'b' ruins accuracy; the search keeps only it in float."""
    plan = PrecisionPlan("int8", "test", {}, {n: LayerPrecision("int8", "Conv", [n]) for n in "abcd"})
    sensitivity = {n: LayerSensitivity(n, "Conv", 40.0, 1000) for n in "acd"}
    sensitivity["b"] = LayerSensitivity("b", "Conv", 5.0, 1000)

    def evaluate(candidate):
        drop = 3.0 if candidate.layers["b"].precision == "int8" else 0.2
        return SearchPoint(
            [], drop, False, speedup=4.0 - sum(layer.precision == "fp32" for layer in candidate.layers.values())
        )

    result = search(plan, sensitivity, evaluate, budget=1.0, cost=lambda layer, p: 1.0 if p == "fp32" else 0.3)
    assert result.order[0] == "b"
    assert result.met_budget and result.best.kept_float == ["b"]
    assert len(result.points) == 2


def test_search_budget_parsing():
    assert parse_search_budget("12").evaluations == 12
    assert parse_search_budget("90s").seconds == 90
    both = parse_search_budget("5,2m")
    assert (both.evaluations, both.seconds) == (5, 120)
    with pytest.raises(InputError):
        parse_search_budget("lots")


def test_sensitivity_ranks_int4_worse_than_int8(example_auto):
    import onnx

    from edgeport.core.plan import uniform_plan
    from edgeport.profiles import resolve_profile
    from edgeport.quantize.sensitivity import layer_sensitivity

    model = onnx.load(str(example_auto.bundle_dir / "baseline_fp32.onnx"))
    profile, _ = resolve_profile("cpu")
    x = np.load(EXAMPLES / "fashion_mnist_calib.npz")["x"][:8, None].astype(np.float32) / 255
    feeds = [{"x": x[i : i + 2]} for i in range(0, 8, 2)]
    plan = uniform_plan(model, "int8", profile)
    int8 = layer_sensitivity(model, plan, feeds, "int8")
    int4 = layer_sensitivity(model, plan, feeds, "int4-weight")
    fp16 = layer_sensitivity(model, plan, feeds, "fp16")
    for name in int8:
        assert fp16[name].sqnr_db > int8[name].sqnr_db > int4[name].sqnr_db
        assert int8[name].sqnr_db > 30  # a calibrated int8 conv is good to ~40 dB
    assert int8["features.0"].macs == 28 * 28 * 32 * 9


def test_sensitivity_is_cached_by_content(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEPORT_CACHE_DIR", str(tmp_path / "cache"))
    options = dict(
        quantization="auto", input_shape="1,3,12,12", dynamic_batch=True, max_accuracy_drop=5.0, latency_runs=5
    )
    first = convert(factory("make_feature_net"), output_dir=str(tmp_path / "a"), **options)
    cached = list((tmp_path / "cache" / "sensitivity").glob("*/meta.json"))  # core/cache_store.py entries
    assert len(cached) == 1
    second = convert(factory("make_feature_net"), output_dir=str(tmp_path / "b"), **options)
    assert second.report["search"]["sensitivity"] == first.report["search"]["sensitivity"]
    assert "per-layer sensitivity" not in " ".join(second.report["timings_s"])
