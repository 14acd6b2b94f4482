"""Benchmark: all-MiniLM-L6-v2, fp32 ONNX vs the peers' int8/fp16 recipes and edgeport's
``--quantization auto``, embedding cosine on real sentences and latency side by side in one run.

    .venv/bin/python bench/bench_minilm_peers.py [--runs 300]

Batch 1, every sentence padded to 128 tokens, 1 thread, ORT CPU, spinning off; latency runs
are interleaved (measure_side_by_side) after a warm-up; speedup = fp32 p50 / config p50 in
the same run. Cosine: 150 evaluation sentences (scikit-learn DESCR texts); the static
recipe and edgeport (calibration and plan selection) use 25 other calibration sentences.
Prints a table and writes bench/results/minilm_peers.json.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(BENCH))

import onnx  # noqa: E402
from models_minilm import SEQ_LEN, encode_inputs, export_minilm_onnx, load_minilm, real_sentences, split_sentences  # noqa: E402

from edgeport.pipeline.report import library_versions  # noqa: E402
from edgeport.runtime.host import host_description  # noqa: E402
from edgeport.runtime.ort import OrtRunner  # noqa: E402
from edgeport.verify.latency import measure_side_by_side  # noqa: E402
from edgeport.verify.metrics import cosine_per_sample  # noqa: E402

RESULTS = BENCH / "results" / "minilm_peers.json"
PEER_REFERENCE = {  # measured earlier on this CPU (shared/STACK.md), for comparison only
    "ORT dynamic defaults": (0.957, 0.916, 2.16),
    "ORT dynamic per_channel + reduce_range": (0.991, 0.980, 2.13),
    "Optimum avx512_vnni dynamic (per_channel)": (0.9925, 0.985, 2.10),
    "ORT static QDQ defaults": (0.32, 0.09, 0.83),
    "fp16 (ORT transformers, keep_io_types)": (1.000, None, 0.95),
}


class FeedReader:
    """onnxruntime CalibrationDataReader over a list of feeds."""

    def __init__(self, feeds):
        self.feeds = feeds
        self.it = iter(feeds)

    def get_next(self):
        return next(self.it, None)

    def rewind(self):
        self.it = iter(self.feeds)


def build_configs(fp32: Path, tmp: Path, calib_feeds) -> dict[str, Path]:
    """Build every configuration from the fp32 ONNX; return name -> path."""
    from onnxruntime.quantization import quantize_dynamic, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    configs = {"fp32": fp32}
    p = tmp / "ort_dyn_default.onnx"
    quantize_dynamic(str(fp32), str(p))
    configs["ORT dynamic defaults"] = p

    p = tmp / "ort_dyn_pc_rr.onnx"
    quantize_dynamic(str(fp32), str(p), per_channel=True, reduce_range=True)
    configs["ORT dynamic per_channel + reduce_range"] = p

    pre = tmp / "pre.onnx"
    quant_pre_process(str(fp32), str(pre))
    p = tmp / "ort_static_qdq.onnx"
    quantize_static(str(pre), str(p), FeedReader(calib_feeds))  # QDQ, S8S8, per-tensor, MinMax
    configs["ORT static QDQ defaults"] = p

    from optimum.onnxruntime import ORTQuantizer
    from optimum.onnxruntime.configuration import AutoQuantizationConfig

    folder = tmp / "optimum_in"
    folder.mkdir()
    shutil.copy(fp32, folder / "model.onnx")
    quantizer = ORTQuantizer.from_pretrained(folder, file_name="model.onnx")
    quantizer.quantize(
        save_dir=tmp / "optimum_out",
        quantization_config=AutoQuantizationConfig.avx512_vnni(is_static=False, per_channel=True),
    )
    configs["Optimum avx512_vnni dynamic (per_channel)"] = tmp / "optimum_out" / "model_quantized.onnx"

    from onnxruntime.transformers.float16 import convert_float_to_float16

    fp16 = convert_float_to_float16(onnx.load(str(fp32)), keep_io_types=True)
    onnx.checker.check_model(fp16)
    p = tmp / "fp16.onnx"
    onnx.save(fp16, str(p))
    configs["fp16 (ORT transformers, keep_io_types)"] = p

    configs[EDGEPORT] = edgeport_auto(fp32, tmp, calib_feeds)
    return configs


EDGEPORT = "edgeport --quantization auto (budget: mean cosine >= 0.995)"


def edgeport_auto(fp32: Path, tmp: Path, calib_feeds) -> Path:
    """Run edgeport's own auto search, as a user would. Its search sees only the 25
    calibration sentences (as calibration and as the data it selects plans on), so the 150
    evaluation sentences below stay unseen: no selection on the reported figures."""
    from edgeport.api import convert

    calib = tmp / "calibration.npz"
    np.savez(calib, **{k: np.concatenate([f[k] for f in calib_feeds]) for k in calib_feeds[0]})
    result = convert(
        str(fp32),
        quantization="auto",
        optimize_for="x86-avx512-vnni",
        metric="cosine",
        max_accuracy_drop=0.5,
        calibration_data=str(calib),
        eval_data=str(calib),
        output_dir=str(tmp / "edgeport_bundle"),
        latency_runs=50,
    )
    search = result.report["search"]
    print(
        f"edgeport auto: base {search['base_scheme']}, {search['chosen']['kept_float_count']} layer(s) kept in "
        f"fp32, {len(search['points'])} plans searched; bases tried: {search['base_points']}"
    )
    EDGEPORT_FACTS.update(
        {
            "base_scheme": search["base_scheme"],
            "kept_float": search["chosen"]["kept_float"],
            "base_points": search["base_points"],
            "bundle_report_latency": result.report["latency"],
        }
    )
    return result.artifact


EDGEPORT_FACTS: dict = {}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=20)
    args = parser.parse_args()
    started = time.time()

    tokenizer, _ = load_minilm()
    evaluation, calibration = split_sentences(real_sentences())
    eval_feeds = encode_inputs(tokenizer, evaluation, SEQ_LEN)
    calib_feeds = encode_inputs(tokenizer, calibration, SEQ_LEN)

    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        fp32 = export_minilm_onnx(tmp / "fp32.onnx", SEQ_LEN)
        configs = build_configs(fp32, tmp, calib_feeds)
        embeddings = {}
        for name, path in configs.items():
            runner = OrtRunner(path)
            embeddings[name] = np.concatenate([runner.run(f)[0] for f in eval_feeds])
        # one feed of median real length; every feed has the same shape [1, 128]
        lengths = [int(f["attention_mask"].sum()) for f in eval_feeds]
        feed = eval_feeds[int(np.argsort(lengths)[len(lengths) // 2])]
        runners = {name: OrtRunner(path) for name, path in configs.items()}
        latency = measure_side_by_side(runners, feed, args.runs, args.warmup)
        sizes = {name: path.stat().st_size for name, path in configs.items()}

    rows = []
    for name in configs:
        cos = cosine_per_sample(embeddings["fp32"], embeddings[name])
        rows.append(
            {
                "config": name,
                "cos_mean": float(cos.mean()),
                "cos_min": float(cos.min()),
                "cos_p5": float(np.percentile(cos, 5)),
                "p50_ms": latency[name]["p50_ms"],
                "p90_ms": latency[name]["p90_ms"],
                "speedup": latency["fp32"]["p50_ms"] / latency[name]["p50_ms"],
                "size_mb": sizes[name] / 1e6,
                "size_ratio": sizes[name] / sizes["fp32"],
                "reference_figures": PEER_REFERENCE.get(name),
            }
        )
    print(f"{'configuration':52} {'cos mean':>9} {'cos min':>8} {'p50 ms':>7} {'speedup':>8} {'size':>5}  reference")
    for r in rows:
        ref = r["reference_figures"]
        ref_text = f"{ref[0]}/{ref[1]} @{ref[2]}x" if ref else ""
        print(
            f"{r['config']:52} {r['cos_mean']:9.5f} {r['cos_min']:8.5f} {r['p50_ms']:7.2f} "
            f"{r['speedup']:7.2f}x {r['size_ratio']:5.2f}  {ref_text}"
        )
    ours = rows[-1]
    dominated_by = [
        r["config"] for r in rows[1:-1] if r["cos_mean"] >= ours["cos_mean"] and r["speedup"] >= ours["speedup"]
    ]
    targets = {
        "mean_cosine_ge_0.995": ours["cos_mean"] >= 0.995,
        "min_cosine_ge_0.99": ours["cos_min"] >= 0.99,
        "speedup_ge_1.8x": ours["speedup"] >= 1.8,
        "no_peer_more_accurate_and_faster": not dominated_by,
    }
    print("targets (edgeport row):", ", ".join(f"{k}={'met' if v else 'MISSED'}" for k, v in targets.items()))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "benchmark": "all-MiniLM-L6-v2 sentence embeddings, fp32 vs peers' int8/fp16 ONNX, onnxruntime CPU, "
                "batch 1, seq 128 (padded), 1 thread, interleaved runs",
                "date": datetime.now(UTC).isoformat(timespec="seconds"),
                "runs": args.runs,
                "warmup": args.warmup,
                "eval_sentences": len(evaluation),
                "calibration_sentences": len(calibration),
                "latency_feed_real_tokens": int(feed["attention_mask"].sum()),
                "rows": rows,
                "targets": targets,
                "dominated_by": dominated_by,
                "edgeport": EDGEPORT_FACTS,
                "host": host_description(),
                "libraries": library_versions(),
                "seconds": round(time.time() - started, 1),
            },
            indent=2,
        )
        + "\n"
    )
    print(f"saved {RESULTS.relative_to(REPO)} ({time.time() - started:.0f} s)")


if __name__ == "__main__":
    main()
