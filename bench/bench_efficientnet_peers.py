"""Benchmark: EfficientNet-Lite0 (ImageNet weights) in ONNX Runtime CPU, fp32 vs the peers'
int8/fp16 recipes, side by side in one run.

    .venv/bin/python bench/bench_efficientnet_peers.py [--runs 300] [--calib 64]

Accuracy: top-1 / top-5 agreement with fp32 on 108 deterministic crops of bundled photos
(bench/models_efficientnet.py); calibration uses 64 other crops (mirrored, other windows).
Latency: batch 1, 1 thread, no spinning, all runners interleaved (measure_side_by_side),
after a warm-up; ratio = fp32 p50 / config p50 in the same run. Size ratio = fp32 bytes /
artifact bytes. Configurations:

- fp32: the exported model (ORT applies its own graph optimizations at load time).
- ORT static defaults: quant_pre_process, then quantize_static with defaults (QDQ, int8
  activations and weights, per-tensor, MinMax) - the recipe of ORT's documentation.
- ORT static per-channel U8S8: same, uint8 activations, int8 per-channel weights.
- Optimum avx512_vnni static: ORTQuantizer + AutoQuantizationConfig.avx512_vnni(is_static=True,
  per_channel=True) + AutoCalibrationConfig.minmax, on the exported model as given (Optimum
  does not run quant_pre_process).
- fp16: onnxconverter-common float16 with keep_io_types=True.
- edgeport --quantization auto (calibrates and selects on the calibration crops only);
  the hand-tuned exploration recipe it learnt from is bench/efficientnet_explore.py.

Prints a table and writes bench/results/efficientnet_peers.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import warnings
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

import onnx  # noqa: E402
from models_efficientnet import calibration_crops, export_efficientnet_onnx, photo_crops  # noqa: E402

from edgeport.runtime.host import host_description  # noqa: E402
from edgeport.runtime.ort import OrtRunner  # noqa: E402
from edgeport.verify.latency import measure_side_by_side  # noqa: E402

RESULTS = REPO / "bench" / "results" / "efficientnet_peers.json"


class _Reader:
    """ORT CalibrationDataReader over an [n,3,H,W] array, one image per batch."""

    def __init__(self, data: np.ndarray, input_name: str = "input") -> None:
        self.data, self.i, self.input_name = data, 0, input_name

    def get_next(self):
        if self.i >= len(self.data):
            return None
        self.i += 1
        return {self.input_name: self.data[self.i - 1 : self.i]}

    def rewind(self) -> None:
        self.i = 0


def ort_static(fp32: Path, out: Path, calib: np.ndarray, input_name: str = "input", **kwargs) -> Path:
    """quant_pre_process then quantize_static(**kwargs) (QDQ)."""
    from onnxruntime.quantization import CalibrationDataReader, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(_Reader, CalibrationDataReader):
        pass

    pre = out.with_name(out.stem + "_pre.onnx")
    quant_pre_process(str(fp32), str(pre))
    quantize_static(str(pre), str(out), Reader(calib, input_name), **kwargs)
    return out


def optimum_avx512_vnni(
    fp32: Path, out: Path, calib: np.ndarray, per_channel: bool = True, input_name: str = "input"
) -> Path:
    """Optimum's ORTQuantizer with AutoQuantizationConfig.avx512_vnni(is_static=True) and MinMax."""
    from types import SimpleNamespace

    from optimum.onnxruntime import ORTQuantizer
    from optimum.onnxruntime.configuration import AutoCalibrationConfig, AutoQuantizationConfig

    class Rows(list):  # the bits of datasets.Dataset that Optimum reads (datasets is not installed)
        info = SimpleNamespace(builder_name="bundled_photos", config_name="crops")
        split = "calibration"

        @property
        def num_rows(self) -> int:
            return len(self)

    rows = Rows({input_name: image} for image in calib)
    work = out.parent / (out.stem + "_optimum")
    work.mkdir(parents=True, exist_ok=True)
    src = work / "model.onnx"
    src.write_bytes(fp32.read_bytes())
    quantizer = ORTQuantizer.from_pretrained(work, file_name="model.onnx")
    qconfig = AutoQuantizationConfig.avx512_vnni(is_static=True, per_channel=per_channel)
    ranges = quantizer.fit(rows, AutoCalibrationConfig.minmax(rows), onnx_augmented_model_name=work / "augmented.onnx")
    saved = quantizer.quantize(qconfig, save_dir=work, calibration_tensors_range=ranges)
    out.write_bytes(Path(saved).read_bytes() if Path(saved).is_file() else (work / "model_quantized.onnx").read_bytes())
    return out


def fp16(fp32: Path, out: Path) -> Path:
    """onnxconverter-common float16 with float32 inputs/outputs; checked by onnx.checker."""
    from onnxconverter_common import float16

    model = float16.convert_float_to_float16(onnx.load(str(fp32)), keep_io_types=True)
    onnx.checker.check_model(model)
    onnx.save(model, str(out))
    return out


def agreement(reference: np.ndarray, logits: np.ndarray) -> tuple[float, float]:
    """Top-1 agreement and top-5 agreement (fp32 top-1 class within the config's top 5)."""
    top1 = float(np.mean(reference.argmax(1) == logits.argmax(1)))
    top5 = np.argsort(-logits, 1)[:, :5]
    return top1, float(np.mean([reference[i].argmax() in top5[i] for i in range(len(reference))]))


