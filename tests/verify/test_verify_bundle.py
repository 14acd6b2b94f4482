"""``edgeport verify``: manifest checks, local re-verification, and runs over a real SSH server."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from edgeport.api import convert
from edgeport.core.errors import EdgeportError, InputError
from edgeport.reports.json import read_report
from edgeport.verify.bundle_check import verify_bundle
from edgeport.verify.remote import REMOTE_PREFIX, RemoteError, parse_target
from tests.conftest import EXAMPLES, factory
from tests.ssh_fixture import find_sshd, free_port, ssh_server

PYTHON_WITH_ORT = sys.executable  # the test venv's python has numpy + onnxruntime


def _snapshot(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


def _verify_reports(folder: Path) -> list[Path]:
    return sorted(folder.glob("report.verify-*")) + sorted(folder.glob(".report.verify-*"))


@pytest.fixture(scope="module")
def tiny_bundle(tmp_path_factory) -> Path:
    """TinyNet as an int8 ONNX bundle (static batch 1)."""
    root = tmp_path_factory.mktemp("verify_tiny")
    rng = np.random.default_rng(0)
    np.savez(root / "calib.npz", x=rng.standard_normal((16, 3, 16, 16)).astype(np.float32))
    np.savez(root / "eval.npz", x=rng.standard_normal((16, 3, 16, 16)).astype(np.float32))
    result = convert(
        factory("make_tiny"),
        input_shape="1,3,16,16",
        quantization="int8",
        calibration_data=str(root / "calib.npz"),
        eval_data=str(root / "eval.npz"),
        output_dir=str(root / "bundle"),
        latency_runs=5,
    )
    return Path(result.bundle_dir)


@pytest.fixture(scope="module")
def tiny_tflite_bundle(tmp_path_factory) -> Path:
    """TinyNet as an int8 TFLite bundle (LiteRT runner, fp32 .tflite timing reference)."""
    pytest.importorskip("ai_edge_litert")
    pytest.importorskip("onnx2tf")
    root = tmp_path_factory.mktemp("verify_tflite")
    rng = np.random.default_rng(1)
    np.savez(root / "calib.npz", x=rng.standard_normal((16, 3, 16, 16)).astype(np.float32))
    result = convert(
        factory("make_tiny"),
        output_format="tflite",
        input_shape="1,3,16,16",
        quantization="int8",
        calibration_data=str(root / "calib.npz"),
        eval_data=str(root / "calib.npz"),
        output_dir=str(root / "bundle"),
        latency_runs=5,
    )
    return Path(result.bundle_dir)


@pytest.fixture(scope="module")
def example_bundle(tmp_path_factory) -> Path:
    """The Fashion-MNIST example as an int8 ONNX bundle, evaluated on the real labelled subset."""
    out = tmp_path_factory.mktemp("verify_example") / "bundle"
    result = convert(
        str(EXAMPLES / "fashion_cnn.pt2"),
        quantization="int8",
        calibration_data=str(EXAMPLES / "fashion_mnist_calib.npz"),
        eval_data=str(EXAMPLES / "fashion_mnist_test_1k.npz"),
        output_dir=str(out),
        latency_runs=5,
    )
    return Path(result.bundle_dir)


@pytest.fixture
def bundle_copy(tiny_bundle, tmp_path) -> Path:
    """A private copy of the tiny bundle that a test may damage."""
    return Path(shutil.copytree(tiny_bundle, tmp_path / "bundle"))


def _check_fidelity(section: dict, bundle: Path) -> None:
    """The artifact reproduces the original report's fidelity bound on the stored fp32 outputs."""
    old = read_report(bundle / "report.json")["fidelity"]
    with np.load(bundle / "reference.npz") as data:
        scale = max(float(np.abs(data[k]).max()) for k in data.files if k.startswith("outputs/"))
    parity = 1e-4 + 1e-3 * scale  # stored outputs are the source framework's, ONNX matched them to this
    for name, new in section["fidelity"]["outputs"].items():
        assert new["max_abs_error"] <= old["outputs"][name]["max_abs_error"] + parity
        assert new["cosine_min"] >= old["outputs"][name]["cosine_min"] - 1e-4
    for new in section["reference_fidelity"]["outputs"].values():  # fp32 on this runtime vs the source
        assert new["max_abs_error"] <= parity
    # The same per-output measures as the conversion's gate, each figure recomputed here.
    assert set(section["fidelity"]["measures"]["outputs"]) == set(old["measures"]["outputs"])
    for name, entry in section["fidelity"]["measures"]["outputs"].items():
        assert entry["measure"] == old["measures"]["outputs"][name]["measure"]


