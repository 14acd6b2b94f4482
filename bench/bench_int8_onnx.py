"""Benchmark: the bundled Fashion-MNIST CNN, fp32 ONNX vs edgeport's int8 ONNX (and ORT's
default int8 recipe, the peer baseline), accuracy on the real test subset and latency
measured side by side in one run.

    .venv/bin/python bench/bench_int8_onnx.py [--runs 2000] [--threads 1 2]

Prints a table and writes bench/results/int8_onnx.json. Targets (issue 2): int8 top-1
within 0.5 points of fp32, int8 at least 1.5x faster than fp32 on this CPU.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

import onnx  # noqa: E402
from bench_efficientnet_peers import optimum_avx512_vnni  # noqa: E402

from edgeport.api import convert  # noqa: E402
from edgeport.data import Preprocess, load_dataset  # noqa: E402
from edgeport.frontends.onnx import graph_input_specs  # noqa: E402
from edgeport.pipeline.report import library_versions  # noqa: E402
from edgeport.runtime.host import host_description  # noqa: E402
from edgeport.runtime.ort import OrtRunner  # noqa: E402
from edgeport.verify.evaluate import run_dataset  # noqa: E402
from edgeport.verify.latency import measure_side_by_side  # noqa: E402

EXAMPLES = REPO / "examples"
RESULTS = REPO / "bench" / "results" / "int8_onnx.json"


def ort_default_int8(fp32: Path, out: Path, calibration) -> None:
    """ORT quantize_static with its defaults (QDQ, int8 activations, per-tensor): the peer recipe."""
    from onnxruntime.quantization import quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from edgeport.quantize.calibrate import DatasetReader

    pre = out.with_name("pre.onnx")
    quant_pre_process(str(fp32), str(pre))
    quantize_static(str(pre), str(out), DatasetReader(calibration, 32))


def main() -> None:
    """Convert, evaluate and time; print and save the results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        result = convert(
            str(EXAMPLES / "fashion_cnn.pt2"),
            quantization="int8",
            optimize_for="cpu",
            calibration_data=str(EXAMPLES / "fashion_mnist_calib.npz"),
            eval_data=str(EXAMPLES / "fashion_mnist_test_1k.npz"),
            output_dir=f"{tmp}/bundle",
            latency_runs=20,
        )
        bundle = result.bundle_dir
        models = {"fp32": bundle / "baseline_fp32.onnx", "edgeport int8": bundle / "model.onnx"}
        specs = graph_input_specs(onnx.load(str(models["fp32"])))
        calibration = load_dataset(str(EXAMPLES / "fashion_mnist_calib.npz"), specs, 256, Preprocess())
        models["ORT default int8 (S8S8 per-tensor)"] = Path(tmp) / "ort_default.onnx"
        ort_default_int8(models["fp32"], models["ORT default int8 (S8S8 per-tensor)"], calibration)
        from onnxruntime.quantization import quantize_dynamic

        models["ORT quantize_dynamic defaults"] = Path(tmp) / "ort_dynamic.onnx"
        quantize_dynamic(str(models["fp32"]), str(models["ORT quantize_dynamic defaults"]))
        calib_x = np.concatenate([b["x"] for b in calibration.batches(64)])
        models["Optimum avx512_vnni static"] = optimum_avx512_vnni(
            models["fp32"], Path(tmp) / "optimum.onnx", calib_x, input_name="x"
        )
        auto = convert(
            str(EXAMPLES / "fashion_cnn.pt2"),
            quantization="auto",
            optimize_for="cpu",
            max_accuracy_drop=0.5,
            calibration_data=str(EXAMPLES / "fashion_mnist_calib.npz"),
            eval_data=str(EXAMPLES / "fashion_mnist_calib.npz"),
            output_dir=f"{tmp}/auto",
            latency_runs=20,
        )
        models["edgeport auto (budget 0.5 pt, selected on calibration data)"] = auto.artifact

        eval_data = load_dataset(str(EXAMPLES / "fashion_mnist_test_1k.npz"), specs, None, Preprocess())
        accuracy = {}
        for name, path in models.items():
            logits = run_dataset(OrtRunner(path), eval_data, 100, True)[0]
            accuracy[name] = float(np.mean(logits.argmax(1) == eval_data.labels) * 100)

        feeds = eval_data.batch(0, 1)
        latency = {}
        for threads in args.threads:
            runners = {name: OrtRunner(path, threads=threads) for name, path in models.items()}
            latency[threads] = measure_side_by_side(runners, feeds, args.runs, 100)

    rows = []
    for name in models:
        row = {"model": name, "top1": accuracy[name], "top1_drop": accuracy["fp32"] - accuracy[name]}
        for threads, per_model in latency.items():
            row[f"p50_ms_{threads}t"] = per_model[name]["p50_ms"]
            row[f"speedup_{threads}t"] = per_model["fp32"]["p50_ms"] / per_model[name]["p50_ms"]
        rows.append(row)
    print(
        f"{'model':38} {'top-1':>7} {'drop':>6} "
        + " ".join(f"{'p50 ' + str(t) + 't':>10} {'speedup':>7}" for t in latency)
    )
    for row in rows:
        cells = " ".join(f"{row[f'p50_ms_{t}t']:>8.4f}ms {row[f'speedup_{t}t']:>6.2f}x" for t in latency)
        print(f"{row['model']:38} {row['top1']:>6.2f}% {row['top1_drop']:>6.2f} {cells}")
    edgeport_row, auto_row = rows[1], rows[-1]
    peers = [r for r in rows[2:-1]]
    dominated = [
        r["model"] for r in peers if r["top1"] >= auto_row["top1"] and r["speedup_1t"] > auto_row["speedup_1t"]
    ]
    targets = {
        "int8_top1_within_0.5_points": edgeport_row["top1_drop"] <= 0.5,
        "int8_at_least_1.5x_faster_1_thread": edgeport_row.get("speedup_1t", 0) >= 1.5,
        "no_peer_more_accurate_and_faster_than_auto": not dominated,
    }
    print("targets:", ", ".join(f"{k}={'met' if v else 'MISSED'}" for k, v in targets.items()))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "benchmark": "fashion_cnn fp32 vs int8 ONNX, onnxruntime CPU, batch 1, interleaved runs",
                "date": datetime.now(UTC).isoformat(timespec="seconds"),
                "runs": args.runs,
                "eval_samples": len(eval_data),
                "rows": rows,
                "targets": targets,
                "host": host_description(),
                "machine": platform.machine(),
                "libraries": library_versions(),
            },
            indent=2,
        )
        + "\n"
    )
    print(f"saved {RESULTS.relative_to(REPO)}")


if __name__ == "__main__":
    main()
