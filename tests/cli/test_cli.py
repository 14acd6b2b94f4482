"""The CLI: convert.py, the edgeport console script, bad inputs (exit 2, one line, nothing written)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from edgeport.cli.main import main
from tests.conftest import EXAMPLES, REPO, factory

VENV_BIN = Path(sys.executable).parent


def _run_cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        args, cwd=cwd, capture_output=True, text=True, timeout=600, env={**os.environ, "PYTHONPATH": str(REPO)}
    )


def test_convert_py_writes_the_default_bundle_folder(tmp_path):
    result = _run_cli(
        [
            sys.executable,
            str(REPO / "convert.py"),
            "--input_model",
            str(EXAMPLES / "fashion_cnn.pt2"),
            "--output_format",
            "onnx",
            "--quantization",
            "int8",
            "--optimize_for",
            "x86-avx2",
            "--calibration_data",
            str(EXAMPLES / "fashion_mnist_calib.npz"),
            "--eval_data",
            str(EXAMPLES / "fashion_mnist_test_1k.npz"),
            "--eval_samples",
            "200",
            "--latency_runs",
            "20",
            "--max_accuracy_drop",
            "1.0",
        ],
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    bundle = tmp_path / "out" / "fashion_cnn-onnx-int8-x86-avx2"
    assert (bundle / "model.onnx").is_file()
    report = json.loads((bundle / "report.json").read_text())
    assert report["precision_plan"]["details"]["reduce_range"] is True  # the avx2 profile's scheme
    assert "top-1 accuracy" in result.stdout and "faster" in result.stdout
    assert "done quantize" in result.stderr  # progress goes to stderr


def test_console_script_same_job_and_gate_exit_code(tmp_path):
    script = VENV_BIN / "edgeport"
    if not script.exists():
        pytest.skip("console script not installed in this environment")
    out = tmp_path / "gated"
    result = _run_cli(
        [
            str(script),
            "convert",
            "--input_model",
            factory("make_feature_net"),
            "--input_shape",
            "1,3,12,12",
            "--quantization",
            "int8",
            "--max_accuracy_drop",
            "0",
            "--output_dir",
            str(out),
            "--latency_runs",
            "5",
        ],
        cwd=tmp_path,
    )
    assert result.returncode == 3, result.stderr
    assert "accuracy gate failed" in result.stderr and "Traceback" not in result.stderr
    assert json.loads((out / "manifest.json").read_text())["status"] == "failed"


def _bad(args: list[str], tmp_path: Path) -> str:
    """Run convert in-process with bad input; assert exit 2, one line, nothing written."""
    out = tmp_path / "bundle"
    runner = CliRunner()
    result = runner.invoke(main, ["convert", *args, "--output_dir", str(out), "--quiet"])
    assert result.exit_code == 2, (result.output, result.exception)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("edgeport: error:") and "Traceback" not in result.output
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".bundle")]
    return lines[0]


def test_missing_file(tmp_path):
    assert "not found" in _bad(["--input_model", str(tmp_path / "nope.onnx")], tmp_path)


def test_directory_instead_of_file(tmp_path):
    (tmp_path / "model_dir").mkdir()
    assert "is a directory" in _bad(["--input_model", str(tmp_path / "model_dir")], tmp_path)


def test_wrong_extension(tmp_path):
    path = tmp_path / "model.txt"
    path.write_text("hello")
    assert "unsupported file type" in _bad(["--input_model", str(path)], tmp_path)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.pt"
    path.write_bytes(b"")
    assert "empty" in _bad(["--input_model", str(path)], tmp_path)


def test_corrupt_onnx(tmp_path):
    path = tmp_path / "garbage.onnx"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    assert "ONNX" in _bad(["--input_model", str(path)], tmp_path)


def test_truncated_onnx(tiny_files, tmp_path):
    data = tiny_files["onnx"].read_bytes()
    path = tmp_path / "truncated.onnx"
    path.write_bytes(data[: len(data) // 2])
    _bad(["--input_model", str(path)], tmp_path)


def test_truncated_torch_file(tiny_files, tmp_path):
    data = tiny_files["pt2"].read_bytes()
    path = tmp_path / "truncated.pt2"
    path.write_bytes(data[: len(data) // 3])
    _bad(["--input_model", str(path)], tmp_path)


@pytest.mark.parametrize("shape", ["1,3,a,16", "0,3,16,16", "x:", "1,-3"])
def test_bad_input_shape(shape, tmp_path):
    assert "--input_shape" in _bad(["--input_model", factory("make_tiny"), "--input_shape", shape], tmp_path)


def test_pickle_refused_without_flag(tiny_files, tmp_path):
    line = _bad(["--input_model", str(tiny_files["pickle"]), "--input_shape", "1,3,16,16"], tmp_path)
    assert "--allow-pickle" in line and "arbitrary code" in line


def test_malicious_pickle_does_not_run(tmp_path):
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    import torch

    path = tmp_path / "evil.pt"
    torch.save({"weights": Exploit()}, path)
    _bad(["--input_model", str(path), "--input_shape", "1,3,16,16"], tmp_path)
    assert not marker.exists()


def test_calibration_data_of_wrong_shape(tmp_path):
    data = tmp_path / "wrong.npz"
    np.savez(data, x=np.zeros((4, 3, 9, 9), np.float32))
    line = _bad(
        ["--input_model", factory("make_tiny"), "--input_shape", "1,3,16,16", "--calibration_data", str(data)], tmp_path
    )
    assert "do not fit" in line


def test_nan_data(tmp_path):
    data = tmp_path / "nan.npz"
    x = np.zeros((4, 3, 16, 16), np.float32)
    x[0, 0, 0, 0] = np.nan
    np.savez(data, x=x)
    assert "NaN" in _bad(
        ["--input_model", factory("make_tiny"), "--input_shape", "1,3,16,16", "--eval_data", str(data)], tmp_path
    )


def test_unknown_profile_and_format(tmp_path):
    assert "unknown device profile" in _bad(
        ["--input_model", factory("make_tiny"), "--input_shape", "1,3,16,16", "--optimize_for", "toaster"], tmp_path
    )
    assert "--output_format" in _bad(["--input_model", factory("make_tiny"), "--output_format", "onnx2"], tmp_path)


def test_existing_foreign_output_folder_is_not_overwritten(tmp_path):
    out = tmp_path / "bundle"
    out.mkdir()
    (out / "precious.txt").write_text("keep me")
    runner = CliRunner()
    result = runner.invoke(
        main,
        [
            "convert",
            "--input_model",
            factory("make_tiny"),
            "--input_shape",
            "1,3,16,16",
            "--output_dir",
            str(out),
            "--quiet",
        ],
    )
    assert result.exit_code == 2 and "refusing to overwrite" in result.stderr
    assert (out / "precious.txt").read_text() == "keep me"


def test_debug_shows_the_traceback(tmp_path):
    result = _run_cli(
        [sys.executable, str(REPO / "convert.py"), "--input_model", str(tmp_path / "missing.pt"), "--debug"],
        cwd=tmp_path,
    )
    assert result.returncode != 0 and "Traceback" in result.stderr


def test_profiles_commands():
    runner = CliRunner()
    listed = runner.invoke(main, ["profiles", "list"])
    assert listed.exit_code == 0 and "x86-avx512-vnni" in listed.output
    shown = runner.invoke(main, ["profiles", "show", "avx2"])
    assert shown.exit_code == 0 and "reduce_range" in shown.output
    detected = runner.invoke(main, ["profiles", "detect"])
    assert detected.exit_code == 0 and ":" in detected.output


def test_report_command_renders_html(example_int8, tmp_path):
    target = tmp_path / "r.html"
    result = CliRunner().invoke(main, ["report", str(example_int8.bundle_dir / "report.json"), "-o", str(target)])
    assert result.exit_code == 0
    assert "fashion_cnn" in target.read_text()
