"""Benchmark: routing by input size (issue 18, ``--route size``) on all-MiniLM-L6-v2 with real
sentences at their natural length: the int8-dynamic artifact (small) and its fp32 baseline
(large), the length threshold picked by edgeport on the calibration sentences, measured on the
evaluation sentences.

    .venv/bin/python bench/bench_route_size.py [--budget 0.5] [--runs 3]

It runs ``edgeport.convert(..., cascade="fp32", route="size")`` as the CLI does and keeps the
report's ``cascade`` section (per sentence timed side by side at its natural length). A budget
tighter than the int8 model alone meets fails the artifact's own gate (exit 3, the bundle kept
and marked failed): the routed pair is what meets it. Then it serves the bundle with
``edgeport.runtime`` at batch 1 over every evaluation sentence, interleaved with the fp32 model
alone (``runs`` rounds, medians per sentence). Writes bench/results/route_size.json.
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
from edgeport.core.errors import GateFailed  # noqa: E402
from edgeport.pipeline.report import library_versions  # noqa: E402
from edgeport.runtime.bundle import load_bundle  # noqa: E402
from edgeport.runtime.host import host_description  # noqa: E402
from edgeport.runtime.ort import OrtRunner  # noqa: E402

RESULTS = REPO / "bench" / "results" / "route_size.json"


def served(bundle: Path, sentences: list[str], runs: int) -> dict[str, float]:
    """Time the routed pair (edgeport.runtime, batch 1) and the fp32 model alone on every
    sentence at its natural length, interleaved; return the mean over sentences of each one's
    median time (ms) and the small model's share of answers."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(minilm_folder()), local_files_only=True)
    routed = load_bundle(bundle, threads=1)
    fp32 = OrtRunner(bundle / "baseline_fp32.onnx", threads=1)
    times: dict[str, list[float]] = {"routed": [], "fp32": []}
    small = []
    for sentence in sentences:
        encoded = tokenizer(sentence, truncation=True, max_length=128, return_tensors="np")
        feeds = {name: encoded[name].astype(np.int64) for name in fp32.input_names}
        small.append(not routed.run_routed(feeds)[1][0])
        fp32.run(feeds)  # warm-up at this length
        runs_ms: dict[str, list[float]] = {"routed": [], "fp32": []}
        for i in range(runs):
            order = [("routed", routed.run), ("fp32", fp32.run)]
            for name, call in order if i % 2 == 0 else order[::-1]:
                start = time.perf_counter()
                call(feeds)
                runs_ms[name].append((time.perf_counter() - start) * 1000)
        for name, values in runs_ms.items():
            times[name].append(float(np.median(values)))
    mean = {name: float(np.mean(values)) for name, values in times.items()}
    return {
        "mean_ms_routed": round(mean["routed"], 3),
        "mean_ms_fp32": round(mean["fp32"], 3),
        "speedup": round(mean["fp32"] / mean["routed"], 2),
        "small_answers": round(float(np.mean(small)), 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--budget", type=float, default=0.5)
    parser.add_argument("--quantization", default="int8-dynamic")
    args = parser.parse_args()
    evaluation, calibration = split_sentences(real_sentences())
    with tempfile.TemporaryDirectory(prefix="bench-route-size-") as name:
        tmp = Path(name)
        (tmp / "calibration.txt").write_text("\n".join(calibration) + "\n")
        (tmp / "evaluation.txt").write_text("\n".join(evaluation) + "\n")
        started = time.perf_counter()
        try:
            result = convert(
                str(minilm_folder()),
                output_format="onnx",
                quantization=args.quantization,
                optimize_for="cpu",
                calibration_data=str(tmp / "calibration.txt"),
                eval_data=str(tmp / "evaluation.txt"),
                metric="cosine",
                cascade="fp32",
                route="size",
                max_accuracy_drop=args.budget,
                output_dir=str(tmp / "bundle"),
            )
            bundle, gate = result.bundle_dir, "passed"
        except GateFailed as exc:  # the routed pair over the budget: still measured below
            bundle, gate = Path(exc.bundle_dir), f"failed: {exc.message}"
        convert_s = time.perf_counter() - started
        report = json.loads((bundle / "report.json").read_text())
        figures = served(bundle, evaluation, args.runs)
    section = report["cascade"]
    section["calibration"].pop("curve", None)
    document = {
        "what": __doc__.splitlines()[0],
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "quantization": args.quantization,
        "budget": args.budget,
        "artifact_gate": gate,
        "convert_s": round(convert_s, 1),
        "cascade": section,
        "served": figures,
        "runs_per_sentence": args.runs,
        "host": host_description(),
        "python": platform.python_version(),
        "libraries": library_versions(),
    }
    RESULTS.write_text(json.dumps(document, indent=2) + "\n")
    print(json.dumps({k: document[k] for k in ("artifact_gate", "convert_s", "cascade", "served")}, indent=2))
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
