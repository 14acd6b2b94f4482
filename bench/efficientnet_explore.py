"""Exploration: an int8 ONNX Runtime quantization of EfficientNet-Lite0 that keeps top-1
agreement >= 0.95 with fp32 at >= 2x fp32 speed (CPU, 1 thread, batch 1).

    .venv/bin/python bench/efficientnet_explore.py            # sensitivity + ablation + latency
    .venv/bin/python bench/efficientnet_explore.py --quick    # fewer latency runs

The winning recipe (``build_best``), in order:

1. ``quant_pre_process`` (symbolic shape inference + ORT basic optimizations): folds the
   exporter's computed ``Pad`` (TF "SAME" padding) into the Convs' ``pads`` and drops the
   pad-computation subgraphs; the exporter already folded BatchNorm into Conv weights/bias.
2. Sensitivity ranking on the *calibration* crops (never the evaluation crops): quantize one
   group at a time (a Conv/Gemm/Add plus the Clip (ReLU6) that follows it, so the Clip is
   absorbed into the Q range as in the full model), measure the mean cosine of the logits
   vs fp32. Groups whose cosine loss is at least ``SENSITIVE_FRACTION`` of the worst group's
   loss stay fp32. On this model that selects the stem conv and both convs of block 0
   (112x112 layers); they are also the layers where int8 is *slower* than fp32 in ORT (stem:
   3 input channels), so keeping them fp32 costs no speed.
3. Analytic bias correction for every quantized Conv: with W_q the int8 symmetric
   per-output-channel rounding of W (scale max|W_o|/127) and mu the per-input-channel mean
   of the Conv input on the calibration crops, bias_o -= sum_{i,kh,kw} (W_q - W)[o,i,kh,kw]
   * mu_i (depthwise: the channel's own mean). Removes the systematic output shift that
   weight rounding causes, which dominates in depthwise convs.
4. ``quantize_static``: QDQ, activations QUInt8 (asymmetric), weights QInt8 symmetric
   per-channel, calibration Percentile 99.99 (64 calibration crops), nodes_to_exclude = the
   groups from step 2, default extra_options otherwise (Clip/Relu removed into the Q range).

Prints the sensitivity ranking, the ablation figures (108 evaluation crops), side-by-side
latency ratios, and the op counts/profiles of the graphs ORT runs; --json FILE also saves
them. Writes nothing to the repo (bench/results/efficientnet_explore.md summarizes a run).
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

import onnx  # noqa: E402
from models_efficientnet import calibration_crops, export_efficientnet_onnx, photo_crops  # noqa: E402
from onnx import numpy_helper  # noqa: E402

SENSITIVE_FRACTION = 0.2
PERCENTILE = 99.99
QUANT_OPS = ("Conv", "Gemm", "Add", "GlobalAveragePool")


# ----------------------------------------------------------------------------- helpers
class _Reader:
    def __init__(self, data: np.ndarray) -> None:
        self.data, self.i = data, 0

    def get_next(self):
        if self.i >= len(self.data):
            return None
        self.i += 1
        return {"input": self.data[self.i - 1 : self.i]}

    def rewind(self) -> None:
        self.i = 0


def _reader(data: np.ndarray):
    from onnxruntime.quantization import CalibrationDataReader

    class Reader(_Reader, CalibrationDataReader):
        pass

    return Reader(data)


def _session(model, threads: int = 2, optimize: bool = True):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.log_severity_level = 3
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if not optimize:
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    source = model.SerializeToString() if isinstance(model, onnx.ModelProto) else str(model)
    return ort.InferenceSession(source, so, providers=["CPUExecutionProvider"])


def logits_of(model, images: np.ndarray) -> np.ndarray:
    session = _session(model)
    return np.concatenate([session.run(None, {"input": images[i : i + 1]})[0] for i in range(len(images))])


def fidelity(reference: np.ndarray, logits: np.ndarray) -> dict[str, float]:
    top5 = np.argsort(-logits, 1)[:, :5]
    cos = np.sum(reference * logits, 1) / np.linalg.norm(reference, axis=1) / np.linalg.norm(logits, axis=1)
    return {
        "top1": float(np.mean(reference.argmax(1) == logits.argmax(1))),
        "top5": float(np.mean([reference[i].argmax() in top5[i] for i in range(len(reference))])),
        "cos": float(cos.mean()),
    }


def preprocess(fp32: Path, out: Path) -> Path:
    from onnxruntime.quantization.shape_inference import quant_pre_process

    quant_pre_process(str(fp32), str(out))
    return out


def quantize(
    src: Path,
    out: Path,
    calib: np.ndarray,
    exclude=(),
    only=None,
    method="MinMax",
    percentile=PERCENTILE,
    per_channel=True,
    activation="QUInt8",
    cache: Path | None = None,
    extra: dict | None = None,
) -> Path:
    """QDQ quantize_static with U8S8 per-channel by default."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    options = dict(extra or {})
    if method == "Percentile":
        options["CalibPercentile"] = percentile
    kwargs = {"calibration_cache_path": str(cache)} if cache is not None else {}
    quantize_static(
        str(src), str(out), _reader(calib), quant_format=QuantFormat.QDQ,
        activation_type=getattr(QuantType, activation), weight_type=QuantType.QInt8, per_channel=per_channel,
        calibrate_method=getattr(CalibrationMethod, method), nodes_to_exclude=list(exclude),
        nodes_to_quantize=only, extra_options=options, **kwargs,
    )  # fmt: skip
    return out


