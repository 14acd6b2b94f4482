"""The size budget (--max_size, or a profile's default) in the search and the gate.

Unit tests of the search use plans whose sizes and drops are known exactly; the end-to-end tests
build a real 3-layer MLP (three MatMuls, 1.57 M fp32 weights, 6.3 MB) with onnx.helper, where
static int8 (~1.59 MB) is over a 1.3 MB budget and int4 weights (MatMulNBits, ~0.98 MB) fit."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
import yaml
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper

from edgeport.api import convert
from edgeport.cli.main import main
from edgeport.core.errors import GateFailed
from edgeport.core.plan import LayerPrecision, PrecisionPlan
from edgeport.core.sizes import artifact_bytes
from edgeport.profiles import PROFILE_DIR
from edgeport.quantize.search import SearchPoint, search
from edgeport.quantize.sensitivity import LayerSensitivity
from edgeport.reports.html import render_html
from edgeport.verify.download import NOT_MEASURED

# --- the search, on plans of known size ---------------------------------------------------------

LAYERS = {"a": 2.0, "b": 0.5, "c": 0.1}  # drop each layer adds when quantized
FLOAT_BYTES, QUANT_BYTES = 4000, 1000  # each layer's bytes in fp32 and quantized


def _plan() -> PrecisionPlan:
    plan = PrecisionPlan(scheme="int8", profile="test", details={})
    for name in LAYERS:
        plan.layers[name] = LayerPrecision("int8", "MatMul", [name])
    return plan


def _evaluate(plan: PrecisionPlan) -> SearchPoint:
    quantized = [n for n, layer in plan.layers.items() if layer.precision == "int8"]
    size = sum(QUANT_BYTES if n in quantized else FLOAT_BYTES for n in plan.layers)
    return SearchPoint([], 0.01 + sum(LAYERS[n] for n in quantized), False, size_bytes=size)


def _search(budget: float, max_size: int | None):
    sensitivity = {n: LayerSensitivity(n, "MatMul", 30.0 - 10 * d, macs=1000) for n, d in LAYERS.items()}
    return search(
        _plan(), sensitivity, _evaluate, budget, lambda _l, p: 1.0 if p == "fp32" else 0.25,
        max_evaluations=20, max_size=max_size,
    )  # fmt: skip


def test_size_budget_makes_an_accurate_but_big_plan_infeasible():
    # Accuracy alone: a and b in float (0.11 points, 9000 bytes). Under 8000 bytes that plan is
    # over, and only a in float (6000 bytes, 0.61 points) is accurate enough within 1.0 point.
    assert _search(0.2, None).best.kept_float == ["a", "b"]
    result = _search(1.0, 8000)
    assert result.met_budget and result.best.size_bytes == 6000 and result.best.kept_float == ["a"]
    tight = _search(0.2, 8000)  # 0.2 points needs 9000 bytes: nothing meets both
    assert not tight.met_budget
    # The most accurate plan within the size budget is returned, not the accurate one over it.
    assert tight.best.size_bytes <= 8000 and tight.best.drop == pytest.approx(0.61)


def test_nothing_fits_returns_the_smallest_plan_and_stops_early():
    result = _search(5.0, 2000)  # the all-quantized plan is 3000 bytes
    assert not result.met_budget and len(result.points) == 1
    assert result.best.size_bytes == 3000 and result.best.kept_float == []
    assert result.stopped_by.startswith("size budget")


# --- end to end, on a real model ----------------------------------------------------------------

COMMON = dict(optimize_for="x86-avx2", max_accuracy_drop=5.0, metric="cosine", latency_runs=10, eval_samples=64)


@pytest.fixture(scope="module")
def mlp(tmp_path_factory) -> dict[str, str]:
    """A 256-1024-1024-256 MLP of MatMuls with ReLUs, and 64 real-valued samples for calibration
    and evaluation (random normal inputs: the cosine to fp32 is what is measured)."""
    folder = tmp_path_factory.mktemp("mlp")
    rng = np.random.default_rng(0)
    dims, inits, nodes, prev = [256, 1024, 1024, 256], [], [], "x"
    for i in range(3):
        weight = (rng.standard_normal((dims[i], dims[i + 1])) / np.sqrt(dims[i])).astype(np.float32)
        inits.append(numpy_helper.from_array(weight, f"w{i}"))
        nodes.append(helper.make_node("MatMul", [prev, f"w{i}"], [f"m{i}"], name=f"fc{i}"))
        prev = f"m{i}"
        if i < 2:
            nodes.append(helper.make_node("Relu", [prev], [f"r{i}"], name=f"relu{i}"))
            prev = f"r{i}"
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 256])
    y = helper.make_tensor_value_info(prev, TensorProto.FLOAT, ["batch", 256])
    graph = helper.make_graph(nodes, "mlp", [x], [y], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    onnx.save(model, str(folder / "mlp.onnx"))
    np.savez(folder / "data.npz", x=rng.standard_normal((64, 256)).astype(np.float32))
    data = str(folder / "data.npz")
    return {"model": str(folder / "mlp.onnx"), "calibration_data": data, "eval_data": data}


def _report(bundle: Path) -> dict:
    return json.loads((bundle / "report.json").read_text())


def test_auto_under_a_size_budget_chooses_int4_weights_when_int8_is_too_big(mlp, tmp_path):
    out = tmp_path / "bundle"
    result = convert(
        mlp["model"], quantization="auto", max_size="1.3MB", output_dir=str(out),
        calibration_data=mlp["calibration_data"], eval_data=mlp["eval_data"], **COMMON,
    )  # fmt: skip
    report = result.report
    search = report["search"]
    assert search["base_points"]["int8"]["size_bytes"] > 1_300_000  # static int8 is over budget
    assert search["base_points"]["int4-weight"]["size_bytes"] <= 1_300_000
    assert report["target"]["scheme"] == "int4-weight" and result.passed
    on_disk = artifact_bytes(out / "model.onnx")
    assert on_disk <= 1_300_000 and report["size"]["artifact_bytes"] == on_disk
    assert any(n.op_type == "MatMulNBits" for n in onnx.load(str(out / "model.onnx")).graph.node)
    # Accuracy was measured on the artifact, not assumed: int4 weights cost a little cosine.
    assert 0.0 < report["gate"]["drop"] <= 5.0 and report["gate"]["size_passed"] is True
    assert search["size_budget"]["met"] and search["size_budget"]["source"] == "--max_size 1.3MB"
    assert "size <= 1.30 MB" in report["decisions"][-1]["asked"]
    download = report["size"]["download"]
    assert download["artifact"]["gzip_bytes"] < download["artifact"]["raw_bytes"]
    assert download["reference"]["gzip_bytes"] < download["reference"]["raw_bytes"]
    assert 0 < download["artifact"]["brotli_bytes"] < download["artifact"]["raw_bytes"]
    html = (out / "report.html").read_text()
    assert "download, gzip -9" in html and "download, brotli quality 5" in html and "24% under" in html
    # Without the brotli package the HTML says so, with no figure.
    download["artifact"]["brotli_bytes"] = download["reference"]["brotli_bytes"] = NOT_MEASURED
    download["brotli_quality"] = None
    assert f'<td colspan="3">{NOT_MEASURED}</td>' in render_html(report)


def test_auto_when_nothing_fits_returns_the_smallest_plan_and_says_how_close(mlp, tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEPORT_CACHE_DIR", str(tmp_path / "cache"))  # no sensitivity from an earlier run
    out = tmp_path / "bundle"
    with pytest.raises(GateFailed, match="size budget failed") as info:
        convert(
            mlp["model"], quantization="auto", max_size="500KB", output_dir=str(out),
            calibration_data=mlp["calibration_data"], eval_data=mlp["eval_data"], **COMMON,
        )  # fmt: skip
    assert info.value.exit_code == 3
    report = _report(out)
    sizes = [p["size_bytes"] for p in report["search"]["points"]]
    smallest = min(sizes + [b["size_bytes"] for b in report["search"]["base_points"].values() if "size_bytes" in b])
    assert artifact_bytes(out / "model.onnx") == smallest == report["search"]["size_budget"]["smallest_bytes"]
    how_close = report["search"]["size_budget"]["how_close"]
    percent = round((smallest - 500_000) / 500_000 * 100)
    assert how_close.startswith("smallest artifact") and f"500.0 KB budget: {percent}% over" in how_close
    assert report["status"] == "failed" and report["size"]["budget"]["met"] is False
    # Over the size budget from the start, the search ends at once: no layer was measured one at a time.
    assert not [step for step in report["timings_s"] if step.startswith("measured sensitivity")]


def test_uniform_scheme_over_the_user_budget_exits_3(mlp, tmp_path):
    out = tmp_path / "bundle"
    args = ["convert", "--input_model", mlp["model"], "--quantization", "int8", "--max_size", "1MB"]
    args += ["--calibration_data", mlp["calibration_data"], "--eval_data", mlp["eval_data"], "--quiet"]
    args += ["--optimize_for", "x86-avx2", "--latency_runs", "10", "--output_dir", str(out)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 3, result.output
    assert "size budget failed" in result.output and "against the 1.00 MB budget" in result.output
    report = _report(out)
    assert report["gate"]["size_passed"] is False and report["size"]["artifact_bytes"] > 1_000_000


def test_a_profile_default_budget_only_warns(mlp, tmp_path):
    data = yaml.safe_load((PROFILE_DIR / "x86-avx2.yaml").read_text())
    data["name"], data["aliases"] = "small-page", []
    data["constraints"]["max_size"] = "1MB"
    profile = tmp_path / "small-page.yaml"
    profile.write_text(yaml.safe_dump(data))
    out = tmp_path / "bundle"
    options = {**COMMON, "optimize_for": str(profile)}
    result = convert(
        mlp["model"], quantization="int8", output_dir=str(out),
        calibration_data=mlp["calibration_data"], eval_data=mlp["eval_data"], **options,
    )  # fmt: skip
    report = result.report
    assert result.passed and report["size"]["artifact_bytes"] > 1_000_000
    assert report["size"]["budget"] == {**report["size"]["budget"], "gate": False, "met": False}
    assert any(d["done"] == "size budget 1.00 MB from profile small-page" for d in report["decisions"])
    assert any(n.startswith("size budget missed (a warning") for n in report["notes"])


@pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium not installed (apt-get install chromium)")
def test_browser_wasm_profile_builds_onnx_within_its_default_budget(mlp, tmp_path):
    """The ONNX build for the browser profile, measured in Chromium (onnxruntime-web)."""
    out = tmp_path / "bundle"
    options = {**COMMON, "optimize_for": "wasm"}
    result = convert(
        mlp["model"], quantization="int8", output_dir=str(out),
        calibration_data=mlp["calibration_data"], eval_data=mlp["eval_data"], **options,
    )  # fmt: skip
    report = result.report
    assert result.passed and report["target"]["profile"] == "browser-wasm"
    assert report["size"]["budget"]["met"] and report["size"]["budget"]["max_size_bytes"] == 10_000_000
    assert report["browser"]["backend"] == "wasm"
    assert report["latency"]["measured"].startswith("measured in the browser")
    assert report["gate"]["drop"] < 1.0  # uint8 x int8 static QDQ on a float MLP: a small, measured loss


def test_embedding_tables_are_stored_in_4_bits_when_only_that_fits(tmp_path):
    """A text-like model whose bytes are an 8000 x 256 embedding table: int8 (2.1 MB) and int4
    MatMul weights (8.2 MB: the table stays fp32) are over 1.5 MB; the int4 start that also
    stores the table block-wise (GatherBlockQuantized) fits and is chosen."""
    rng = np.random.default_rng(0)
    table = numpy_helper.from_array((rng.standard_normal((8000, 256)) * 0.1).astype(np.float32), "table")
    weight = numpy_helper.from_array((rng.standard_normal((256, 256)) / 16).astype(np.float32), "w")
    nodes = [
        helper.make_node("Gather", ["table", "ids"], ["e"], name="embed"),
        helper.make_node("MatMul", ["e", "w"], ["m"], name="fc"),
        helper.make_node("Tanh", ["m"], ["y"], name="act"),
    ]
    ids = helper.make_tensor_value_info("ids", TensorProto.INT64, ["batch", 16])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 16, 256])
    graph = helper.make_graph(nodes, "embed", [ids], [y], [table, weight])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(tmp_path / "embed.onnx"))
    np.savez(tmp_path / "ids.npz", ids=rng.integers(0, 8000, (64, 16)).astype(np.int64))
    data, out = str(tmp_path / "ids.npz"), tmp_path / "bundle"
    result = convert(
        str(tmp_path / "embed.onnx"), quantization="auto", max_size="1.5MB", output_dir=str(out),
        calibration_data=data, eval_data=data, **COMMON,
    )  # fmt: skip
    starts = result.report["search"]["base_points"]
    assert starts["int8"]["size_bytes"] > 1_500_000 and starts["int4-weight"]["size_bytes"] > 8_000_000
    assert starts["int4-weight+embeddings"]["size_bytes"] <= 1_500_000
    assert result.passed and artifact_bytes(out / "model.onnx") <= 1_500_000
    ops = {n.op_type for n in onnx.load(str(out / "model.onnx")).graph.node}
    assert {"GatherBlockQuantized", "MatMulNBits"} <= ops
    assert 0.0 < result.report["gate"]["drop"] <= 5.0  # measured: the 4-bit table costs some cosine
    assert any("GatherBlockQuantized" in note for note in result.report["notes"])


def test_a_binding_size_budget_orders_float_layers_by_bytes_not_time():
    """Two equally noisy layers: a conv-like one with few weights and many MACs, a MatMul-like one
    with many weights and few MACs. By time, the MatMul is cheaper to keep in float; by bytes,
    the conv is (10 k weights against 1 M), which is what a size budget needs."""
    from edgeport.quantize.search import promotion_order
    from edgeport.quantize.size_budget import size_binds, size_cost_function

    small = numpy_helper.from_array(np.zeros((100, 100), np.float32), "wa")
    big = numpy_helper.from_array(np.zeros((1000, 1000), np.float32), "wb")
    nodes = [
        helper.make_node("MatMul", ["x", "wa"], ["a"], name="na"),
        helper.make_node("MatMul", ["x", "wb"], ["b"], name="nb"),
    ]
    model = helper.make_model(helper.make_graph(nodes, "g", [], [], [small, big]))
    plan = PrecisionPlan(scheme="int4-weight", profile="test", details={})
    plan.layers = {
        "a": LayerPrecision("int4-weight", "MatMul", ["na"]),
        "b": LayerPrecision("int4-weight", "MatMul", ["nb"]),
    }
    sensitivity = {
        "a": LayerSensitivity("a", "MatMul", 20.0, macs=10_000_000),
        "b": LayerSensitivity("b", "MatMul", 20.0, macs=1_000_000),
    }
    by_time = promotion_order(sensitivity, plan, "fp32", lambda _l, p: 1.0 if p == "fp32" else 0.25)
    by_bytes = promotion_order(sensitivity, plan, "fp32", size_cost_function(model, plan, sensitivity))
    assert by_time == ["b", "a"] and by_bytes == ["a", "b"]
    # Bytes decide only when the fp32 model itself is over the budget.
    assert size_binds(6_000_000, 1_000_000) and not size_binds(900_000, 1_000_000) and not size_binds(6_000_000, None)


def test_auto_on_webgpu_starts_from_int4_weights(mlp, tmp_path):
    """browser-webgpu runs no int8 scheme: auto starts from int4 weights instead of refusing, under
    the profile's default 10 MB budget (a warning only, and the 6.3 MB fp32 model fits it)."""
    out = tmp_path / "bundle"
    options = {**COMMON, "optimize_for": "webgpu"}
    result = convert(
        mlp["model"], quantization="auto", output_dir=str(out),
        calibration_data=mlp["calibration_data"], eval_data=mlp["eval_data"], **options,
    )  # fmt: skip
    search = result.report["search"]
    assert list(search["base_points"]) == ["int4-weight"] and result.passed
    assert search["size_budget"]["source"] == "profile browser-webgpu" and search["size_budget"]["met"]
    # Timed on ONNX Runtime's CPU provider here, int4 weights ran slower than fp32, so the float
    # model (within the default budget) is returned: a CPU figure, not WebGPU's (no WebBackend yet).
    assert search["float_fallback"] in (None, "speed")
    start = search["base_points"]["int4-weight"]
    assert start["size_bytes"] < 1_000_000 and 0.0 < start["drop"] <= 5.0


def test_both_budgets_missed_names_both(mlp, tmp_path):
    with pytest.raises(GateFailed, match="accuracy gate failed") as info:
        convert(
            mlp["model"], quantization="int8", max_size="1MB", output_dir=str(tmp_path / "bundle"),
            calibration_data=mlp["calibration_data"], eval_data=mlp["eval_data"],
            **{**COMMON, "max_accuracy_drop": 0.0},
        )  # fmt: skip
    assert info.value.exit_code == 3 and "size budget missed too: artifact" in info.value.hint
