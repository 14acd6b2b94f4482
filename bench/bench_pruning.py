"""Benchmark: structured channel pruning with recovery on the bundled Fashion-MNIST CNN, then
int8, each measured against the original in one run (latency interleaved, after warm-up,
medians; top-1 on the 1,000 labelled test images).

    .venv/bin/python bench/bench_pruning.py [--prune channels:0.3] [--finetune_steps 300] [--runs 1000]

Prints a table and writes bench/results/pruning.json. Targets (issue 8): structured pruning
with recovery removes >= 30% of the MACs, the fp32 ONNX runs >= 1.25x faster than the unpruned
one, top-1 within 1 point of the original; the pruned model quantizes to int8 within the same
budget (1 point against the original).

Two calibration sets are run, both without labels: the 256 images the example ships
(``examples/fashion_mnist_calib.npz``) and, when Debian's ``dataset-fashion-mnist`` is
installed, 4,096 training images (recovery learns only from the original model's outputs, so
more unlabelled images is the honest way to recover more). The test images are never used
to prune or recover; they only measure.
"""

from __future__ import annotations

import argparse
import gzip
import json
import platform
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import onnx  # noqa: E402

from edgeport.api import convert  # noqa: E402
from edgeport.data import Preprocess, load_dataset  # noqa: E402
from edgeport.frontends.onnx import graph_input_specs  # noqa: E402
from edgeport.pipeline.report import library_versions  # noqa: E402
from edgeport.prune.measure import gzip_size, onnx_stats  # noqa: E402
from edgeport.runtime.host import host_description  # noqa: E402
from edgeport.runtime.ort import OrtRunner  # noqa: E402
from edgeport.verify.evaluate import run_dataset  # noqa: E402
from edgeport.verify.latency import measure_side_by_side  # noqa: E402

EXAMPLES = REPO / "examples"
RESULTS = REPO / "bench" / "results" / "pruning.json"
FASHION_TRAIN = Path("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz")
BUDGET = 1.0


def unlabelled_training_images(path: Path, count: int, seed: int = 1) -> np.ndarray | None:
    """``count`` random Fashion-MNIST training images (uint8 [N, 28, 28], no labels), or None
    when Debian's dataset-fashion-mnist is not installed."""
    if not FASHION_TRAIN.exists():
        return None
    with gzip.open(FASHION_TRAIN, "rb") as f:
        data = f.read()
    images = np.frombuffer(data, np.uint8, offset=16).reshape(-1, 28, 28)
    chosen = np.random.default_rng(seed).choice(len(images), count, replace=False)
    np.savez_compressed(path, x=images[chosen])
    return images[chosen]


def run_convert(name: str, out: Path, calibration: Path, **options) -> dict:
    """One edgeport conversion of the example state_dict; returns its report (gate failures too)."""
    from edgeport.core.errors import GateFailed
    from edgeport.reports.json import read_report

    started = time.perf_counter()
    settings = {
        "model_class": str(EXAMPLES / "fashion_cnn.py") + ":FashionCNN",
        "input_shape": "1,1,28,28",
        "dynamic_batch": True,
        "output_format": "onnx",
        "calibration_data": str(calibration),
        "calibration_samples": 8192,
        "eval_data": str(EXAMPLES / "fashion_mnist_test_1k.npz"),
        "max_accuracy_drop": BUDGET,
        "output_dir": str(out),
        **options,
    }
    try:
        convert(str(EXAMPLES / "fashion_cnn_state_dict.pt"), **settings)
    except GateFailed:
        pass
    report = read_report(out / "report.json")
    report["_seconds"] = round(time.perf_counter() - started, 1)
    print(f"  {name}: {report['_seconds']} s, gate {report['gate']['drop']:.2f} pts {report['status']}", flush=True)
    return report


def main() -> None:
    """Prune + recover + quantize with edgeport, then measure every model side by side."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prune", default="channels:0.3")
    parser.add_argument("--finetune_steps", type=int, default=300)
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-pruning-") as name:
        tmp = Path(name)
        calibrations = {"bundled 256 images": EXAMPLES / "fashion_mnist_calib.npz"}
        if unlabelled_training_images(tmp / "train_4096.npz", 4096) is not None:
            calibrations["4,096 unlabelled training images"] = tmp / "train_4096.npz"
        else:
            print("dataset-fashion-mnist not installed: only the bundled calibration set is run")

        print("converting (edgeport):", flush=True)
        reports = {
            "int8 (no pruning)": run_convert("int8, no pruning", tmp / "int8", calibrations["bundled 256 images"])
        }
        bundles = {"int8 (no pruning)": tmp / "int8"}
        for label, calibration in calibrations.items():
            key = f"{args.prune} + {args.finetune_steps} steps, {label}"
            out = tmp / f"pruned-{len(bundles)}"
            reports[key] = run_convert(
                key, out, calibration, quantization="int8", prune=args.prune, finetune_steps=args.finetune_steps
            )
            bundles[key] = out

        # Unstructured, for contrast: 50% zeros, no budget; ONNX Runtime and LiteRT both timed
        # against the original in one run by the pipeline itself.
        magnitude = {}
        for fmt in ("onnx", "tflite"):
            key = f"magnitude:0.5 fp32 ({fmt})"
            out = tmp / f"magnitude-{fmt}"
            magnitude[fmt] = reports[key] = run_convert(
                key,
                out,
                calibrations["bundled 256 images"],
                quantization="none",
                output_format=fmt,
                prune="magnitude:0.5",
                max_accuracy_drop=None,
            )
            if fmt == "onnx":
                bundles[key] = out

        first = next(iter(bundles.values()))
        models = {"original fp32": first / "baseline_fp32.onnx"}
        models["int8 (no pruning)"] = bundles["int8 (no pruning)"] / "model.onnx"
        for key, out in list(bundles.items())[1:]:
            models[f"pruned fp32 [{key}]"] = out / "pruned_fp32.onnx"
            if not key.startswith("magnitude"):
                models[f"pruned int8 [{key}]"] = out / "model.onnx"

        specs = graph_input_specs(onnx.load(str(models["original fp32"])))
        test = load_dataset(str(EXAMPLES / "fashion_mnist_test_1k.npz"), specs, None, Preprocess())
        runners = {label: OrtRunner(path, args.threads) for label, path in models.items()}
        outputs = {label: run_dataset(r, test, 50, True)[0] for label, r in runners.items()}
        top1 = {label: float(np.mean(o.argmax(1) == test.labels) * 100) for label, o in outputs.items()}
        print(f"timing {len(runners)} models interleaved, {args.runs} runs each after warm-up ...", flush=True)
        feeds = test.batch(0, 1)
        latency = measure_side_by_side(runners, feeds, args.runs, 100)
        base = models["original fp32"]
        base_stats = onnx_stats(onnx.load(str(base)), specs)
        rows = []
        for label, path in models.items():
            stats = onnx_stats(onnx.load(str(path)), specs)
            rows.append(
                {
                    "model": label,
                    "params": stats["params"],
                    "macs": stats["macs"],
                    "macs_removed": 1 - stats["macs"] / base_stats["macs"],
                    "bytes": path.stat().st_size,
                    "gzip_bytes": gzip_size(path),
                    "top1": top1[label],
                    "top1_drop": top1["original fp32"] - top1[label],
                    "p50_ms": latency[label]["p50_ms"],
                    "p90_ms": latency[label]["p90_ms"],
                    "speedup": latency["original fp32"]["p50_ms"] / latency[label]["p50_ms"],
                }
            )

    print(f"\n{'model':<78} {'MACs':>11} {'-MACs':>6} {'top-1':>6} {'drop':>6} {'p50 ms':>8} {'speedup':>7}")
    for row in rows:
        print(
            f"{row['model']:<78} {row['macs']:>11,} {row['macs_removed']:>6.1%} {row['top1']:>6.2f} "
            f"{row['top1_drop']:>6.2f} {row['p50_ms']:>8.4f} {row['speedup']:>6.2f}x"
        )
    for fmt, report in magnitude.items():
        final = report["pruning"]["stages"][-1]
        runtime = "LiteRT" if fmt == "tflite" else "ONNX Runtime"
        print(
            f"magnitude:0.5 ({fmt}): {report['pruning']['what_it_buys']}; artifact vs original fp32 in "
            f"{runtime}: {final['speedup']:.2f}x, gzip {final['gzip_bytes']:,} B"
        )
    checks = {}
    for key in [k for k in list(bundles)[1:] if not k.startswith("magnitude")]:
        fp32 = next(r for r in rows if r["model"] == f"pruned fp32 [{key}]")
        int8 = next(r for r in rows if r["model"] == f"pruned int8 [{key}]")
        checks[key] = {
            "macs_removed_ge_30pct": fp32["macs_removed"] >= 0.30,
            "fp32_speedup_ge_1.25x": fp32["speedup"] >= 1.25,
            "fp32_top1_within_1pt": fp32["top1_drop"] <= BUDGET + 1e-9,
            "int8_top1_within_1pt": int8["top1_drop"] <= BUDGET + 1e-9,
        }
        print(f"{key}: {checks[key]}")
    result = {
        "benchmark": "structured pruning + recovery + int8 on the Fashion-MNIST example (issue 8)",
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "options": vars(args) | {"max_accuracy_drop": BUDGET},
        "latency": {"batch": 1, "threads": args.threads, "runs": args.runs, "warmup": 100, "interleaved": True},
        "rows": rows,
        "checks": checks,
        "pruning_sections": {k: r.get("pruning") for k, r in reports.items()},
        "magnitude": {
            fmt: {
                "what_it_buys": r["pruning"]["what_it_buys"],
                "stages": r["pruning"]["stages"],
                "artifact_runtime": r["latency"].get("measured"),
            }
            for fmt, r in magnitude.items()
        },
        "gates": {k: r["gate"] for k, r in reports.items()},
        "convert_seconds": {k: r["_seconds"] for k, r in reports.items()},
        "host": host_description(),
        "python": platform.python_version(),
        "libraries": library_versions(),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
