"""Benchmark: Core ML packages of the bundled Fashion-MNIST CNN and of EfficientNet-Lite0 for the
``metal`` profile: fp16, int8 weights, 8- and 4-bit palettization, int4 per block and auto, their
sizes read from the saved packages, and their **emulated** accuracy.

    .venv/bin/python bench/bench_coreml.py [--skip-efficientnet]

Core ML runs only on macOS, so on Linux the accuracy is emulated (the package's decompressed
weights in ONNX Runtime with fp16 rounding; see edgeport/formats/coreml/emulate.py): top-1 on
the 1,000-image Fashion-MNIST test subset, top-1 agreement with fp32 on 108 crops of bundled
photos for EfficientNet-Lite0. Latency is not run. Writes bench/results/coreml.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from edgeport.api import convert  # noqa: E402
from edgeport.core.errors import GateFailed  # noqa: E402
from edgeport.formats.coreml.tools import import_coremltools  # noqa: E402
from edgeport.pipeline.report import library_versions  # noqa: E402
from edgeport.runtime.coreml import coreml_version  # noqa: E402
from edgeport.runtime.host import host_description  # noqa: E402

EXAMPLES = REPO / "examples"
RESULTS = REPO / "bench" / "results" / "coreml.json"
SCHEMES = ("fp16", "int8-weight", "palettize-8", "palettize-4", "int4-weight", "auto")


def loads_with_coremltools(package: Path) -> bool:
    """True when coremltools opens the package (spec and weights; compiling needs macOS)."""
    ct = import_coremltools()
    model = ct.models.MLModel(str(package), skip_model_load=True)
    return model.get_spec().WhichOneof("Type") == "mlProgram"


def run_one(model: str, scheme: str, options: dict, out: Path) -> dict:
    """Convert one model with one scheme for ``metal``; return the figures from its report."""
    started = time.perf_counter()
    try:
        result = convert(
            model, output_format="coreml", quantization=scheme, optimize_for="metal", output_dir=str(out), **options
        )
        report, bundle = result.report, result.bundle_dir
    except GateFailed as exc:  # auto under a budget it could not meet: the bundle is still there
        bundle = Path(exc.bundle_dir)
        report = json.loads((bundle / "report.json").read_text())
    fidelity, structure = report["fidelity"], report["artifact_structure"]
    package = bundle / report["target"]["artifact"]
    applied = report["precision_plan"]["applied"] or {}
    counts: dict[str, int] = {}
    for precision in applied.values():
        counts[precision] = counts.get(precision, 0) + 1
    first = next(iter(fidelity["outputs"].values()))
    row = {
        "scheme": report["target"]["scheme"],
        "package_bytes": structure["package_bytes"],
        "weight_bin_bytes": structure["weight_bin_bytes"],
        "fp32_package_bytes": report["size"]["reference_bytes"],
        "loads_with_coremltools": loads_with_coremltools(package),
        "layers_by_precision": counts,
        "weight_storage": sorted({f"{w['storage']} {w.get('dtype')}" for w in structure["weights"]}),
        "emulated": True,
        "reference_top1": fidelity.get("reference_top1"),
        "emulated_top1": fidelity.get("artifact_top1"),
        "emulated_top1_agreement": fidelity.get("top1_agreement"),
        "emulated_cosine_mean": first["cosine_mean"],
        "samples": fidelity["samples"],
        "latency": report["latency"]["measured"],
        "route": next((n for n in report["notes"] if n.startswith("Core ML conversion route")), None),
        "seconds": round(time.perf_counter() - started, 1),
    }
    if report.get("search"):
        row["auto_budget_points"] = report["search"]["budget_points"]
        row["auto_met_budget"] = report["search"]["met_budget"]
    return row


def main() -> None:
    """Convert every model x scheme, print a table and write bench/results/coreml.json."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-efficientnet", action="store_true")
    args = parser.parse_args()
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        fashion = {
            "calibration_data": str(EXAMPLES / "fashion_mnist_calib.npz"),
            "eval_data": str(EXAMPLES / "fashion_mnist_test_1k.npz"),
        }
        results["fashion_cnn"] = {
            s: run_one(str(EXAMPLES / "fashion_cnn.pt2"), s, fashion, tmp / f"fashion-{s}") for s in SCHEMES
        }
        if not args.skip_efficientnet:
            from models_efficientnet import calibration_crops, photo_crops

            np.savez(tmp / "photos.npz", x=photo_crops(108))
            np.savez(tmp / "calib.npz", x=calibration_crops(64))
            effnet = {
                "input_shape": "1,3,224,224",
                "calibration_data": str(tmp / "calib.npz"),
                "eval_data": str(tmp / "photos.npz"),
            }
            model = f"{REPO / 'bench' / 'models_efficientnet.py'}:load_efficientnet_lite0"
            results["efficientnet_lite0"] = {s: run_one(model, s, effnet, tmp / f"effnet-{s}") for s in SCHEMES}
    for name, rows in results.items():
        print(f"\n{name}")
        print(f"{'scheme':12} {'package MB':>10} {'weights MB':>10} {'emulated top-1':>15} {'agreement %':>12}  layers")
        for scheme, row in rows.items():
            top1 = row["emulated_top1"]
            print(
                f"{scheme:12} {row['package_bytes'] / 1e6:10.3f} {row['weight_bin_bytes'] / 1e6:10.3f} "
                f"{'' if top1 is None else f'{top1:.2f}':>15} {row['emulated_top1_agreement']:12.2f}  "
                f"{row['layers_by_precision']}"
            )
    document = {
        "benchmark": "Core ML packages for the metal profile (apple-metal): sizes and emulated accuracy",
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "host": host_description(),
        "libraries": {**library_versions(), "coremltools": coreml_version()},
        "emulated": "Core ML cannot run on Linux: accuracy is emulated (the package's decompressed weights in ONNX "
        "Runtime, fp16 activations by rounding); latency not run. fashion_cnn: top-1 on the 1,000-image "
        "Fashion-MNIST test subset; efficientnet_lite0: top-1 agreement with fp32 on 108 crops of bundled photos.",
        "results": results,
    }
    RESULTS.write_text(json.dumps(document, indent=2) + "\n")
    print(f"\nwrote {RESULTS}")


if __name__ == "__main__":
    main()
