"""The card's command with a device name, end to end (one conversion), and the bundle verified
here: the decisions cite the device and its engine, the label says this host is not the device."""

from __future__ import annotations

import json
import subprocess
import sys

from edgeport.verify.bundle_check import verify_bundle
from tests.conftest import EXAMPLES, REPO


def test_tflite_int8_for_iphone_15_pro(tmp_path):
    """python convert.py --input_model examples/fashion_cnn.pt2 --output_format tflite
    --quantization int8 --optimize_for "iPhone 15 Pro" """
    out = tmp_path / "iphone"
    command = [sys.executable, str(REPO / "convert.py"), "--input_model", str(EXAMPLES / "fashion_cnn.pt2")]
    command += ["--output_format", "tflite", "--quantization", "int8", "--optimize_for", "iPhone 15 Pro"]
    command += ["--latency_runs", "20", "--output_dir", str(out)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=900, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads((out / "report.json").read_text())
    device = next(d for d in report["decisions"] if d["asked"] == "--optimize_for iPhone 15 Pro")
    assert device["done"] == "iphone-15-pro-gpu"
    assert device["why"].startswith("device iPhone 15 Pro (Apple A17 Pro): tflite -> GPU (Apple 6-core GPU)")
    assert "engine apple-metal" in device["why"] and "iphone-15-pro:cpu (arm64-neon: none, fp16, int8" in device["why"]
    scheme = next(d for d in report["decisions"] if d["asked"] == "--quantization int8 for tflite")
    assert scheme["done"] == "int8-weight, fp16 compute" and "iphone-15-pro-gpu" in scheme["why"]
    assert report["target"]["scheme"] == "int8-weight" and report["target"]["profile"] == "iphone-15-pro-gpu"
    # The CLI prints both decisions.
    assert "device iPhone 15 Pro (Apple A17 Pro): tflite -> GPU" in " ".join(result.stdout.split())
    # The GPU delegate is not here: the conversion's label says emulated, not measured.
    assert report["latency"]["measured"].startswith("emulated")
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["profile"]["device"]["id"] == "iphone-15-pro" and manifest["profile"]["accelerator"] == "gpu"
    # Re-run here: measured on LiteRT, qualified because this host's CPU is not the device's GPU.
    verified = verify_bundle(out, runs=20, warmup=2)
    assert verified["latency"]["measured"].endswith("host's CPU, not the device's Apple 6-core GPU")
    assert verified["latency"]["artifact"]["p50_ms"] > 0
