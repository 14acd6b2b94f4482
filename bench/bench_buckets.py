"""Benchmark: shape buckets (issue 18) on all-MiniLM-L6-v2 with real sentences at their natural
length: buckets seq=16,32,64,128 against one model padded to 128, both int8 from one plan.

    .venv/bin/python bench/bench_buckets.py [--runs 7] [--buckets seq=16,32,64,128]

One ``edgeport.convert`` (the CLI's ``--output_format onnx --quantization auto --optimize_for cpu
--metric cosine --buckets ...`` on the packaged folder, calibrated on 25 sentences, verified on 150 others) gives
the bucket artifacts; ``model_seq128.onnx`` in the same bundle is the single padded model (the
same plan at 128). For every eval sentence, tokenized at its natural length, edgeport.runtime's
bucket rule, the padded-128 model and the fp32 model at the natural length are timed side by
side (interleaved, medians of ``--runs`` calls after one warm-up, one thread); the mean over the
sentence-length distribution is the figure. Outputs (the sentence embedding) are compared by
cosine with the fp32 model at the natural length. Writes bench/results/buckets.json.
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
sys.path.insert(0, str(REPO / "bench"))

from models_minilm import minilm_folder, real_sentences, split_sentences  # noqa: E402

from edgeport.api import convert  # noqa: E402
from edgeport.pipeline.report import library_versions  # noqa: E402
from edgeport.runtime.bundle import load_bundle  # noqa: E402
from edgeport.runtime.host import host_description  # noqa: E402
from edgeport.runtime.ort import OrtRunner  # noqa: E402

RESULTS = REPO / "bench" / "results" / "buckets.json"


def median_ms(call, feeds: dict[str, np.ndarray], runs: int) -> float:
    """The median wall time of ``runs`` calls of ``call(feeds)`` after one warm-up, in ms."""
    call(feeds)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        call(feeds)
        times.append(time.perf_counter() - start)
    return float(np.median(times) * 1000)


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity of two arrays, flattened."""
    x, y = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
    return float(np.dot(x, y) / (np.linalg.norm(x) * np.linalg.norm(y)))


def measure(bundle: Path, sentences: list[str], runs: int) -> dict:
    """Per sentence: latency of the bucket rule, the padded-128 model and fp32 natural; cosines."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(minilm_folder()), local_files_only=True)
    bucketed = load_bundle(bundle, threads=1)
    rule = bucketed.buckets
    largest = rule.files[-1]
    padded = load_bundle(bundle, threads=1)
    padded.buckets = type(rule)(rule.axis, rule.sizes[-1:], [largest], rule.inputs, rule.outputs, rule.pads, rule.mask)
    fp32 = OrtRunner(bundle / "baseline_fp32.onnx", threads=1)
    rows = []
    for sentence in sentences:
        encoded = tokenizer(sentence, truncation=True, max_length=rule.sizes[-1], return_tensors="np")
        feeds = {name: encoded[name].astype(np.int64) for name in fp32.input_names}
        reference = fp32.run(feeds)[0]
        rows.append(
            {
                "tokens": int(feeds["input_ids"].shape[1]),
                "bucket": rule.sizes[rule.choose(feeds["input_ids"].shape[1])],
                "buckets_ms": median_ms(bucketed.run, feeds, runs),
                "padded_ms": median_ms(padded.run, feeds, runs),
                "fp32_natural_ms": median_ms(fp32.run, feeds, runs),
                "buckets_cosine": cosine(next(iter(bucketed.run(feeds).values())), reference),
                "padded_cosine": cosine(next(iter(padded.run(feeds).values())), reference),
            }
        )
    return summarize(rows, rule.sizes)


def summarize(rows: list[dict], sizes: list[int]) -> dict:
    """Means over the sentences, the speedup, the length distribution and the per-bucket counts."""
    mean = {key: float(np.mean([r[key] for r in rows])) for key in ("buckets_ms", "padded_ms", "fp32_natural_ms")}
    tokens = [r["tokens"] for r in rows]
    return {
        "sentences": len(rows),
        "tokens": {"min": min(tokens), "median": float(np.median(tokens)), "max": max(tokens)},
        "per_bucket": {str(s): sum(r["bucket"] == s for r in rows) for s in sizes},
        "mean_latency_ms": {k: round(v, 3) for k, v in mean.items()},
        "speedup_buckets_vs_padded_128": round(mean["padded_ms"] / mean["buckets_ms"], 2),
        "cosine_vs_fp32_natural": {
            "buckets_min": round(min(r["buckets_cosine"] for r in rows), 6),
            "buckets_mean": round(float(np.mean([r["buckets_cosine"] for r in rows])), 6),
            "padded_min": round(min(r["padded_cosine"] for r in rows), 6),
        },
        # The gate's cosine measure (100 x (1 - mean cosine)) against its default budget of 1 point.
        "drop_points_vs_fp32_natural": round(100 * (1 - float(np.mean([r["buckets_cosine"] for r in rows]))), 3),
        "within_default_budget": bool(100 * (1 - float(np.mean([r["buckets_cosine"] for r in rows]))) <= 1.0),
        "rows": rows,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--buckets", default="seq=16,32,64,128")
    # auto: the search runs once on the dynamic model within the cosine budget; every bucket
    # re-applies its plan. Plain static int8 is much faster to build but far off fp32 on MiniLM.
    parser.add_argument("--quantization", default="auto")
    parser.add_argument("--keep", help="keep the bundle in this folder")
    args = parser.parse_args()
    evaluation, calibration = split_sentences(real_sentences())
    with tempfile.TemporaryDirectory(prefix="bench-buckets-") as name:
        tmp = Path(args.keep) if args.keep else Path(name)
        tmp.mkdir(parents=True, exist_ok=True)
        calib_file, eval_file = tmp / "calibration.txt", tmp / "evaluation.txt"
        calib_file.write_text("\n".join(calibration) + "\n")
        eval_file.write_text("\n".join(evaluation) + "\n")
        started = time.perf_counter()
        result = convert(
            str(minilm_folder()),
            output_format="onnx",
            quantization=args.quantization,
            optimize_for="cpu",
            calibration_data=str(calib_file),
            eval_data=str(eval_file),
            metric="cosine",
            buckets=args.buckets,
            latency_runs=50,
            output_dir=str(tmp / "bundle"),
        )
        convert_s = time.perf_counter() - started
        figures = measure(result.bundle_dir, evaluation, args.runs)
    figures["convert_s"] = round(convert_s, 1)
    figures["verified_in_convert"] = result.report["buckets"]
    figures["gate"] = result.report["gate"]
    document = {
        "what": __doc__.splitlines()[0],
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "buckets": args.buckets,
        "quantization": args.quantization,
        "plan": (result.report.get("search") or {}).get("base_scheme", args.quantization),
        "runs_per_sentence": args.runs,
        "host": host_description(),
        "python": platform.python_version(),
        "libraries": library_versions(),
        **figures,
    }
    RESULTS.write_text(json.dumps(document, indent=2) + "\n")
    short = {k: v for k, v in document.items() if k not in ("rows", "host", "libraries", "verified_in_convert", "gate")}
    print(json.dumps(short, indent=2))
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
