"""Nothing written outside the bundle (issue #21, point 5): every command, passing or failing, run
in a child whose working directory, HOME and TMPDIR are fresh empty folders, leaves the working
directory holding only its bundle, TMPDIR empty and HOME holding only the documented cache
(``~/.cache/edgeport``, core/cache.py). Runs on ``.onnx`` sources used to leave uuid-named
``.data`` files in the working directory; ``.pt2`` sources left ``$TMPDIR/torchinductor_$USER``
and TFLite runs ``~/.keras/keras.json``."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from tests.conftest import EXAMPLES, REPO

CACHE = Path(".cache") / "edgeport"
# Settings edgeport makes itself are under test: inherited ones are dropped.
DROPPED = ("ORT_DISABLE_TELEMETRY", "TORCHINDUCTOR_CACHE_DIR", "KERAS_HOME", "EDGEPORT_CACHE_DIR", "TMP", "TEMP")
FAST = ["--calibration_samples", "32", "--eval_samples", "64", "--latency_runs", "5"]


def _mlp(path: Path, external: bool) -> Path:
    """A small MatMul/Relu/MatMul model (a few hundred KB); ``external``: every weight in a .data file."""
    rng = np.random.default_rng(0)
    w1 = numpy_helper.from_array(rng.standard_normal((64, 256)).astype(np.float32), "w1")
    w2 = numpy_helper.from_array(rng.standard_normal((256, 10)).astype(np.float32), "w2")
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["h"], name="fc1"),
        helper.make_node("Relu", ["h"], ["r"], name="relu"),
        helper.make_node("MatMul", ["r", "w2"], ["y"], name="fc2"),
    ]
    graph = helper.make_graph(
        nodes,
        "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 10])],
        [w1, w2],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    path.parent.mkdir(parents=True, exist_ok=True)
    if external:
        onnx.save(model, str(path), save_as_external_data=True, location=path.stem + ".data", size_threshold=0)
    else:
        onnx.save(model, str(path))
    return path


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("sources")
    bad = root / "bad.onnx"
    bad.write_text("not a model")
    project = root / "project"
    project.mkdir()
    shutil.copyfile(EXAMPLES / "fashion_cnn.pt2", project / "fashion_cnn.pt2")
    shutil.copyfile(EXAMPLES / "fashion_mnist_calib.npz", project / "calib.npz")
    shutil.copyfile(EXAMPLES / "fashion_mnist_test_1k.npz", project / "test.npz")
    (project / "edgeport.yaml").write_text(BUILD_CONFIG)
    return {
        "onnx": _mlp(root / "mlp.onnx", external=False),
        "external": _mlp(root / "ext" / "mlp_ext.onnx", external=True),
        "bad": bad,
        "project": project,
    }


BUILD_CONFIG = """\
version: 1
defaults: {calibration_samples: 32, eval_samples: 64, latency_runs: 5, warmup_runs: 1}
models:
  - {name: fashion_cnn, path: fashion_cnn.pt2, calibration_data: calib.npz, eval_data: test.npz}
targets:
  - {name: onnx-int8-x86, format: onnx, quantization: int8, profile: x86-avx512-vnni}
