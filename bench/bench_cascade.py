"""Benchmark: cascade routing (issue 18) on the bundled Fashion-MNIST CNN: the int8 artifact
(optionally channel-pruned) in front of its fp32 baseline, threshold picked by edgeport on the
calibration images, measured on the 1,000 labelled test images.

    .venv/bin/python bench/bench_cascade.py [--runs 3] [--skip_prune]

Each case runs ``edgeport.convert(..., cascade="fp32")`` as the CLI does and keeps the report's
``cascade`` section (expected mean latency from verify's side-by-side p50s). Then it serves the
bundle with ``edgeport.runtime`` at batch 1 over every test image, interleaved with the fp32
model alone (``runs`` rounds, medians per image), so the mean latency is also measured end to
end (softmax and routing in Python included). Writes bench/results/cascade.json.
"""

from __future__ import annotations

import argparse
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

from edgeport.api import convert  # noqa: E402
from edgeport.pipeline.report import library_versions  # noqa: E402
from edgeport.runtime.bundle import load_bundle  # noqa: E402
from edgeport.runtime.host import host_description  # noqa: E402

EXAMPLES = REPO / "examples"
RESULTS = REPO / "bench" / "results" / "cascade.json"
COMMON = {
    "output_format": "onnx",
    "quantization": "int8",
    "optimize_for": "cpu",
    "calibration_data": str(EXAMPLES / "fashion_mnist_calib.npz"),
    "eval_data": str(EXAMPLES / "fashion_mnist_test_1k.npz"),
    "cascade": "fp32",
}
PRUNED = {
    "model_class": str(EXAMPLES / "fashion_cnn.py") + ":FashionCNN",
    "input_shape": "1,1,28,28",
    "dynamic_batch": True,
    "prune": "channels:0.3",
    "finetune_steps": 300,
}


def served(bundle: Path, runs: int) -> dict[str, float]:
    """Time the cascade (edgeport.runtime, batch 1) and the fp32 model alone on every test image,
    interleaved; return the mean over images of each one's median time (ms), the small model's
    share of answers and the top-1 of the served answers."""
    data = np.load(EXAMPLES / "fashion_mnist_test_1k.npz")
    x = data["x"].astype(np.float32)
    x = (x / 255.0 if x.max() > 1.5 else x)[:, None]
    deployed = load_bundle(bundle, threads=1)
    large = deployed.runner(deployed.cascade.large)
    name = large.input_names[0]
    cascade_ms, large_ms = np.zeros((runs, len(x))), np.zeros((runs, len(x)))
    answers, escalated = np.zeros(len(x), dtype=int), np.zeros(len(x), dtype=bool)
    for sample in x[:20]:  # warm-up of both paths
        deployed.run_routed({name: sample[None]}), large.run({name: sample[None]})
    for r in range(runs):
        for i, sample in enumerate(x):
            feeds = {name: sample[None]}
            start = time.perf_counter()
            outputs, routed = deployed.run_routed(feeds)
            cascade_ms[r, i] = (time.perf_counter() - start) * 1e3
            start = time.perf_counter()
            large.run(feeds)
            large_ms[r, i] = (time.perf_counter() - start) * 1e3
            answers[i], escalated[i] = int(outputs[deployed.cascade.output].argmax()), bool(routed[0])
    cascade, alone = np.median(cascade_ms, axis=0), np.median(large_ms, axis=0)
    return {
        "cascade_mean_ms": round(float(cascade.mean()), 4),
        "fp32_alone_mean_ms": round(float(alone.mean()), 4),
        "speedup": round(float(alone.mean() / cascade.mean()), 3),
        "small_answers": round(float(1 - escalated.mean()), 4),
        "top1": round(float(np.mean(answers == data["y"]) * 100), 2),
    }


def case(name: str, source: str, runs: int, **options) -> dict:
    """Convert one case with --cascade fp32; return its report section and the served timing."""
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        result = convert(source, output_dir=str(Path(tmp) / "bundle"), **COMMON, **options)
        seconds = time.perf_counter() - started
        entry = {"case": name, "options": options, "convert_s": round(seconds, 1), "cascade": result.report["cascade"]}
        entry["served"] = served(result.bundle_dir, runs)
    e = entry["cascade"]["eval"]
    print(
        f"{name}: threshold {entry['cascade']['threshold']:.4f}, small {100 * e['small_answers']:.1f}%, "
        f"top-1 {e['accuracy']['cascade']:.2f} vs fp32 {e['accuracy']['large']:.2f} (drop {e['drop_vs_large']:.2f}), "
        f"expected {e['mean_latency_ms']['cascade']:.4f} vs {e['mean_latency_ms']['large']:.4f} ms; served "
        f"{entry['served']['cascade_mean_ms']:.4f} vs {entry['served']['fp32_alone_mean_ms']:.4f} ms"
    )
    return entry


def main() -> None:
    """Run the cases; print one line each and save bench/results/cascade.json."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--skip_prune", action="store_true")
    args = parser.parse_args()
    pt2 = str(EXAMPLES / "fashion_cnn.pt2")
    cases = [
        case("int8, default budget (1 point)", pt2, args.runs),
        case("int8, --max_accuracy_drop 0.5", pt2, args.runs, max_accuracy_drop=0.5),
    ]
    if not args.skip_prune:
        state = str(EXAMPLES / "fashion_cnn_state_dict.pt")
        name = "pruned channels 0.3 + int8, --max_accuracy_drop 1"
        cases.append(case(name, state, args.runs, max_accuracy_drop=1.0, **PRUNED))
    RESULTS.write_text(
        json.dumps(
            {
                "when": datetime.now(UTC).isoformat(timespec="seconds"),
                "host": host_description(),
                "python": platform.python_version(),
                "libraries": library_versions(),
                "cases": cases,
            },
            indent=1,
        )
        + "\n"
    )
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
