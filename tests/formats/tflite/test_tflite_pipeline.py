"""The command users type, end to end: --output_format tflite through convert.py and the API."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import torch

from edgeport.api import convert
from edgeport.runtime.litert import LiteRTRunner
from tests.conftest import EXAMPLES, REPO

DATA = dict(
    calibration_data=str(EXAMPLES / "fashion_mnist_calib.npz"), eval_data=str(EXAMPLES / "fashion_mnist_test_1k.npz")
)


def test_headline_command_tflite_int8_for_metal(tmp_path):
    """python convert.py ... --output_format tflite --quantization int8 --optimize_for metal"""
    out = tmp_path / "metal"
    result = subprocess.run(
        [
            sys.executable,
            str(REPO / "convert.py"),
            "--input_model",
            str(EXAMPLES / "fashion_cnn.pt2"),
            "--output_format",
            "tflite",
            "--quantization",
            "int8",
            "--optimize_for",
            "metal",
            "--calibration_data",
            DATA["calibration_data"],
            "--eval_data",
            DATA["eval_data"],
            "--eval_samples",
            "300",
            "--latency_runs",
            "20",
            "--output_dir",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads((out / "report.json").read_text())
    # The GPU delegate computes in float: int8 activations become int8 weights, and the report says so.
    assert report["target"]["scheme"] == "int8-weight"
    decision = next(d for d in report["decisions"] if d["asked"].startswith("--quantization int8"))
    assert "int8-weight" in decision["done"]
    assert report["latency"]["measured"].startswith("emulated")
    assert "decision:" in result.stdout
    fidelity = report["fidelity"]
    assert fidelity["reference_top1"] - fidelity["artifact_top1"] <= 1.0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["runner"]["kind"] == "litert" and manifest["runner"]["kwargs"]["transposes"]["x"] == [0, 2, 3, 1]


def test_full_integer_tflite_of_the_example(tmp_path):
    result = convert(
        str(EXAMPLES / "fashion_cnn.pt2"),
        output_format="tflite",
        quantization="int8",
        optimize_for="cpu",
        output_dir=str(tmp_path / "int8"),
        latency_runs=30,
        **DATA,
    )
    fidelity = result.report["fidelity"]
    assert fidelity["samples"] == 1000
    assert fidelity["reference_top1"] - fidelity["artifact_top1"] <= 0.5
    assert result.artifact.suffix == ".tflite"
    assert (result.bundle_dir / "baseline_fp32.tflite").is_file()
    assert result.report["latency"]["reference_model"] == "baseline_fp32.tflite"
    assert result.report["latency"]["measured"].startswith("measured on the target")
    # The file runs in LiteRT as the manifest says to feed it.
    manifest = json.loads((result.bundle_dir / "manifest.json").read_text())
    runner = LiteRTRunner(result.artifact, **manifest["runner"]["kwargs"])
    data = np.load(EXAMPLES / "fashion_mnist_test_1k.npz")
    x = data["x"][:50, None].astype(np.float32) / 255.0
    predictions = np.concatenate([runner.run({"x": x[i : i + 1]})[0] for i in range(50)]).argmax(1)
    assert np.mean(predictions == data["y"][:50]) >= 0.85


def test_torchscript_source_to_tflite(tmp_path):
    from examples.fashion_cnn import FashionCNN

    model = FashionCNN()
    model.load_state_dict(torch.load(EXAMPLES / "fashion_cnn_state_dict.pt", weights_only=True))
    model.eval()
    path = tmp_path / "fashion_ts.pt"
    torch.jit.save(torch.jit.trace(model, torch.zeros(1, 1, 28, 28)), path)
    result = convert(
        str(path),
        output_format="tflite",
        quantization="int8",
        optimize_for="cpu",
        input_shape="1,1,28,28",
        output_dir=str(tmp_path / "ts"),
        eval_samples=300,
        latency_runs=10,
        **DATA,
    )
    assert result.report["model"]["form"] == "torchscript"
    fidelity = result.report["fidelity"]
    assert fidelity["reference_top1"] > 85 and fidelity["reference_top1"] - fidelity["artifact_top1"] <= 1.0
