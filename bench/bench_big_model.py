"""Big models (issue #21, point 4): peak memory of converting an ONNX model over protobuf's 2 GB
limit, as a multiple of its weight size. Target: below 2.5x.

Builds a synthetic ~3 GB model (a stack of 4096x16384 / 16384x4096 MatMul layers, a transformer
FFN's shape) with its weights in one external data file, written one tensor at a time, in a temp
folder deleted afterwards. Converts it with ``edgeport convert`` per scheme, each run in a child of
a small launcher process that reads the child's peak RSS with wait4 (a child forked from this
process would start at its high-water mark). Writes bench/results/big_model.json.

    PYTHONPATH=. .venv/bin/python bench/bench_big_model.py [--layers 12] [--schemes int8-dynamic,int8-weight]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

RESULTS = Path(__file__).resolve().parent / "results" / "big_model.json"
HIDDEN, INNER = 4096, 16384

# Runs the command in argv[1:] as its child and prints {"code", "peak_rss_bytes", "seconds"}.
LAUNCHER = """
import json, os, subprocess, sys, time
start = time.perf_counter()
child = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=open(os.environ["BENCH_LOG"], "w"))
_, status, usage = os.wait4(child.pid, 0)
print(json.dumps({"code": os.waitstatus_to_exitcode(status), "peak_rss_bytes": usage.ru_maxrss * 1024,
                  "seconds": round(time.perf_counter() - start, 1)}))
"""


def available_bytes() -> int:
    """MemAvailable from /proc/meminfo."""
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no MemAvailable in /proc/meminfo")


def build_model(folder: Path, layers: int) -> tuple[Path, int]:
    """Write the model and its data file tensor by tensor (never more than one in memory).
    Returns the model path and the weight bytes."""
    rng = np.random.default_rng(0)
    data_name = "big.onnx.data"
    nodes, initializers, current, offset = [], [], "x", 0
    with open(folder / data_name, "wb") as data:
        for i in range(layers):
            rows, cols = (HIDDEN, INNER) if i % 2 == 0 else (INNER, HIDDEN)
            weight = (rng.standard_normal((rows, cols), dtype=np.float32) / np.sqrt(rows)).astype(np.float32)
            raw = weight.tobytes()
            del weight
            tensor = TensorProto(name=f"w{i}", data_type=TensorProto.FLOAT, dims=[rows, cols])
            tensor.data_location = TensorProto.EXTERNAL
            for key, value in (("location", data_name), ("offset", str(offset)), ("length", str(len(raw)))):
                entry = tensor.external_data.add()
                entry.key, entry.value = key, value
            data.write(raw)
            offset += len(raw)
            del raw
            initializers.append(tensor)
            nodes.append(helper.make_node("MatMul", [current, f"w{i}"], [f"m{i}"], name=f"fc{i}"))
            current = f"m{i}"
            if i % 2 == 0:
                nodes.append(helper.make_node("Relu", [current], [f"r{i}"], name=f"relu{i}"))
                current = f"r{i}"
    graph = helper.make_graph(
        nodes,
        "big",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", HIDDEN])],
        [helper.make_tensor_value_info(current, TensorProto.FLOAT, ["batch", HIDDEN])],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    path = folder / "big.onnx"
    onnx.save(model, str(path))
    return path, offset


def convert(model: Path, scheme: str, out: Path, log: Path) -> dict:
    """One ``edgeport convert`` under the launcher; returns the launcher's figures."""
    command = [
        sys.executable, "-m", "edgeport.cli.main", "convert", "--input_model", str(model),
        "--quantization", scheme, "--output_dir", str(out), "--calibration_samples", "8",
        "--eval_samples", "8", "--latency_runs", "3",
    ]  # fmt: skip
    env = {**__import__("os").environ, "BENCH_LOG": str(log)}
    result = subprocess.run([sys.executable, "-c", LAUNCHER, *command], capture_output=True, text=True, env=env)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=12, help="MatMul layers of 256 MiB each [12: 3 GiB]")
    parser.add_argument("--schemes", default="int8-dynamic,int8-weight,int8,fp16")
    args = parser.parse_args()
    weight_bytes = args.layers * HIDDEN * INNER * 4
    free = available_bytes()
    print(f"weights {weight_bytes / 2**30:.2f} GiB, available memory {free / 2**30:.1f} GiB")
    if free < 3 * weight_bytes:
        sys.exit(f"not enough free memory for a fair run: {free / 2**30:.1f} GiB < 3 x the weights")
    runs = []
    with tempfile.TemporaryDirectory(prefix="edgeport-bench-big-") as name:
        folder = Path(name)
        model, weight_bytes = build_model(folder, args.layers)
        for scheme in args.schemes.split(","):
            out, log = folder / f"bundle-{scheme}", folder / f"{scheme}.log"
            start = time.perf_counter()
            figures = convert(model, scheme, out, log)
            figures.update(scheme=scheme, ratio=round(figures["peak_rss_bytes"] / weight_bytes, 2))
            if figures["code"] != 0:
                figures["stderr_tail"] = log.read_text()[-1500:]
            else:
                figures["artifact_bytes"] = sum(p.stat().st_size for p in out.glob("model.onnx*"))
            print(json.dumps(figures), f"({time.perf_counter() - start:.0f} s)", flush=True)
            runs.append(figures)
            shutil.rmtree(out, ignore_errors=True)
            save(weight_bytes, args.layers, free, runs)  # after each run: a partial result survives


def save(weight_bytes: int, layers: int, free: int, runs: list[dict]) -> None:
    """Write the runs; another scheme's run of the same model already in the file is kept."""
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    previous = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    done = {run["scheme"] for run in runs}
    if previous.get("weight_bytes") == weight_bytes:
        runs = [run for run in previous.get("runs", []) if run["scheme"] not in done] + runs
    result = {"weight_bytes": weight_bytes, "layers": layers, "available_bytes_before": free, "runs": runs}
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
