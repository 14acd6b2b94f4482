"""fp32-exact, data-driven graph rewrites that prepare an ONNX model for quantization
(SmoothQuant-style smoothing, bias correction). The plan's ``details`` switch them on; every
backend that quantizes from the fp32 ONNX (ONNX Runtime, TFLite) applies them the same way."""

from __future__ import annotations

from pathlib import Path

import onnx

from edgeport.core.plan import PrecisionPlan
from edgeport.data.dataset import Dataset

REWRITE_SAMPLES = 32


def calibrated_rewrite(
    source: Path, work: Path, calibration: Dataset | None, notes: list[str], what: str, rewrite
) -> Path:
    """Apply ``rewrite(model, feeds) -> (model, note)`` (a data-driven, fp32-exact graph
    rewrite) on calibration samples; return the rewritten file, or ``source`` without data."""
    if calibration is None or calibration.synthetic:
        notes.append(f"{what} skipped: it needs real calibration data")
        return source
    feeds = [calibration.batch(i, i + 1) for i in range(min(REWRITE_SAMPLES, len(calibration)))]
    model, note = rewrite(onnx.load(str(source)), feeds)
    out = work / f"{what.replace(' ', '_')}.onnx"
    onnx.save(model, str(out))
    notes.append(f"{what}: {note} on {len(feeds)} calibration samples")
    return out


def _smooth(source: Path, plan: PrecisionPlan, work: Path, calibration: Dataset | None, notes: list[str]) -> Path:
    """Apply SmoothQuant-style smoothing to the layers the plan quantizes; return the new file."""
    from edgeport.quantize.smoothing import smooth

    alpha = float(plan.details["smoothing"].get("alpha", 0.7))

    def rewrite(model: onnx.ModelProto, feeds):
        model, info = smooth(model, feeds, alpha, set(plan.nodes_in(plan.scheme)))
        return model, f"alpha {alpha}, {info['groups']} input tensor(s) rescaled for {info['matmuls']} MatMul(s)"

    return calibrated_rewrite(source, work, calibration, notes, "smoothing", rewrite)


def _correct_biases(
    source: Path, plan: PrecisionPlan, work: Path, calibration: Dataset | None, notes: list[str]
) -> Path:
    """Bias-correct the int8 convolutions of the plan; return the new file."""
    from edgeport.quantize.bias_correction import correct_biases

    bits = 7 if plan.details.get("reduce_range") else 8

    def rewrite(model: onnx.ModelProto, feeds):
        model, info = correct_biases(model, feeds, set(plan.nodes_in("int8")), bits)
        return model, f"{info['convs']} conv(s), largest shift {info['max_shift']:.3g}"

    return calibrated_rewrite(source, work, calibration, notes, "bias correction", rewrite)


def apply_rewrites(
    source: Path,
    plan: PrecisionPlan,
    work: Path,
    calibration: Dataset | None,
    notes: list[str],
    bias_correction: bool = True,
) -> Path:
    """Apply the rewrites ``plan.details`` asks for (smoothing, then bias correction of the int8
    convolutions) to ``source``; return the file to quantize (``source`` itself when none
    applies). ``bias_correction=False``: the backend corrects biases itself, on its own
    quantized model. Notes say what was done or skipped."""
    if plan.details.get("smoothing"):
        source = _smooth(source, plan, work, calibration, notes)
    if bias_correction and plan.details.get("bias_correction") and plan.scheme == "int8":
        source = _correct_biases(source, plan, work, calibration, notes)
    return source
