"""Batch and thread tuning through edgeport.convert: report, report.html and manifest (small grids)."""

from __future__ import annotations

import json

import pytest

from edgeport.api import convert


def _convert(tiny_files, tmp_path, name: str, **options):
    return convert(
        str(options.pop("model", tiny_files["pt2"])),
        output_format="onnx",
        quantization="int8-dynamic",
        optimize_for="generic-cpu",
        calibration_data=str(tiny_files["data"]),
        eval_data=str(tiny_files["data"]),
        output_dir=str(tmp_path / name),
        latency_runs=8,
        warmup_runs=2,
        **options,
    )


@pytest.mark.parametrize(("target", "met"), [(10_000.0, True), (1e-6, False)])
def test_throughput_objective_recommends_a_point_within_the_target(tiny_files, tmp_path, target, met):
    result = _convert(
        tiny_files, tmp_path, f"t{met}", objective="throughput", batch_sizes="1,4", threads="1,2", max_latency_ms=target
    )
    tuning = result.report["tuning"]
    measured = [p for p in tuning["points"] if "artifact" in p]
    assert [(p["batch"], p["threads"]) for p in measured] == [(1, 1), (4, 1), (1, 2), (4, 2)]
    chosen = tuning["chosen"]
    assert chosen["met"] is met
    if met:  # generous: every point is within it, so the highest throughput wins
        assert chosen["throughput_per_s"] == max(p["artifact"]["throughput_per_s"] for p in measured)
    else:  # impossible: none met it, the lowest p99 is recommended, never nothing
        assert chosen["p99_ms"] == min(p["artifact"]["p99_ms"] for p in measured)
        assert "no point met" in chosen["why"]
    manifest = json.loads((result.bundle_dir / "manifest.json").read_text())
    assert manifest["recommended_session_options"] == {
        "batch": chosen["batch"],
        "intra_op_num_threads": chosen["threads"],
    }
    fidelity = tuning["fidelity_at_batch"]
    assert fidelity["batch"] == chosen["batch"] and fidelity["batch_1"]["samples"] == 48
    html = (result.bundle_dir / "report.html").read_text()
    assert "Batch and thread tuning" in html and html.count("<polyline") >= 2
    assert ("no point met it" in html) is (not met)


def test_latency_objective_is_unchanged(tiny_files, tmp_path):
    result = _convert(tiny_files, tmp_path, "plain")
    assert result.report["tuning"] is None
    assert json.loads((result.bundle_dir / "manifest.json").read_text())["recommended_session_options"] is None


def test_fixed_batch_model_skips_other_batches_with_the_reason(tiny_files, tmp_path):
    result = _convert(
        tiny_files, tmp_path, "fixed", model=tiny_files["torchscript"], input_shape="2,3,16,16", batch_sizes="1,2,8"
    )
    points = {p["batch"]: p for p in result.report["tuning"]["points"]}
    assert "fixed at 2" in points[1]["skipped"] and "fixed at 2" in points[8]["skipped"]
    assert points[2]["artifact"]["runs"] == 8 and result.report["tuning"]["chosen"]["batch"] == 2
    assert "only batch 2" in result.report["tuning"]["fidelity_at_batch"]["skipped"]