def groups(model_path: Path) -> list[list[str]]:
    """Quantizable nodes, each with the Clip (ReLU6) that consumes its output."""
    graph = onnx.load(str(model_path)).graph
    consumers = collections.defaultdict(list)
    for node in graph.node:
        for name in node.input:
            consumers[name].append(node)
    out = []
    for node in graph.node:
        if node.op_type in QUANT_OPS:
            out.append([node.name] + [c.name for c in consumers[node.output[0]] if c.op_type == "Clip"])
    return out


def sensitivity(pre: Path, calib: np.ndarray, workdir: Path, probe: np.ndarray | None = None) -> list[dict]:
    """Quantize one group at a time (U8S8 per-channel MinMax); cosine loss of the logits on ``probe``
    (default: the calibration crops)."""
    probe = calib if probe is None else probe
    reference = logits_of(pre, probe)
    cache = workdir / "sens_cache.json"
    rows = []
    for group in groups(pre):
        path = quantize(pre, workdir / "sens.onnx", calib, only=group, cache=cache)
        f = fidelity(reference, logits_of(path, probe))
        rows.append({"group": group, "cos_loss": 1.0 - f["cos"], "top1": f["top1"]})
    return sorted(rows, key=lambda r: -r["cos_loss"])


def select_fp32(ranking: list[dict], fraction: float = SENSITIVE_FRACTION) -> list[str]:
    """Nodes kept fp32: groups whose loss is >= ``fraction`` of the worst group's loss."""
    worst = ranking[0]["cos_loss"]
    return [name for row in ranking if row["cos_loss"] >= fraction * worst for name in row["group"]]


def analytic_bias_correction(src: Path, dst: Path, calib: np.ndarray, skip=()) -> Path:
    """bias -= (W_q - W) . E[input] for every Conv not in ``skip`` (int8 symmetric per-channel W_q)."""
    model = onnx.load(str(src))
    init = {i.name: i for i in model.graph.initializer}
    convs = [
        n for n in model.graph.node
        if n.op_type == "Conv" and n.input[1] in init and len(n.input) > 2 and n.input[2] in init and n.name not in skip
    ]  # fmt: skip
    probe = onnx.load(str(src))
    inputs = sorted({n.input[0] for n in convs})
    for name in inputs:
        probe.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    session = _session(probe, optimize=False)
    mean = {name: 0.0 for name in inputs}
    for i in range(len(calib)):
        for name, value in zip(inputs, session.run(inputs, {"input": calib[i : i + 1]}), strict=True):
            mean[name] = mean[name] + value.mean(axis=(0, 2, 3)) / len(calib)
    for node in convs:
        w = numpy_helper.to_array(init[node.input[1]])
        scale = np.abs(w).reshape(w.shape[0], -1).max(1) / 127.0
        scale[scale == 0] = 1.0
        s = scale[:, None, None, None]
        error = (np.clip(np.round(w / s), -127, 127) * s - w).sum(axis=(2, 3))  # [out, in/group]
        group = next((a.i for a in node.attribute if a.name == "group"), 1)
        mu = mean[node.input[0]]
        shift = error[:, 0] * mu if group > 1 and error.shape[1] == 1 else error @ mu
        bias = numpy_helper.to_array(init[node.input[2]]) - shift
        init[node.input[2]].CopyFrom(numpy_helper.from_array(bias.astype(np.float32), node.input[2]))
    onnx.save(model, str(dst))
    return dst


def build_best(fp32: Path, out: Path, calib: np.ndarray, ranking: list[dict] | None = None) -> Path:
    """The winning recipe (module docstring): returns the path of the int8 QDQ model."""
    work = out.parent / (out.stem + "_work")
    work.mkdir(parents=True, exist_ok=True)
    pre = preprocess(fp32, work / "pre.onnx")
    ranking = ranking or sensitivity(pre, calib, work)
    keep = select_fp32(ranking)
    corrected = analytic_bias_correction(pre, work / "bias_corrected.onnx", calib, skip=keep)
    return quantize(corrected, out, calib, exclude=keep, method="Percentile")


