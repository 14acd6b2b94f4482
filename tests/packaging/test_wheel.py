"""The built wheel in a fresh venv with no extra: it converts an ONNX model for ONNX Runtime, and a
PyTorch input ends in one line naming the extra to install. An ONNX-to-ONNX conversion imports
neither torch nor TensorFlow, even where they are installed.

The fresh venv is installed from PyPI with ``-c constraints.txt`` (about 15 s with a warm pip
cache); the tests are skipped, with the reason, when PyPI cannot be reached.
"""

from __future__ import annotations

import contextlib
import io
import json
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from tests.packaging.fresh import REPO, build_wheel, fresh_env, make_venv, run

EXAMPLES = REPO / "examples"
# What the extras install: none of it may be present, or imported, in an ONNX-only conversion.
HEAVY = ("torch", "tensorflow", "keras", "transformers", "optimum", "coremltools", "onnx2tf", "ai_edge_litert")


@pytest.fixture(scope="module")
def fp32_onnx(tmp_path_factory) -> Path:
    """The example Fashion-MNIST CNN (examples/fashion_cnn.pt2) exported to an fp32 ONNX file."""
    torch = pytest.importorskip("torch")
    path = tmp_path_factory.mktemp("fp32") / "fashion_cnn_fp32.onnx"
    program = torch.export.load(EXAMPLES / "fashion_cnn.pt2")
    with contextlib.redirect_stdout(io.StringIO()):  # the exporter's progress lines
        torch.onnx.export(
            program, (torch.zeros(1, 1, 28, 28),), path, dynamo=True, external_data=False, input_names=["x"]
        )
    return path


@pytest.fixture(scope="module")
def base_venv(tmp_path_factory) -> Path:
    """A fresh venv holding the wheel built from this checkout, installed with no extra."""
    root = tmp_path_factory.mktemp("wheel")
    return make_venv(root, [build_wheel(root)])


def test_base_install_has_no_extra(base_venv: Path, tmp_path: Path) -> None:
    """edgeport comes from the installed wheel, and no extra's package is there (`import torch` fails)."""
    probe = (
        "import importlib.util, json, edgeport; "
        f"print(json.dumps([edgeport.__file__, [m for m in {HEAVY!r} if importlib.util.find_spec(m)]]))"
    )
    found = run([base_venv / "bin" / "python", "-c", probe], tmp_path, fresh_env())
    assert found.returncode == 0, found.stderr
    location, heavy = json.loads(found.stdout)
    assert Path(location).is_relative_to(base_venv), location
    assert heavy == []
    torch = run([base_venv / "bin" / "python", "-c", "import torch"], tmp_path, fresh_env())
    assert torch.returncode != 0 and "No module named 'torch'" in torch.stderr


def test_base_install_converts_onnx_for_onnxruntime(base_venv: Path, fp32_onnx: Path, tmp_path: Path) -> None:
    """int8 for ONNX Runtime from an fp32 ONNX file, calibrated and evaluated on real data: the
    artifact runs in onnxruntime and the report gives the accuracy, latency and size it measured."""
    bundle = tmp_path / "bundle"
    done = run(
        [
            base_venv / "bin" / "edgeport",
            "convert",
            "--input_model",
            fp32_onnx,
            "--output_format",
            "onnx",
            "--quantization",
            "int8",
            "--calibration_data",
            EXAMPLES / "fashion_mnist_calib.npz",
            "--eval_data",
            EXAMPLES / "fashion_mnist_test_1k.npz",
            "--output_dir",
            bundle,
        ],
        tmp_path,
        fresh_env(),
    )
    assert done.returncode == 0, done.stdout + done.stderr

    session = ort.InferenceSession(str(bundle / "model.onnx"), providers=["CPUExecutionProvider"])
    (output,) = session.run(None, {session.get_inputs()[0].name: np.zeros((1, 1, 28, 28), np.float32)})
    assert output.shape == (1, 10)

    report = json.loads((bundle / "report.json").read_text())
    assert report["status"] == "passed"
    assert report["target"]["format"] == "onnx" and report["target"]["quantization"] == "int8"
    assert report["data"]["eval"]["samples"] == 1000 and not report["data"]["eval"]["synthetic"]
    assert report["fidelity"]["samples"] == 1000
    assert 80 < report["fidelity"]["artifact_top1"] <= 100  # top-1 on 1,000 labelled test images
    assert report["latency"]["reference"]["p50_ms"] > 0 and report["latency"]["reference"]["runs"] > 0
    assert report["size"]["artifact_bytes"] < report["size"]["reference_bytes"]
    assert report["environment"]["libraries"]["torch"] == "not installed"


def test_torch_input_without_the_extra_names_the_pip_install(base_venv: Path, tmp_path: Path) -> None:
    """A .pt2 input in the base install: exit 2 and one error line with the pip install that fixes it."""
    done = run(
        [base_venv / "bin" / "edgeport", "convert", "--input_model", EXAMPLES / "fashion_cnn.pt2"],
        tmp_path,
        fresh_env(),
    )
    assert done.returncode == 2, done.stdout + done.stderr
    errors = [line for line in (done.stdout + done.stderr).splitlines() if "error" in line.lower()]
    assert errors == [
        "edgeport: error: A PyTorch model needs the 'torch' extra, which is not installed "
        "(hint: pip install 'edgeport[torch]')"
    ]
    assert "Traceback" not in done.stderr


def test_onnx_conversion_imports_no_torch_or_tensorflow(fp32_onnx: Path, tmp_path: Path) -> None:
    """In this venv, where torch and TensorFlow are installed, an ONNX-to-ONNX int8 conversion
    imports neither (onnxruntime's tools package imports torch whenever it finds it)."""
    script = (
        "import json, sys\n"
        "from edgeport.api import convert\n"
        f"convert({str(fp32_onnx)!r}, output_format='onnx', quantization='int8', "
        f"calibration_data={str(EXAMPLES / 'fashion_mnist_calib.npz')!r}, output_dir={str(tmp_path / 'bundle')!r})\n"
        f"print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r}))))\n"
    )
    done = run([sys.executable, "-c", script], tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []
