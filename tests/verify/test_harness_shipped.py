"""The device harness runs the real runners, shipped as a small package (``remote.stage_harness``).

The staged folder runs in a python whose path holds only that folder and numpy + onnxruntime
(no site-packages, no edgeport install), as on a device, and its figures have the shape of the
local runner's; ``run_remote`` is driven end to end through stand-in ``ssh``/``scp`` commands
that run on this machine.
"""

from __future__ import annotations

import ast
import base64
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime
import pytest

from edgeport.core.errors import InputError
from edgeport.core.registry import RUNTIMES
from edgeport.runtime.host import host_description
from edgeport.runtime.ort import OrtRunner
from edgeport.verify.harness import SHIPPED_RUNNERS
from edgeport.verify.latency import measure_side_by_side
from edgeport.verify.remote import HARNESS, PACKAGE, run_remote, stage_harness

RUNS = 7


def _model(path: Path) -> Path:
    """A small ONNX model: y = relu(x @ w), z = sum(float(ids)); ids is int64 (fed as int32)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.linspace(-1, 1, 24, dtype=np.float32).reshape(8, 3), "w")
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "w"], ["xw"]),
            helper.make_node("Relu", ["xw"], ["y"]),
            helper.make_node("Cast", ["ids"], ["ids_f"], to=TensorProto.FLOAT),
            helper.make_node("ReduceSum", ["ids_f"], ["z"], keepdims=0),
        ],
        "small",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 8]),
            helper.make_tensor_value_info("ids", TensorProto.INT64, ["batch", 2]),
        ],
        [
            helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3]),
            helper.make_tensor_value_info("z", TensorProto.FLOAT, []),
        ],
        [w],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def _feeds() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "x": rng.standard_normal((4, 8)).astype(np.float32),
        "ids": rng.integers(0, 9, (4, 2)).astype(np.int32),  # the runner casts to the model's int64
    }


@pytest.fixture(scope="module")
def device_python(tmp_path_factory) -> str:
    """A "device" python: no site-packages, only numpy and onnxruntime on its path."""
    root = tmp_path_factory.mktemp("device")
    packages = root / "site"
    packages.mkdir()
    for module in (np, onnxruntime):
        folder = Path(module.__file__).parent
        for entry in folder.parent.glob(f"{folder.name}*"):  # numpy, numpy.libs, ...dist-info
            (packages / entry.name).symlink_to(entry)
    script = root / "python"
    script.write_text(f'#!/bin/sh\nPYTHONPATH="{packages}" exec "{sys.executable}" -S "$@"\n')
    script.chmod(0o755)
    return str(script)


def _job(folder: Path, model: Path, reference: bool = True, **artifact) -> Path:
    np.savez(folder / "inputs.npz", **_feeds())
    spec = {"kind": "onnxruntime", "file": model.name, "kwargs": {}} | artifact
    job = {
        "artifact": spec,
        "reference": {"kind": "onnxruntime", "file": model.name, "kwargs": {}} if reference else None,
        "inputs": "inputs.npz",
        "input_names": ["x", "ids"],
        "output_names": ["y", "z"],
        "threads": 1,
        "runs": RUNS,
        "warmup": 2,
        "latency_batch": 1,
        "batch_axes": None,
    }
    (folder / "job.json").write_text(json.dumps(job))
    return folder / "job.json"


def _staged(tmp_path: Path) -> Path:
    folder = tmp_path / "staged"
    folder.mkdir()
    stage_harness(folder)
    _model(folder / "small.onnx")
    return folder


def _run(python: str, folder: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([python, *args], cwd=folder, capture_output=True, text=True, timeout=300)


def test_staged_package_is_the_runners_and_needs_numpy_and_the_runtime_only(tmp_path):
    folder = tmp_path / "staged"
    folder.mkdir()
    copied = stage_harness(folder)
    assert copied == [folder / "harness.py", folder / "edgeport"]
    staged = {str(p.relative_to(folder)) for p in folder.rglob("*.py")}
    runners = {f"edgeport/runtime/{p.name}" for p in (PACKAGE / "runtime").glob("*.py")}
    core = {f"edgeport/core/{name}.py" for name in ("__init__", "errors", "registry", "runner_spec")}
    assert staged == {"harness.py", "edgeport/__init__.py"} | core | runners
    assert "import" not in (folder / "edgeport" / "__init__.py").read_text().replace("import os", "")
    for name in staged - {"edgeport/__init__.py", "harness.py"}:  # the modules as they are, not copies
        assert (folder / name).read_text() == (PACKAGE.parent / name).read_text(), name
    runtimes = {entry.module.split(".")[0] for entry in RUNTIMES.values() if entry.runner.startswith(SHIPPED_RUNNERS)}
    # PIL: Core ML image inputs; prometheus_client: runtime/metrics.py's optional serving export,
    # imported only when called (the harness never calls it).
    allowed = set(sys.stdlib_module_names) | {"numpy", "edgeport", "PIL", "prometheus_client"} | runtimes
    for name in staged:
        # Syntax a device's older python reads (3.8 on, as the harness always allowed).
        tree = ast.parse((folder / name).read_text(), feature_version=(3, 8))
        imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        imported |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.level == 0 and n.module}
        assert {m.split(".")[0] for m in imported} <= allowed, (name, imported)


def test_staged_harness_runs_without_edgeport_installed(tmp_path, device_python):
    folder = _staged(tmp_path)
    probe = (
        "import importlib.util, json, sys, edgeport\n"
        "from edgeport.core.registry import runner_class\n"
        "runner = runner_class('onnxruntime')('small.onnx')\n"
        "print(json.dumps({'edgeport': edgeport.__file__, 'torch': importlib.util.find_spec('torch') is not None,"
        " 'onnx': importlib.util.find_spec('onnx') is not None, 'path': sys.path,"
        " 'modules': sorted(m for m in sys.modules if m.startswith('edgeport'))}))"
    )
    done = _run(device_python, folder, "-c", probe)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert seen["edgeport"] == str(folder / "edgeport" / "__init__.py")
    assert not seen["torch"] and not seen["onnx"]  # nothing of the converter's environment
    assert not any("site-packages" in p for p in seen["path"])
    assert seen["modules"] == [
        "edgeport",
        "edgeport.core",
        "edgeport.core.errors",
        "edgeport.core.registry",
        "edgeport.runtime",
        "edgeport.runtime.host",
        "edgeport.runtime.ort",
    ]


def test_staged_harness_times_like_the_local_runner(tmp_path, device_python):
    folder = _staged(tmp_path)
    _job(folder, folder / "small.onnx")
    done = _run(device_python, folder, "harness.py", "job.json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["ok"] and done.stderr == ""

    local = OrtRunner(folder / "small.onnx")
    feeds = _feeds()
    expected = local.run(feeds)
    with np.load(io.BytesIO(base64.b64decode(result["outputs_npz_b64"]))) as data:
        for role in ("artifact", "reference"):
            for name, want in zip(["y", "z"], expected, strict=True):
                got = data[f"{role}/{name}"]
                assert got.shape == want.shape and got.dtype == want.dtype
                np.testing.assert_allclose(got, want, rtol=1e-6)
    timed = measure_side_by_side({"reference": local, "artifact": local}, {k: v[:1] for k, v in feeds.items()}, 3, 1)
    assert list(result["latency"]) == list(timed)  # reference, then artifact
    for role, figures in result["latency"].items():
        assert set(figures) == set(timed[role]) and figures["runs"] == RUNS
        assert len(figures["samples_ms"]) == RUNS and 0 < figures["min_ms"] <= figures["p50_ms"] <= figures["p99_ms"]
    local_runtime = local.describe()
    local_runtime.pop("host")
    assert result["runtime"].keys() == local_runtime.keys() and result["runtime"]["runtime"] == "onnxruntime"
    assert set(host_description()) | {"hostname", "numpy"} <= set(result["device"])
    assert set(result["load_time_s"]) == {"artifact", "reference"}


@pytest.mark.parametrize(
    "kind, words",
    [("tpu", ["unknown runner kind 'tpu'", "onnxruntime"]), ("coreml-emulated", ["not shipped to devices"])],
)
def test_a_runtime_the_device_cannot_run_is_one_line(tmp_path, device_python, kind, words):
    folder = _staged(tmp_path)
    _job(folder, folder / "small.onnx", kind=kind)
    done = _run(device_python, folder, "harness.py", "job.json")
    assert done.returncode == 4 and "Traceback" not in done.stderr
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1
    document = json.loads(lines[0])
    assert document["ok"] is False and "\n" not in document["error"]
    for word in words:
        assert word in document["error"]


def test_a_missing_runtime_is_named(tmp_path, device_python):
    folder = _staged(tmp_path)
    _job(folder, folder / "small.onnx", reference=False, kind="litert")
    done = _run(device_python, folder, "harness.py", "job.json")
    document = json.loads(done.stdout.strip().splitlines()[-1])
    assert done.returncode == 3 and document["missing"] == ["ai-edge-litert"]


def test_the_harness_holds_no_copy_of_the_runners():
    text = HARNESS.read_text()
    for copied in ("tensor(float", "float16", "np.percentile", "perf_counter", "/proc/cpuinfo", "InferenceSession"):
        assert copied not in text, copied
    assert not [n for n in ast.walk(ast.parse(text)) if isinstance(n, ast.ClassDef)]  # no runner classes
    # ONNX Runtime's dtype map exists once in the package: in its runner.
    holders = [p for p in PACKAGE.rglob("*.py") if '"tensor(float16)"' in p.read_text()]
    assert holders == [PACKAGE / "runtime" / "ort.py"]


# --- run_remote end to end, with ssh and scp stand-ins that run here -------------------------

_FAKE_SSH = """import subprocess, sys
sys.exit(subprocess.run(["sh", "-c", sys.argv[-1]]).returncode)  # the remote command, run here
"""
_FAKE_SCP = """import shutil, sys
from pathlib import Path
args, paths = sys.argv[1:], []
while args:
    arg = args.pop(0)
    if arg in ("-o", "-F", "-i", "-J", "-P"):
        args.pop(0)
    elif not arg.startswith("-"):
        paths.append(Path(arg))
folder = Path(str(paths.pop()).split(":", 1)[1])
for source in paths:
    (shutil.copytree if source.is_dir() else shutil.copy)(source, folder / source.name)
"""


@pytest.fixture
def fake_ssh(tmp_path, monkeypatch) -> Path:
    """``ssh``/``scp`` on PATH that run here; returns the "device"'s TMPDIR."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, body in (("ssh", _FAKE_SSH), ("scp", _FAKE_SCP)):
        (bin_dir / name).write_text(f"#!{sys.executable}\n{body}")
        (bin_dir / name).chmod(0o755)
    device_tmp = tmp_path / "device_tmp"
    device_tmp.mkdir()
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    monkeypatch.setenv("TMPDIR", str(device_tmp))
    monkeypatch.delenv("EDGEPORT_SSH_OPTIONS", raising=False)
    return device_tmp


def test_run_remote_ships_the_package_and_cleans_up(tmp_path, fake_ssh, device_python):
    model = _model(tmp_path / "small.onnx")
    spec = {"kind": "onnxruntime", "file": "small.onnx", "kwargs": {}}
    ran = run_remote(f"ssh://me@device{device_python}", spec, spec, [model], _feeds(), ["y", "z"], runs=RUNS, warmup=1)
    expected = OrtRunner(model).run(_feeds())
    for got in (ran["outputs"], ran["reference_outputs"]):
        for a, b in zip(got, expected, strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-6)
    assert ran["latency"]["artifact"]["runs"] == RUNS and ran["target"] == f"ssh://me@device{device_python}"
    assert list(fake_ssh.iterdir()) == []  # the device's temporary folder is gone


def test_run_remote_refuses_a_runtime_before_connecting(tmp_path, fake_ssh):
    (fake_ssh.parent / "bin" / "ssh").unlink()  # connecting would fail with "ssh not found"
    spec = {"kind": "coreml-emulated", "file": "model.mlpackage", "kwargs": {}}
    with pytest.raises(InputError, match="not shipped to devices") as info:
        run_remote("ssh://me@device", spec, None, [], _feeds(), ["y"])
    assert "\n" not in info.value.one_line()
