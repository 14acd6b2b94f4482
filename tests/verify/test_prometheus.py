"""Serving metrics: the runtime's LatencyHistogram and ``edgeport verify --metrics-out FILE.prom``,
parsed back with prometheus_client's own parser."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from prometheus_client.parser import text_string_to_metric_families

from edgeport.api import convert
from edgeport.cli.main import main
from edgeport.runtime.metrics import LATENCY_BUCKETS_S, LatencyHistogram, prometheus_collector, render_exposition


def _families(text: str) -> dict:
    return {f.name: f for f in text_string_to_metric_families(text)}


def _series(family, **labels) -> dict[str, float]:
    """Sample name (+ le) -> value of the samples of ``family`` with ``labels``."""
    found = {}
    for s in family.samples:
        if all(s.labels.get(k) == v for k, v in labels.items()):
            found[s.name + (f"@{s.labels['le']}" if "le" in s.labels else "")] = s.value
    return found


def test_histogram_renders_what_it_recorded():
    values = [0.00005, 0.0002, 0.0002, 0.0009, 0.003, 0.7, 12.0]
    hist = LatencyHistogram(labels={"model": 'a "quoted"\nname', "target": "onnx/cpu", "variant": "int8"})
    for v in values:
        hist.observe(v)
    with hist.time():
        pass
    family = _families(hist.render())["edgeport_inference_latency_seconds"]
    assert family.type == "histogram"
    got = _series(family, model='a "quoted"\nname')
    everything = [*values, hist.values[-1]]
    for bound in LATENCY_BUCKETS_S:
        assert got[f"edgeport_inference_latency_seconds_bucket@{bound!r}"] == sum(v <= bound for v in everything)
    assert got["edgeport_inference_latency_seconds_bucket@+Inf"] == 8
    assert got["edgeport_inference_latency_seconds_count"] == 8
    assert got["edgeport_inference_latency_seconds_sum"] == pytest.approx(sum(everything))


def test_prometheus_client_serves_the_same_histogram():
    from prometheus_client import CollectorRegistry, generate_latest

    ours = LatencyHistogram(labels={"model": "m", "target": "onnx/x86", "variant": "int8"})
    other = LatencyHistogram(labels={"model": "m", "target": "onnx/x86", "variant": "fp32"})
    ours.observe_ns([150_000, 300_000, 2_000_000])
    other.observe_ns([600_000])
    registry = CollectorRegistry()
    registry.register(prometheus_collector([ours, other]))
    served = _families(generate_latest(registry).decode())["edgeport_inference_latency_seconds"]
    written = _families(render_exposition([ours, other]))["edgeport_inference_latency_seconds"]
    for variant in ("int8", "fp32"):
        assert _series(served, variant=variant) == pytest.approx(_series(written, variant=variant))
    assert _series(served, variant="int8")["edgeport_inference_latency_seconds_count"] == 3


def test_verify_metrics_out_matches_the_measured_runs(tiny_files, tmp_path):
    bundle = convert(
        str(tiny_files["pt2"]),
        quantization="int8",
        optimize_for="generic-cpu",
        calibration_data=str(tiny_files["data"]),
        eval_data=str(tiny_files["data"]),
        output_dir=str(tmp_path / "bundle"),
        latency_runs=10,
    ).bundle_dir
    prom = tmp_path / "out" / "verify.prom"
    result = CliRunner().invoke(main, ["verify", str(bundle), "--runs", "37", "--metrics-out", str(prom)])
    assert result.exit_code == 0, result.output
    report = json.loads(next(Path(bundle).glob("report.verify-*.json")).read_text())
    latency, loads = report["verification"]["latency"], report["verification"]["load_time_s"]
    families = _families(prom.read_text())
    histogram = families["edgeport_inference_latency_seconds"]
    for role, variant in (("artifact", report["target"]["scheme"]), ("reference", "fp32")):
        labels = {"model": "tiny", "target": "onnx/generic-cpu", "variant": variant}
        got = _series(histogram, **labels)
        samples = np.asarray(latency[role]["samples_ms"]) / 1e3  # every run: 37 <= 400 are kept
        assert len(samples) == 37 and got["edgeport_inference_latency_seconds_count"] == 37
        assert got["edgeport_inference_latency_seconds_sum"] == pytest.approx(samples.sum(), rel=1e-3)
        for bound in LATENCY_BUCKETS_S:
            assert got[f"edgeport_inference_latency_seconds_bucket@{bound!r}"] == int((samples <= bound).sum())
        load = _series(families["edgeport_model_load_seconds"], **labels)["edgeport_model_load_seconds"]
        assert load == pytest.approx(loads[role])
    peak = families["edgeport_model_peak_memory_bytes"].samples[0]
    assert peak.labels["variant"] == report["target"]["scheme"] and 10e6 < peak.value < 4e9


def test_text_needs_no_prometheus_client_and_the_export_names_the_extra(monkeypatch):
    import sys

    for name in ("prometheus_client", "prometheus_client.core", "prometheus_client.registry"):
        monkeypatch.setitem(sys.modules, name, None)  # as if not installed
    hist = LatencyHistogram(help='calls "quoted" \\ and\nmore', labels={"variant": "int8"})
    hist.observe(0.001)
    text = hist.render()
    assert '# HELP edgeport_inference_latency_seconds calls "quoted" \\\\ and\\nmore' in text
    assert 'edgeport_inference_latency_seconds_bucket{variant="int8",le="0.001"} 1' in text
    with pytest.raises(ImportError, match=r"edgeport\[serve\]"):
        prometheus_collector([hist])
    monkeypatch.undo()
    assert _families(text)["edgeport_inference_latency_seconds"].documentation == 'calls "quoted" \\ and\nmore'