@pytest.mark.parametrize("which", ["tiny_bundle", "tiny_tflite_bundle", "example_bundle"])
def test_local_verify_reproduces_fidelity(which, request):
    bundle = request.getfixturevalue(which)
    before = _snapshot(bundle)
    section = verify_bundle(bundle, runs=10)
    _check_fidelity(section, bundle)
    assert section["runner"] == "local" and section["files_checked"] >= 6
    assert section["latency"]["artifact"]["runs"] == 10 and section["latency"]["speedup"] > 0
    assert section["runtime"]["runtime"] == ("litert" if "tflite" in which else "onnxruntime")
    after = _snapshot(bundle)
    assert {k: v for k, v in after.items() if k in before} == before  # originals untouched
    report = read_report(Path(section["report_json"]))
    assert report["verification"]["previous"]["fidelity"] == read_report(bundle / "report.json")["fidelity"]
    assert "Verification" in Path(section["report_html"]).read_text()
    if which == "example_bundle":
        assert section["fidelity"]["artifact_top1"] >= 75.0  # 8 labelled reference samples
    for path in (section["report_json"], section["report_html"]):
        Path(path).unlink()


def test_cli_verify_prints_table(tiny_bundle):
    from edgeport.cli.verify import verify_command

    result = CliRunner().invoke(verify_command, [str(tiny_bundle), "--runs", "5"])
    assert result.exit_code == 0, result.output
    assert "speedup" in result.output and "p50" in result.output
    for path in _verify_reports(tiny_bundle):
        path.unlink()


def _flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:-10])


@pytest.mark.parametrize(
    ("name", "damage", "words"),
    [
        ("model.onnx", _flip_byte, "sha256"),
        ("reference.npz", _truncate, "truncated"),
        ("baseline_fp32.onnx", Path.unlink, "missing"),
    ],
)
def test_damaged_bundle_is_refused(bundle_copy, name, damage, words):
    from edgeport.cli.verify import verify_command

    damage(bundle_copy / name)
    before = _snapshot(bundle_copy)
    with pytest.raises(InputError) as info:
        verify_bundle(bundle_copy, runs=2)
    assert name in info.value.one_line() and words in info.value.one_line()
    assert info.value.exit_code == 2
    result = CliRunner().invoke(verify_command, [str(bundle_copy), "--runs", "2"])
    assert result.exit_code == 2
    assert name in result.output and len(result.output.strip().splitlines()) == 1
    assert _snapshot(bundle_copy) == before and not _verify_reports(bundle_copy)


def test_runner_url_is_checked(tiny_bundle):
    with pytest.raises(InputError):
        verify_bundle(tiny_bundle, runner="http://example")
    target = parse_target("ssh://pi@raspberry:2222/home/pi/venv/bin/python")
    assert (target.user, target.host, target.port, target.python) == (
        "pi",
        "raspberry",
        2222,
        "/home/pi/venv/bin/python",
    )
    assert parse_target("ssh://dev").python == "python3"


# --- over SSH, against a real OpenSSH server on 127.0.0.1 ------------------------------------

_WHY_NO_SSHD = find_sshd()


@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    """A throwaway sshd on 127.0.0.1 (skipped when openssh-server is not installed)."""
    if _WHY_NO_SSHD:
        pytest.skip(f"no OpenSSH server for the remote tests: {_WHY_NO_SSHD}")
    with ssh_server(tmp_path_factory.mktemp("sshd")) as server:
        yield server


def _remote_dirs(server) -> list[Path]:
    """The remote temporary folders edgeport made (other files in TMPDIR are not ours)."""
    return sorted(server.remote_tmp.glob(f"{REMOTE_PREFIX}*"))


