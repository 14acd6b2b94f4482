"""Quiet by default (issue #21): TensorFlow, absl, oneDNN, onnx2tf, coremltools and ONNX Runtime
write nothing to the terminal; the CLI runs as a subprocess and its stderr holds only edgeport's
own lines (edgeport/core/quiet.py STDERR_PREFIXES: progress lines and ``edgeport:`` lines; the
summary is on stdout). Their messages go to the bundle's logs/runtime.log, listed in the manifest."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from edgeport.core.quiet import BUNDLE_LOG, STDERR_PREFIXES

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"


def run_cli(args: list[str], cwd: Path, *extra_env: tuple[str, str]) -> subprocess.CompletedProcess:
    env = {**os.environ, **dict(extra_env)}
    for name in ("TF_CPP_MIN_LOG_LEVEL", "EDGEPORT_DEBUG"):  # the defaults edgeport sets itself
        env.pop(name, None)
    return subprocess.run(
        [sys.executable, str(REPO / "convert.py"), *args],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=cwd,
        env=env,
    )


def foreign_lines(stderr: str) -> list[str]:
    """The stderr lines edgeport did not write."""
    return [line for line in stderr.splitlines() if line.strip() and not line.startswith(STDERR_PREFIXES)]


@pytest.fixture(scope="module")
def keras_file(tmp_path_factory) -> Path:
    """The digits CNN (tests/models_keras.py), untrained: its noise is TensorFlow's, not its weights'."""
    import keras

    from tests.models_keras import digits_layers

    path = tmp_path_factory.mktemp("quiet") / "digits.keras"
    keras.utils.set_random_seed(0)
    digits_layers(keras).save(path)
    return path


def _check_bundle(out: Path) -> dict:
    manifest = json.loads((out / "manifest.json").read_text())
    assert BUNDLE_LOG in manifest["files"]
    assert (out / BUNDLE_LOG).is_file()
    return json.loads((out / "report.json").read_text())


def test_keras_to_tflite_is_quiet(keras_file, tmp_path):
    """A TensorFlow (.keras) source converted to TFLite (onnx2tf and TensorFlow in a child
    process): TF's absl/oneDNN start-up lines stay off the terminal, in the bundle's log."""
    out = tmp_path / "tflite"
    run = run_cli(
        [
            "--input_model",
            str(keras_file),
            "--output_format",
            "tflite",
            "--quantization",
            "fp16",
            "--latency_runs",
            "5",
            "--output_dir",
            str(out),
        ],
        tmp_path,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert foreign_lines(run.stderr) == []
    assert re.search(r"^  done load model", run.stderr, re.M)  # the progress lines are still there
    assert "bundle:" in run.stdout
    report = _check_bundle(out)
    log = (out / BUNDLE_LOG).read_text()
    if "absl::InitializeLog" in log or "oneDNN" in log:  # TF wrote its start-up lines: into the log
        note = next(n for n in report["notes"] if n.startswith("runtime messages:"))
        assert BUNDLE_LOG in note


def test_coreml_is_quiet(tmp_path):
    """A Core ML conversion (coremltools' progress bars and warnings) writes only edgeport's lines."""
    pytest.importorskip("coremltools")
    out = tmp_path / "coreml"
    run = run_cli(
        [
            "--input_model",
            str(EXAMPLES / "fashion_cnn.pt2"),
            "--output_format",
            "coreml",
            "--optimize_for",
            "metal",
            "--eval_data",
            str(EXAMPLES / "fashion_mnist_test_1k.npz"),
            "--eval_samples",
            "64",
            "--latency_runs",
            "5",
            "--output_dir",
            str(out),
        ],
        tmp_path,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert foreign_lines(run.stderr) == []
    _check_bundle(out)


def test_broken_keras_is_one_line(tmp_path):
    """The symptom of issue #21: a broken .keras file gives exit 2 and one line, nothing of TF's before it."""
    broken = tmp_path / "broken.keras"
    broken.write_text("not a keras file\n")
    run = run_cli(["--input_model", str(broken), "--output_format", "onnx", "--quiet"], tmp_path)
    assert run.returncode == 2, run.stderr
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("edgeport: error: "), run.stderr
    # Without --quiet: the progress lines and the same one error line, nothing else.
    run = run_cli(["--input_model", str(broken), "--output_format", "onnx"], tmp_path)
    assert run.returncode == 2
    assert foreign_lines(run.stderr) == []
    assert sum(line.startswith("edgeport: error: ") for line in run.stderr.splitlines()) == 1
    assert not list(tmp_path.rglob("*.log"))  # no log left behind either


def test_debug_shows_the_libraries(tmp_path):
    """--debug hands the terminal back to the libraries (and shows tracebacks)."""
    broken = tmp_path / "broken.keras"
    broken.write_text("not a keras file\n")
    run = run_cli(["--input_model", str(broken), "--output_format", "onnx", "--debug"], tmp_path)
    assert run.returncode != 0
    assert "Traceback" in run.stderr


def test_onnx2tf_failure_hint_names_a_kept_log(tmp_path):
    """A failing onnx2tf child: the hint names a log file that still exists after the process ended."""
    out = tmp_path / "bundle"
    run = run_cli(
        [
            "--input_model",
            str(EXAMPLES / "fashion_cnn.pt2"),
            "--output_format",
            "tflite",
            "--quantization",
            "fp16",
            "--output_dir",
            str(out),
            "--quiet",
        ],
        tmp_path,
        ("EDGEPORT_CONVERTER_TIMEOUT", "0.5"),  # the child cannot even import TensorFlow in that time
    )
    assert run.returncode != 0
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, run.stderr
    found = re.search(r"log: (\S+?\.log)\b", lines[0])
    assert found, lines[0]
    kept = Path(found.group(1))
    assert kept.is_file()
    assert kept == tmp_path / "bundle.failed.log"
    assert not out.exists()


def test_python_api_import_of_tensorflow_is_silent(tmp_path):
    """From the Python API (no capture): importing TensorFlow through edgeport writes nothing on stderr."""
    code = "from edgeport.frontends.tf import import_tensorflow; import_tensorflow()"
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "EDGEPORT_DEBUG")}
    run = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=tmp_path, env=env
    )
    assert run.returncode == 0 and run.stderr == "", run.stderr


def test_capture_counts_messages_not_progress_bars(capfd):
    """What C++ code writes on fd 2 goes to the log, not the terminal; a child's output joins it
    without its progress bars; the note counts the messages."""
    from edgeport.core import quiet

    with quiet.captured() as capture:
        os.write(2, b"W0000 a C++ warning\n")
        quiet.append_log("child", "a child's warning\n 10%|## | 1/10 [00:01<00:02, 3.1it/s]\n")
        print("  done step (0.1 s)", file=quiet.terminal())
        note = quiet.runtime_note()
        assert capture.lines() == ["W0000 a C++ warning", "--- child ---", "a child's warning", "--- end of child ---"]
        log = capture.path
    assert note.startswith("runtime messages: 2 line(s)") and "a C++ warning" in note
    assert not log.exists() and quiet.active() is None
    err = capfd.readouterr().err
    assert "C++ warning" not in err and "child's warning" not in err and "done step" in err