"""


def _listing(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def _edgeport(args: list[str], root: Path) -> subprocess.CompletedProcess:
    """``edgeport ARGS`` in a child with cwd, HOME and TMPDIR fresh empty folders under ``root``."""
    for name in ("cwd", "home", "tmp"):
        (root / name).mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if k not in DROPPED}
    env.update({"PYTHONPATH": str(REPO), "HOME": str(root / "home"), "TMPDIR": str(root / "tmp")})
    command = [sys.executable, "-m", "edgeport.cli.main", *args]
    return subprocess.run(command, cwd=root / "cwd", env=env, capture_output=True, text=True, timeout=600)


def _assert_clean(root: Path, bundle: str | None) -> None:
    """cwd holds ``bundle`` only (or nothing), TMPDIR nothing, HOME only the documented cache."""
    cwd = [p for p in _listing(root / "cwd") if bundle is None or not (p == bundle or p.startswith(bundle + "/"))]
    assert cwd == [], f"written into the working directory: {cwd}"
    assert _listing(root / "tmp") == [], "written into TMPDIR"
    home = [p for p in _listing(root / "home") if not (CACHE.as_posix().startswith(p) or p.startswith(f"{CACHE}/"))]
    assert home == [], f"written into HOME outside {CACHE}: {home}"
    if bundle is not None:
        assert (root / "cwd" / bundle).exists()


def _convert(source: Path, *args: str) -> list[str]:
    return ["convert", "--input_model", str(source), "--output_dir", "bundle", *FAST, *args]


CASES = {
    "onnx-int8": (lambda s: _convert(s["onnx"], "--quantization", "int8"), 0, "bundle"),
    "onnx-external-int8-dynamic": (lambda s: _convert(s["external"], "--quantization", "int8-dynamic"), 0, "bundle"),
    "onnx-external-int8-weight": (lambda s: _convert(s["external"], "--quantization", "int8-weight"), 0, "bundle"),
    "pt2-int8": (
        lambda s: _convert(
            EXAMPLES / "fashion_cnn.pt2",
            "--quantization",
            "int8",
            "--calibration_data",
            str(EXAMPLES / "fashion_mnist_calib.npz"),
            "--eval_data",
            str(EXAMPLES / "fashion_mnist_test_1k.npz"),
        ),  # fmt: skip
        0,
        "bundle",
    ),
    "bad-input": (lambda s: _convert(s["bad"]), 2, None),
    "gate-failure": (
        lambda s: _convert(s["external"], "--quantization", "int8", "--max_accuracy_drop", "0", "--metric", "cosine"),
        3,
        "bundle",
    ),
    "build": (lambda s: ["build", str(s["project"] / "edgeport.yaml"), "-o", "out"], 0, "out"),
    "tflite-pt2": (
        lambda s: _convert(EXAMPLES / "fashion_cnn.pt2", "--output_format", "tflite", "--quantization", "int8"),
        0,
        "bundle",
    ),
    "coreml-pt2": (
        lambda s: _convert(
            EXAMPLES / "fashion_cnn.pt2", "--output_format", "coreml", "--quantization", "fp16", "--optimize_for", "ane"
        ),
        0,
        "bundle",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_command_leaves_nothing_outside(sources, tmp_path, case):
    if case == "tflite-pt2":
        pytest.importorskip("onnx2tf")
    if case == "coreml-pt2":
        pytest.importorskip("coremltools")
    make_args, code, bundle = CASES[case]
    result = _edgeport(make_args(sources), tmp_path)
    assert result.returncode == code, result.stderr[-3000:]
    _assert_clean(tmp_path, bundle)


def test_verify_leaves_nothing_outside(sources, tmp_path):
    """``edgeport verify BUNDLE`` writes its report into the bundle and nothing elsewhere."""
    made = _edgeport(_convert(sources["onnx"], "--quantization", "int8-dynamic"), tmp_path / "convert")
    assert made.returncode == 0, made.stderr[-3000:]
    bundle = tmp_path / "convert" / "cwd" / "bundle"
    result = _edgeport(["verify", str(bundle), "--runs", "5"], tmp_path / "verify")
    assert result.returncode == 0, result.stderr[-3000:]
    _assert_clean(tmp_path / "verify", None)


def test_merge_leaves_nothing_outside(sources, tmp_path):
    """``edgeport merge`` of a build's summary writes the merged summary where told, nothing else."""
    built = _edgeport(CASES["build"][0](sources), tmp_path / "build")
    assert built.returncode == 0, built.stderr[-3000:]
    summary = tmp_path / "build" / "cwd" / "out" / "summary.json"
    result = _edgeport(["merge", str(summary), "-o", "merged"], tmp_path / "merge")
    assert result.returncode == 0, result.stderr[-3000:]
    _assert_clean(tmp_path / "merge", "merged")
