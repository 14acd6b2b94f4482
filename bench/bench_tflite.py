"""Benchmark: the bundled Fashion-MNIST CNN as TFLite, fp32 vs edgeport's full-integer int8,
top-1 on the real test subset and latency side by side in LiteRT (XNNPACK) in one run.

    .venv/bin/python bench/bench_tflite.py [--runs 2000]

Prints a table and writes bench/results/tflite.json. Targets (TFLite issue): int8 top-1
within 0.5 points of fp32 and at least 1.5x faster than the fp32 TFLite.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from edgeport.api import convert  # noqa: E402
from edgeport.pipeline.report import library_versions  # noqa: E402
from edgeport.runtime.host import host_description  # noqa: E402
from edgeport.runtime.litert import LiteRTRunner  # noqa: E402
from edgeport.verify.latency import measure_side_by_side  # noqa: E402

EXAMPLES = REPO / "examples"
RESULTS = REPO / "bench" / "results" / "tflite.json"


def main() -> None:
    """Convert, evaluate and time; print and save the results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2000)
    args = parser.parse_args()
    data = np.load(EXAMPLES / "fashion_mnist_test_1k.npz")
    x = data["x"][:, None].astype(np.float32) / 255.0
    with tempfile.TemporaryDirectory() as tmp:
        result = convert(
            str(EXAMPLES / "fashion_cnn.pt2"),
            output_format="tflite",
            quantization="int8",
            optimize_for="cpu",
            calibration_data=str(EXAMPLES / "fashion_mnist_calib.npz"),
            eval_data=str(EXAMPLES / "fashion_mnist_test_1k.npz"),
            output_dir=f"{tmp}/b",
            latency_runs=20,
        )
        manifest = json.loads((result.bundle_dir / "manifest.json").read_text())
        kwargs = manifest["runner"]["kwargs"]
        runners = {
            "fp32 TFLite": LiteRTRunner(result.bundle_dir / "baseline_fp32.tflite", **kwargs),
            "edgeport int8 TFLite": LiteRTRunner(result.artifact, **kwargs),
        }
        top1 = {
            name: float(
                np.mean(np.concatenate([r.run({"x": x[i : i + 1]})[0] for i in range(len(x))]).argmax(1) == data["y"])
                * 100
            )
            for name, r in runners.items()
        }
        latency = measure_side_by_side(runners, {"x": x[:1]}, args.runs, 100)
        sizes = {
            "fp32 TFLite": (result.bundle_dir / "baseline_fp32.tflite").stat().st_size,
            "edgeport int8 TFLite": result.artifact.stat().st_size,
        }
    rows = [
        {
            "model": n,
            "top1": top1[n],
            "p50_ms": latency[n]["p50_ms"],
            "speedup": latency["fp32 TFLite"]["p50_ms"] / latency[n]["p50_ms"],
            "size_bytes": sizes[n],
        }
        for n in runners
    ]
    for row in rows:
        print(
            f"{row['model']:24} top-1 {row['top1']:6.2f}%  p50 {row['p50_ms']:.4f} ms  {row['speedup']:.2f}x  "
            f"{row['size_bytes'] / 1e6:.3f} MB"
        )
    targets = {
        "int8_within_0.5_points": rows[0]["top1"] - rows[1]["top1"] <= 0.5,
        "int8_at_least_1.5x": rows[1]["speedup"] >= 1.5,
    }
    print("targets:", targets)
    RESULTS.write_text(
        json.dumps(
            {
                "benchmark": "fashion_cnn TFLite fp32 vs int8, LiteRT XNNPACK, 1 thread, batch 1",
                "date": datetime.now(UTC).isoformat(timespec="seconds"),
                "runs": args.runs,
                "rows": rows,
                "targets": targets,
                "host": host_description(),
                "libraries": library_versions(),
            },
            indent=2,
        )
        + "\n"
    )
    print(f"saved {RESULTS.relative_to(REPO)}")


if __name__ == "__main__":
    main()