def all_logits(path: Path, images: np.ndarray) -> np.ndarray:
    runner = OrtRunner(path, threads=1)
    return np.concatenate([runner.run({"input": images[i : i + 1]})[0] for i in range(len(images))])


def build_models(tmp: Path, calib: np.ndarray, include_edgeport: bool = True) -> dict[str, Path]:
    from onnxruntime.quantization import QuantFormat, QuantType

    fp32 = export_efficientnet_onnx(tmp / "fp32.onnx")
    models = {"fp32": fp32}
    models["ORT static defaults (S8S8 per-tensor)"] = ort_static(fp32, tmp / "ort_default.onnx", calib)
    models["ORT static per-channel U8S8"] = ort_static(
        fp32, tmp / "ort_u8s8_pc.onnx", calib, quant_format=QuantFormat.QDQ,
        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=True,
    )  # fmt: skip
    models["Optimum avx512_vnni static per-channel"] = optimum_avx512_vnni(fp32, tmp / "optimum_vnni.onnx", calib)
    models["fp16 (onnxconverter-common)"] = fp16(fp32, tmp / "fp16.onnx")
    if include_edgeport:
        models[EDGEPORT] = edgeport_auto(fp32, tmp, calib)
    return models


EDGEPORT = "edgeport auto (cosine >= 0.9985)"
EDGEPORT_FACTS: dict = {}


def edgeport_auto(fp32: Path, tmp: Path, calib: np.ndarray) -> Path:
    """edgeport's own search, as a user runs it. It calibrates and selects plans on the 64
    calibration crops only; the 108 evaluation crops are never seen by it.

    Budget: mean logit cosine >= 0.9985 (``--metric cosine --max_accuracy_drop 0.15``). Top-1
    agreement on 64 crops moves in steps of 1.6 points and many crops are near-ties, so it
    selects poorly (a 5-point top-1 budget kept every layer int8: 0.917 held-out); cosine
    is the stable signal (bench/results/efficientnet_explore.md)."""
    from edgeport.api import convert

    data = tmp / "calibration.npz"
    np.savez(data, x=calib)
    result = convert(
        str(fp32),
        quantization="auto",
        optimize_for="x86-avx512-vnni",
        metric="cosine",
        max_accuracy_drop=0.15,
        calibration_data=str(data),
        eval_data=str(data),
        output_dir=str(tmp / "edgeport_bundle"),
        latency_runs=50,
    )
    search = result.report["search"]
    print(
        f"edgeport auto: base {search['base_scheme']}, kept in fp32: {search['chosen']['kept_float']}; "
        f"{len(search['points'])} plans searched; bases: {search['base_points']}"
    )
    EDGEPORT_FACTS.update(
        {
            "base_scheme": search["base_scheme"],
            "kept_float": search["chosen"]["kept_float"],
            "base_points": search["base_points"],
            "points": search["points"],
        }
    )
    return result.artifact


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--calib", type=int, default=64)
    parser.add_argument("--no-edgeport", action="store_true", help="peers only")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")

    images = photo_crops(108)
    calib = calibration_crops(args.calib)
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        models = build_models(tmp, calib, include_edgeport=not args.no_edgeport)
        reference = all_logits(models["fp32"], images)
        accuracy = {name: agreement(reference, all_logits(path, images)) for name, path in models.items()}
        sizes = {name: path.stat().st_size for name, path in models.items()}
        runners = {name: OrtRunner(path, threads=1) for name, path in models.items()}
        latency = measure_side_by_side(runners, {"input": images[:1]}, args.runs, args.warmup)

    rows = []
    for name in models:
        rows.append(
            {
                "config": name,
                "top1_agreement": accuracy[name][0],
                "top5_agreement": accuracy[name][1],
                "p50_ms": latency[name]["p50_ms"],
                "speedup_vs_fp32": latency["fp32"]["p50_ms"] / latency[name]["p50_ms"],
                "size_bytes": sizes[name],
                "size_ratio_vs_fp32": sizes["fp32"] / sizes[name],
            }
        )
    print(f"{'config':42} {'top-1':>6} {'top-5':>6} {'p50 ms':>8} {'speedup':>8} {'size':>6}")
    for r in rows:
        print(
            f"{r['config']:42} {r['top1_agreement']:6.3f} {r['top5_agreement']:6.3f} {r['p50_ms']:8.3f} "
            f"{r['speedup_vs_fp32']:7.2f}x {r['size_ratio_vs_fp32']:5.2f}x"
        )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "benchmark": "EfficientNet-Lite0 ONNX Runtime CPU, batch 1, 1 thread, interleaved runs",
                "date": datetime.now(UTC).isoformat(timespec="seconds"),
                "eval": "top-1/top-5 agreement with fp32 on 108 crops of bundled scikit-image/scikit-learn photos",
                "calibration_images": int(len(calib)),
                "runs": args.runs,
                "warmup": args.warmup,
                "rows": rows,
                "edgeport": EDGEPORT_FACTS,
                "host": host_description(),
                "machine": platform.machine(),
                "note": "2-core machine shared with other benchmarks: absolute ms are noisy; "
                "ratios come from one interleaved run",
            },
            indent=2,
        )
        + "\n"
    )
    print(f"saved {RESULTS.relative_to(REPO)}")


if __name__ == "__main__":
    main()
