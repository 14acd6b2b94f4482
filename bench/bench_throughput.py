"""Benchmark: batch and thread tuning (issue 18) on the bundled Fashion-MNIST CNN, int8 ONNX
against fp32 ONNX, each point timed side by side in one run (medians of interleaved calls).

    .venv/bin/python bench/bench_throughput.py [--runs 200] [--batch_sizes 1,2,4,8,16,32] [--threads 1,2]

Runs ``edgeport.convert(..., objective="throughput")`` exactly as the CLI does
(``--output_format onnx --quantization int8 --optimize_for cpu``), prints the grid and writes
bench/results/throughput.json: per point the p50/p99 latency per call and the inferences/s
(batch / per-call p50) of int8 and fp32, the gain of batch 32 over batch 1, the recommended
point and the accuracy at its batch beside batch 1.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from edgeport.api import convert  # noqa: E402
from edgeport.pipeline.report import library_versions  # noqa: E402
from edgeport.runtime.host import host_description  # noqa: E402

EXAMPLES = REPO / "examples"
RESULTS = REPO / "bench" / "results" / "throughput.json"


def gains(points: list[dict]) -> dict[str, dict[str, float]]:
    """Per thread count and per model (int8, fp32): throughput at the largest batch / at batch 1."""
    result: dict[str, dict[str, float]] = {}
    measured = [p for p in points if "artifact" in p]
    for threads in sorted({p["threads"] for p in measured}):
        row = {p["batch"]: p for p in measured if p["threads"] == threads}
        if 1 not in row or len(row) < 2:
            continue
        top = max(row)
        result[f"{threads}_threads_batch_{top}_vs_1"] = {
            role_name: row[top][role]["throughput_per_s"] / row[1][role]["throughput_per_s"]
            for role, role_name in (("artifact", "int8"), ("reference", "fp32"))
        }
    return result


def main() -> None:
    """Convert with the throughput objective; print and save the grid."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--batch_sizes", default="1,2,4,8,16,32")
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--max_latency_ms", type=float, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        result = convert(
            str(EXAMPLES / "fashion_cnn.pt2"),
            output_format="onnx",
            quantization="int8",
            optimize_for="cpu",
            calibration_data=str(EXAMPLES / "fashion_mnist_calib.npz"),
            eval_data=str(EXAMPLES / "fashion_mnist_test_1k.npz"),
            output_dir=str(Path(tmp) / "bundle"),
            objective="throughput",
            batch_sizes=args.batch_sizes,
            threads=args.threads,
            max_latency_ms=args.max_latency_ms,
            latency_runs=args.runs,
        )
        tuning = result.report["tuning"]
    print(f"{'batch':>5} {'thr':>3} | {'int8 p50 ms':>11} {'p99 ms':>8} {'inf/s':>8} | "
          f"{'fp32 p50 ms':>11} {'p99 ms':>8} {'inf/s':>8} | speedup")  # fmt: skip
    for p in tuning["points"]:
        if "skipped" in p:
            print(f"{p['batch']:>5} {p['threads']:>3} | skipped: {p['skipped']}")
            continue
        a, r = p["artifact"], p["reference"]
        print(
            f"{p['batch']:>5} {p['threads']:>3} | "
            f"{a['p50_ms']:>11.4f} {a['p99_ms']:>8.4f} {a['throughput_per_s']:>8.0f} | "
            f"{r['p50_ms']:>11.4f} {r['p99_ms']:>8.4f} {r['throughput_per_s']:>8.0f} | {p['speedup']:.2f}x"
        )
    summary = gains(tuning["points"])
    for name, ratio in summary.items():
        print(f"throughput gain {name}: int8 {ratio['int8']:.2f}x, fp32 {ratio['fp32']:.2f}x")
    chosen = tuning["chosen"]
    print(f"recommended: batch {chosen['batch']}, {chosen['threads']} thread(s): {chosen['why']}")
    fid = tuning["fidelity_at_batch"]
    if "batch_1" in fid:
        big = fid[f"batch_{fid['batch']}"]
        print(
            f"int8 top-1 at batch 1: {fid['batch_1'].get('artifact_top1')}%, at batch {fid['batch']}: "
            f"{big.get('artifact_top1')}% (largest output difference {fid['max_abs_diff_between_batches']:.3g})"
        )
    document = {
        "benchmark": "throughput",
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": "edgeport convert --input_model examples/fashion_cnn.pt2 --output_format onnx --quantization int8 "
        f"--optimize_for cpu --objective throughput --batch_sizes {args.batch_sizes} --threads {args.threads} "
        f"--latency_runs {args.runs}" + (f" --max_latency_ms {args.max_latency_ms}" if args.max_latency_ms else ""),
        "host": host_description(),
        "machine_note": f"{platform.node()}: 2 cores shared with other jobs; figures are medians of interleaved runs",
        "libraries": library_versions(),
        "profile": result.report["target"]["profile"],
        "gains": summary,
        "tuning": tuning,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(document, indent=2) + "\n")
    print(f"saved {RESULTS}")


if __name__ == "__main__":
    main()
