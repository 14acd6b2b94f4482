"""Batch and thread tuning (verify/tuning.py) on real ONNX Runtime sessions of small models."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgeport.core.model import TensorSpec
from edgeport.core.runner_spec import RunnerSpec
from edgeport.data.arrays import array_dataset
from edgeport.data.preprocess import parse_preprocess
from edgeport.verify.tuning import choose_point, sweep_grid, tune


def _mlp(path: Path, batch: int | str) -> Path:
    """A 64 -> 256 -> 10 MLP with batch dimension ``batch`` (a name: dynamic)."""
    rng = np.random.default_rng(0)
    w1 = numpy_helper.from_array(rng.standard_normal((64, 256)).astype(np.float32) * 0.1, "w1")
    w2 = numpy_helper.from_array(rng.standard_normal((256, 10)).astype(np.float32) * 0.1, "w2")
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["h"]),
        helper.make_node("Relu", ["h"], ["r"]),
        helper.make_node("MatMul", ["r", "w2"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 10])],
        [w1, w2],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    onnx.save(model, path)
    return path


@pytest.fixture(scope="module")
def mlp(tmp_path_factory) -> dict[str, Path]:
    """fp32 dynamic-batch MLP, its dynamic int8 artifact, a fixed-batch copy, and 64 samples."""
    from onnxruntime.quantization import quantize_dynamic

    root = tmp_path_factory.mktemp("tune")
    files = {"fp32": _mlp(root / "fp32.onnx", "batch"), "fixed": _mlp(root / "fixed.onnx", 4)}
    files["int8"] = root / "int8.onnx"
    quantize_dynamic(str(files["fp32"]), str(files["int8"]))
    # Samples whose scales differ widely: a per-batch activation range then depends on the batch.
    rng = np.random.default_rng(1)
    x = rng.standard_normal((64, 64)).astype(np.float32) * rng.uniform(0.1, 10, (64, 1)).astype(np.float32)
    files["data"] = root / "data.npz"
    np.savez(files["data"], x=x, y=rng.integers(0, 10, 64))
    return files


def _dataset(files: dict[str, Path], batch: int | str):
    specs = [TensorSpec("x", [batch, 64], "float32")]
    return array_dataset("data", files["data"], specs, None, parse_preprocess(None))


def test_grid_is_measured_side_by_side_with_throughput_from_the_median(mlp):
    points = sweep_grid(
        RunnerSpec("onnxruntime", str(mlp["int8"])),
        RunnerSpec("onnxruntime", str(mlp["fp32"])),
        _dataset(mlp, "batch"),
        batches=[1, 8],
        threads=[1, 2],
        dynamic=True,
        static_batch=1,
        runs=15,
        warmup=3,
    )
    assert [(p["batch"], p["threads"]) for p in points] == [(1, 1), (8, 1), (1, 2), (8, 2)]
    for p in points:
        for role in ("artifact", "reference"):
            figures = p[role]
            assert figures["runs"] == 15 and 0 < figures["p50_ms"] <= figures["p99_ms"]
            assert figures["throughput_per_s"] == pytest.approx(p["batch"] / (figures["p50_ms"] / 1000))
        assert p["speedup"] == pytest.approx(p["reference"]["p50_ms"] / p["artifact"]["p50_ms"])


def test_fixed_batch_model_runs_only_its_batch_and_says_why(mlp):
    points = sweep_grid(
        RunnerSpec("onnxruntime", str(mlp["fixed"])),
        RunnerSpec("onnxruntime", str(mlp["fixed"])),
        _dataset(mlp, 4),
        batches=[1, 2],
        threads=[1],
        dynamic=False,
        static_batch=4,
        runs=5,
        warmup=1,
    )
    assert [(p["batch"], "skipped" in p) for p in points] == [(1, True), (2, True), (4, False)]
    assert "fixed at 4" in points[0]["skipped"] and "cannot run batch 1" in points[0]["skipped"]
    assert points[2]["artifact"]["runs"] == 5


def _point(batch: int, threads: int, p50: float, p99: float) -> dict:
    return {
        "batch": batch,
        "threads": threads,
        "artifact": {"p50_ms": p50, "p99_ms": p99, "throughput_per_s": batch / p50 * 1000},
    }


POINTS = [
    _point(1, 1, 0.2, 0.3),
    _point(8, 1, 1.0, 1.4),
    _point(32, 1, 3.5, 5.0),
    {"batch": 64, "threads": 1, "skipped": "x"},
]


def test_choice_obeys_the_latency_target_on_p99():
    assert choose_point(POINTS, None)["batch"] == 32  # 9143/s, the most
    generous = choose_point(POINTS, 100.0)
    assert (generous["batch"], generous["met"]) == (32, True)
    tight = choose_point(POINTS, 1.2)  # batch 8's p50 1.0 fits but its p99 1.4 does not
    assert (tight["batch"], tight["met"]) == (1, True)
    impossible = choose_point(POINTS, 0.01)
    assert (impossible["batch"], impossible["met"]) == (1, False)
    assert "no point met" in impossible["why"] and impossible["p99_ms"] == 0.3


def test_tune_reports_accuracy_at_the_chosen_batch_beside_batch_1(mlp):
    section = tune(
        RunnerSpec("onnxruntime", str(mlp["int8"])),
        RunnerSpec("onnxruntime", str(mlp["fp32"])),
        RunnerSpec("onnxruntime", str(mlp["fp32"])),
        _dataset(mlp, "batch"),
        ["y"],
        objective="throughput",
        batches=[1, 16],
        threads=[1],
        max_latency_ms=1000.0,
        dynamic=True,
        static_batch=1,
        runs=10,
        warmup=2,
    )
    chosen = section["chosen"]
    assert section["recommended_session_options"] == {"batch": chosen["batch"], "intra_op_num_threads": 1}
    assert chosen["met"] is True and chosen["batch"] in (1, 16)
    fidelity = section["fidelity_at_batch"]
    batch_key = f"batch_{chosen['batch']}"
    assert fidelity["batch_1"]["samples"] == fidelity[batch_key]["samples"] == 64
    assert 0.9 < fidelity["batch_1"]["outputs"]["y"]["cosine_mean"] <= 1.0
    if chosen["batch"] == 16:  # dynamic int8 scales activations per batch: outputs move with it
        assert fidelity["max_abs_diff_between_batches"] > 0


def test_dynamic_int8_outputs_depend_on_the_batch(mlp):
    from edgeport.verify.tuning import fidelity_at_batch

    fp32, int8 = RunnerSpec("onnxruntime", str(mlp["fp32"])), RunnerSpec("onnxruntime", str(mlp["int8"]))
    section = fidelity_at_batch(fp32, int8, _dataset(mlp, "batch"), ["y"], 16, 1)
    assert section["max_abs_diff_between_batches"] > 1e-4
    single, batched = section["batch_1"]["outputs"]["y"], section["batch_16"]["outputs"]["y"]
    assert single["sqnr_db"] != pytest.approx(batched["sqnr_db"], abs=1e-6)
    same = fidelity_at_batch(fp32, fp32, _dataset(mlp, "batch"), ["y"], 16, 1)  # fp32 vs itself
    assert same["batch_1"]["outputs"]["y"]["cosine_min"] == pytest.approx(1.0, abs=1e-6)


def test_a_batch_the_runtime_refuses_is_skipped_with_its_message(mlp):
    # The source said dynamic, but the artifact's format fixed the batch at 4 (as a TFLite export may).
    points = sweep_grid(
        RunnerSpec("onnxruntime", str(mlp["fixed"])),
        RunnerSpec("onnxruntime", str(mlp["fp32"])),
        _dataset(mlp, "batch"),
        batches=[2, 4],
        threads=[1],
        dynamic=True,
        static_batch=1,
        runs=4,
        warmup=1,
    )
    assert "the runtime refused batch 2" in points[0]["skipped"] and "\n" not in points[0]["skipped"]
    assert points[1]["batch"] == 4 and points[1]["artifact"]["runs"] == 4
