"""Interrupts and faults: Ctrl-C or SIGTERM in the middle of a conversion, a converter child
that hangs, a full disk. Each ends with one line, a non-zero exit code, no bundle, no
temporary folder left behind and no converter process still running."""

from __future__ import annotations

import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from edgeport.core.errors import ConversionError
from edgeport.formats.tflite import onnx2tf_run as tflite_out
from tests.conftest import REPO

# A small valid ONNX model (tests/data/make_bad_inputs.py): it reaches each stage in seconds.
MODEL_ARGS = ["--input_model", str(REPO / "tests" / "data" / "bad" / "valid.onnx"), "--quiet", "--latency_runs", "5"]


def _start(args: list[str], folder: Path, env: dict[str, str] | None = None, preexec_fn=None) -> subprocess.Popen:
    """Start ``convert.py args`` with its temporary files under ``folder/tmp`` (so that leftovers show)."""
    (folder / "tmp").mkdir(exist_ok=True)
    environment = {**os.environ, "PYTHONPATH": str(REPO), "TMPDIR": str(folder / "tmp"), **(env or {})}
    return subprocess.Popen(
        [sys.executable, str(REPO / "convert.py"), *args],
        cwd=folder,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: _default_sigint(preexec_fn),
    )


def _default_sigint(then=None) -> None:
    """In the child before exec: SIGINT back to its default. A process started with SIGINT
    ignored keeps it ignored (Python then installs no KeyboardInterrupt handler, as under
    nohup), and some library in the pytest process ignores it by the time these tests run."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})
    if then is not None:
        then()


def _converter_children(folder: Path) -> list[psutil.Process]:
    """Converter processes (the onnx2tf child) whose files are under ``folder``."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if "onnx2tf_child" in cmdline and str(folder) in cmdline:
            found.append(proc)
    return found


def _assert_clean(folder: Path, out: Path) -> None:
    assert not out.exists(), f"bundle left behind: {list(out.iterdir()) if out.is_dir() else out}"
    assert not [p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")], "partial bundle left"
    # edgeport's work folders are named edgeport-*; libraries keep their own caches there
    work = [p.name for p in (folder / "tmp").iterdir() if p.name.startswith("edgeport")]
    assert not work, f"temporary work folders left: {work}"


def _one_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("edgeport: error: ") and "Traceback" not in stderr, stderr
    return lines[0]


@pytest.mark.parametrize(("signum", "exit_code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_during_conversion_leaves_nothing(signum, exit_code, tmp_path):
    """The signal arrives while the TFLite converter child runs (the bundle folder is half
    written): the parent removes it, kills the child, and exits 128 + signal."""
    out = tmp_path / "bundle"
    proc = _start(
        [*MODEL_ARGS, "--output_format", "tflite", "--quantization", "int8", "--output_dir", str(out)], tmp_path
    )
    deadline = time.monotonic() + 120
    while not _converter_children(tmp_path) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert proc.poll() is None, proc.communicate()[1]
    assert [p for p in tmp_path.iterdir() if p.name.startswith(".bundle.partial-")], "the bundle was being written"
    time.sleep(1.0)
    proc.send_signal(signum)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == exit_code, stderr
    assert _one_line(stderr) == f"edgeport: error: interrupted ({signal.Signals(signum).name}); nothing was written"
    _assert_clean(tmp_path, out)
    assert not _converter_children(tmp_path), "the converter child outlived edgeport"


def test_sigterm_during_in_process_work_leaves_nothing(tmp_path):
    """SIGTERM while edgeport itself computes (an ONNX int8 bundle, in its long latency
    measurement): the same one line, exit 143, and no bundle."""
    out = tmp_path / "bundle"
    args = [*MODEL_ARGS, "--quantization", "int8", "--latency_runs", "1000000", "--output_dir", str(out)]
    proc = _start(args, tmp_path)
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:
        partial = [p for p in tmp_path.iterdir() if p.name.startswith(".bundle.partial-")]
        if partial and (partial[0] / "precision_plan.json").exists():  # quantized; verifying now
            break
        time.sleep(0.1)
    assert proc.poll() is None, proc.communicate()[1]
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 143, stderr
    assert _one_line(stderr) == "edgeport: error: interrupted (SIGTERM); nothing was written"
    _assert_clean(tmp_path, out)


def test_hanging_converter_child_is_killed_after_the_timeout(tmp_path, monkeypatch):
    """A child that never returns (here: a sleep in place of onnx2tf) is killed with its process
    group at the timeout, and the error says so."""
    real_popen = subprocess.Popen
    started: list[subprocess.Popen] = []

    def hanging_child(args, **kwargs):
        proc = real_popen([sys.executable, "-c", "import time; time.sleep(600)"], **kwargs)
        started.append(proc)
        return proc

    monkeypatch.setattr(tflite_out.subprocess, "Popen", hanging_child)
    request = {"result": str(tmp_path / "result.json")}
    start = time.monotonic()
    with pytest.raises(ConversionError, match=r"timed out after 1 s"):
        tflite_out.run_child(request, tmp_path, timeout_s=1.0)
    assert time.monotonic() - start < 30
    assert started and started[0].poll() is not None  # killed, not left sleeping


def test_converter_timeout_from_the_environment_ends_the_cli_with_exit_4(tmp_path):
    """EDGEPORT_CONVERTER_TIMEOUT bounds the real onnx2tf child: exit 4, one line, nothing left."""
    out = tmp_path / "bundle"
    proc = _start(
        [*MODEL_ARGS, "--output_format", "tflite", "--quantization", "fp16", "--output_dir", str(out)],
        tmp_path,
        env={"EDGEPORT_CONVERTER_TIMEOUT": "0.5"},
    )
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 4
    assert "timed out after 0.5 s" in _one_line(stderr)
    _assert_clean(tmp_path, out)
    assert not _converter_children(tmp_path)


def _file_size_limit(limit: int):
    def apply() -> None:  # in the child: writes past `limit` bytes fail with EFBIG (SIGXFSZ ignored)
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


def test_full_disk_file_size_limit(tmp_path):
    """A file size limit (RLIMIT_FSIZE, unprivileged) below the size of the model files (1.5 KB):
    the write fails with EFBIG as on a full disk; one line, exit 2, no partial bundle."""
    out = tmp_path / "bundle"
    proc = _start(
        [*MODEL_ARGS, "--quantization", "none", "--output_dir", str(out)],
        tmp_path,
        preexec_fn=_file_size_limit(1000),
    )
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 2, stderr
    line = _one_line(stderr)
    assert "cannot write" in line and "File too large" in line and "free disk space" in line
    _assert_clean(tmp_path, out)


def test_full_disk_tmpfs(tmp_path):
    """The output folder on a 16 KB tmpfs (needs root and mount; the bundle with its HTML report is
    larger): ENOSPC, one line, exit 2, the tmpfs left empty."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if shutil.which("mount") is None or os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root and mount(8); the RLIMIT_FSIZE test covers a full disk")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16k", "tmpfs", str(disk)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"tmpfs mount not permitted here: {mounted.stderr.decode().strip()}")
    try:
        out = disk / "bundle"
        proc = _start([*MODEL_ARGS, "--quantization", "none", "--output_dir", str(out)], tmp_path)
        _, stderr = proc.communicate(timeout=120)
        assert proc.returncode == 2, stderr
        line = _one_line(stderr)
        assert "cannot write" in line and "No space left on device" in line
        assert not list(disk.iterdir()), "partial files left on the full disk"
        _assert_clean(tmp_path, out)
    finally:
        subprocess.run(["umount", str(disk)], check=False)