def optimized_ops(path: Path, out: Path) -> dict[str, int]:
    """Op counts of the graph ORT actually runs (ORT_ENABLE_ALL, saved via optimized_model_filepath)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.log_severity_level = 3
    so.optimized_model_filepath = str(out)
    ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    return dict(collections.Counter(n.op_type for n in onnx.load(str(out)).graph.node).most_common())


def node_profile(path: Path, images: np.ndarray, runs: int = 40) -> dict[str, float]:
    """Mean kernel time per op type (us) over ``runs`` single-image runs, 1 thread."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.log_severity_level = 3
    so.enable_profiling = True
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.profile_file_prefix = str(path.with_suffix("")) + "_profile"
    session = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    for i in range(runs):
        session.run(None, {"input": images[i % len(images) : i % len(images) + 1]})
    events = json.loads(Path(session.end_profiling()).read_text())
    per_op = collections.defaultdict(float)
    per_node = collections.defaultdict(float)
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            per_op[e["args"]["op_name"]] += e["dur"] / runs
            per_node[e["name"][: -len("_kernel_time")]] += e["dur"] / runs
    return {"per_op_us": dict(sorted(per_op.items(), key=lambda x: -x[1])),
            "top_nodes_us": dict(sorted(per_node.items(), key=lambda x: -x[1])[:8])}  # fmt: skip


# ----------------------------------------------------------------------------- main
def main() -> None:
    from edgeport.runtime.ort import OrtRunner
    from edgeport.verify.latency import measure_side_by_side

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures to this file")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    t0 = time.time()
    images = photo_crops(108)
    calib = calibration_crops(64)
    report: dict = {}
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        fp32 = export_efficientnet_onnx(tmp / "fp32.onnx")
        pre = preprocess(fp32, tmp / "pre.onnx")
        reference = logits_of(fp32, images)

        print("== sensitivity (one group quantized at a time, cosine loss on the calibration crops)")
        ranking = sensitivity(pre, calib, tmp)
        keep = select_fp32(ranking)
        for row in ranking[:12]:
            print(f"  {row['cos_loss']:.5f}  {'+'.join(row['group'])}")
        print("  kept fp32:", keep)
        report["sensitivity_top12"] = ranking[:12]
        report["kept_fp32"] = keep

        print(f"== ablation (108 evaluation crops)   [{time.time() - t0:.0f}s]")
        cache_pre = tmp / "cache_pre_pct.json"
        bc_all = analytic_bias_correction(pre, tmp / "bc_all.onnx", calib)
        bc_keep = analytic_bias_correction(pre, tmp / "bc_keep.onnx", calib, skip=keep)
        configs = {
            "U8S8 per-channel MinMax (all int8)": lambda p: quantize(pre, p, calib),
            "+ Percentile 99.99": lambda p: quantize(pre, p, calib, method="Percentile", cache=cache_pre),
            "+ bias correction (all int8, MinMax)": lambda p: quantize(bc_all, p, calib),
            "+ bias correction + Percentile (all int8)": lambda p: quantize(bc_all, p, calib, method="Percentile"),
            "sensitive fp32 only (MinMax)": lambda p: quantize(pre, p, calib, exclude=keep),
            "sensitive fp32 + bias correction (MinMax)": lambda p: quantize(bc_keep, p, calib, exclude=keep),
            "WINNER: sensitive fp32 + bias corr. + Percentile": lambda p: build_best(fp32, p, calib, ranking),
        }
        paths = {"fp32": fp32}
        rows = {}
        for i, (name, build) in enumerate(configs.items()):
            path = build(tmp / f"cfg{i}.onnx")
            paths[name] = path
            rows[name] = fidelity(reference, logits_of(path, images))
            print(
                f"  {name:52} top1 {rows[name]['top1']:.3f} top5 {rows[name]['top5']:.3f} cos {rows[name]['cos']:.5f}"
            )

        print(f"== latency, side by side, 1 thread   [{time.time() - t0:.0f}s]")
        runners = {name: OrtRunner(path, threads=1) for name, path in paths.items()}
        runs = 80 if args.quick else 200
        latency = measure_side_by_side(runners, {"input": images[:1]}, runs, 20)
        for name in paths:
            ratio = latency["fp32"]["p50_ms"] / latency[name]["p50_ms"]
            rows.setdefault(name, {"top1": 1.0, "top5": 1.0, "cos": 1.0})
            rows[name].update({"p50_ms": latency[name]["p50_ms"], "speedup": ratio})
            print(f"  {name:52} p50 {latency[name]['p50_ms']:.3f} ms  {ratio:.2f}x")
        report["ablation"] = rows

        print("== optimized graphs (what ORT runs)")
        winner = paths["WINNER: sensitive fp32 + bias corr. + Percentile"]
        for name in ("U8S8 per-channel MinMax (all int8)", "WINNER: sensitive fp32 + bias corr. + Percentile"):
            ops = optimized_ops(paths[name], tmp / "opt.onnx")
            print(f"  {name}: {ops}")
            report.setdefault("optimized_ops", {})[name] = ops
        for name, path in (
            ("fp32", fp32),
            ("U8S8 all int8", paths["U8S8 per-channel MinMax (all int8)"]),
            ("winner", winner),
        ):
            prof = node_profile(path, images)
            print(f"  profile {name}: {{{', '.join(f'{k}: {v:.0f}' for k, v in prof['per_op_us'].items())}}} us")
            report.setdefault("profile", {})[name] = prof
    print(f"done in {time.time() - t0:.0f}s")
    if args.json:
        args.json.write_text(json.dumps(report, indent=1, default=str) + "\n")


if __name__ == "__main__":
    main()
