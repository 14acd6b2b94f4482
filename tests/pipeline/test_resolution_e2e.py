"""Profile resolution seen end to end: what was asked, what was done, and honest latency labels."""

from __future__ import annotations

from edgeport.api import convert
from tests.conftest import factory


def test_int8_on_metal_becomes_fp16_with_a_decision_and_emulated_latency(tmp_path):
    result = convert(
        factory("make_tiny"),
        quantization="int8",
        optimize_for="metal",
        input_shape="1,3,16,16",
        output_dir=str(tmp_path / "metal"),
        latency_runs=5,
    )
    report = result.report
    assert report["target"]["quantization"] == "int8" and report["target"]["scheme"] == "fp16"
    decision = next(d for d in report["decisions"] if d["asked"].startswith("--quantization int8"))
    assert "fp16" in decision["done"] and "Neural Engine" in decision["why"]
    # CoreMLExecutionProvider does not exist on this host: the latency must not pass for the device's.
    assert report["latency"]["measured"].startswith("emulated")


def test_int8_on_x86_is_kept_and_measured_on_the_target_runtime(tmp_path):
    result = convert(
        factory("make_tiny"),
        quantization="int8",
        optimize_for="x86-avx512-vnni",
        input_shape="1,3,16,16",
        output_dir=str(tmp_path / "x86"),
        latency_runs=5,
    )
    report = result.report
    assert report["target"]["scheme"] == "int8"
    assert not any(d["asked"].startswith("--quantization") for d in report["decisions"])
    assert report["latency"]["measured"].startswith("measured on the target")