@pytest.mark.parametrize("which", ["tiny_bundle", "tiny_tflite_bundle"])
def test_remote_verify_matches_local(sshd, which, request):
    tiny_bundle = request.getfixturevalue(which)
    before = _snapshot(tiny_bundle)
    section = verify_bundle(tiny_bundle, runner=sshd.url(PYTHON_WITH_ORT), runs=10, ssh_options=sshd.options)
    _check_fidelity(section, tiny_bundle)
    assert section["runner"].startswith("ssh://") and section["device"]["os"] and section["device"]["cpu"]
    assert section["runtime"]["runtime"] == ("litert" if "tflite" in which else "onnxruntime")
    assert section["runtime"]["version"]
    assert section["latency"]["artifact"]["runs"] == 10 and "reference" in section["latency"]
    # On the device itself: the one label without the "not the device's" qualifier.
    assert (
        section["latency"]["measured"].startswith("measured on the device (")
        and "not " not in section["latency"]["measured"]
    )
    assert not _remote_dirs(sshd)  # the remote temporary folder was removed
    assert {k: v for k, v in _snapshot(tiny_bundle).items() if k in before} == before
    report = json.loads(Path(section["report_json"]).read_text())
    assert report["verification"]["device"]["hostname"]
    for path in _verify_reports(tiny_bundle):
        path.unlink()


def test_remote_cli_with_env_options(sshd, tiny_bundle, monkeypatch):
    from edgeport.cli.verify import verify_command

    monkeypatch.setenv("EDGEPORT_SSH_OPTIONS", " ".join(sshd.options))
    result = CliRunner().invoke(
        verify_command, [str(tiny_bundle), "--runner", sshd.url(PYTHON_WITH_ORT), "--runs", "3"]
    )
    assert result.exit_code == 0, result.output
    assert "speedup" in result.output and not _remote_dirs(sshd)
    for path in _verify_reports(tiny_bundle):
        path.unlink()


def _write_script(path: Path, body: str) -> str:
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(0o755)
    return str(path)


def _expect_remote_failure(sshd, bundle: Path, url: str, words: list[str], **kwargs) -> EdgeportError:
    before = _snapshot(bundle)
    with pytest.raises(EdgeportError) as info:
        verify_bundle(bundle, runner=url, runs=3, ssh_options=sshd.options, **kwargs)
    line = info.value.one_line()
    assert "\n" not in line
    for word in words:
        assert word in line, line
    assert _snapshot(bundle) == before and not _verify_reports(bundle)  # the local bundle is intact
    assert not _remote_dirs(sshd), _remote_dirs(sshd)  # and the remote folder is gone
    return info.value


def test_remote_connection_refused(sshd, bundle_copy):
    url = f"ssh://{sshd.user}@127.0.0.1:{free_port()}{PYTHON_WITH_ORT}"
    error = _expect_remote_failure(sshd, bundle_copy, url, ["Connection refused"])
    assert isinstance(error, RemoteError)


def test_remote_python_without_onnxruntime(sshd, bundle_copy, tmp_path):
    bare = tmp_path / "bare-venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(bare)], check=True, timeout=60)
    _expect_remote_failure(sshd, bundle_copy, sshd.url(str(bare / "bin" / "python")), ["onnxruntime", "pip install"])


def test_remote_missing_python(sshd, bundle_copy):
    _expect_remote_failure(sshd, bundle_copy, sshd.url("/nonexistent/python3"), ["no python"])


def test_remote_harness_killed(sshd, bundle_copy, tmp_path):
    # The device's "python" starts the real harness on a job made endless, and SIGKILLs it mid-run.
    body = f"""sed -i 's/"runs": 3,/"runs": 100000000,/' job.json
"{PYTHON_WITH_ORT}" "$@" & pid=$!
sleep 1
kill -9 $pid
wait $pid"""
    python = _write_script(tmp_path / "crashing-python", body)
    _expect_remote_failure(sshd, bundle_copy, sshd.url(python), ["crashed", "signal 9"])


def test_remote_timeout(sshd, bundle_copy, tmp_path):
    python = _write_script(tmp_path / "hanging-python", "sleep 8")
    _expect_remote_failure(sshd, bundle_copy, sshd.url(python), ["timed out"], timeout=2)


def test_remote_dropped_connection(sshd, bundle_copy, tmp_path):
    # The device's "python" kills its own sshd session process: the connection drops mid-run.
    body = """p=$$
n=0
while [ "$p" -gt 1 ] && [ $n -lt 20 ]; do
  case "$(cat /proc/$p/comm)" in sshd*) kill -9 "$p"; break;; esac
  p=$(awk '{print $4}' /proc/$p/stat); n=$((n + 1))
done
sleep 1"""
    python = _write_script(tmp_path / "dropping-python", body)
    error = _expect_remote_failure(sshd, bundle_copy, sshd.url(python), ["running the harness", "closed"])
    assert isinstance(error, RemoteError)
