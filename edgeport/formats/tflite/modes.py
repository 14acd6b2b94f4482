"""How a precision plan's scheme becomes a TFLite converter mode, and what that mode cannot express.

How each plan scheme is expressed (TF 2.21, onnx2tf 1.29.24):

========================  =====================================================================
``none``                  float32 model.
``fp16``                  float16 weights (DEQUANTIZE to float32 at load), float32 compute/io.
``int8-dynamic``          dynamic-range: int8 weights, activations quantized per op at run time.
                          TFLite leaves weights with fewer than 1024 elements in float32;
                          ``applied`` shows which.
``int8-weight``           the same dynamic-range file: the TFLite converter has no int8
                          weight-only (dequantize-then-float) mode for builtin ops.
``int4-weight``           not expressible with TFLite builtins: falls back to dynamic-range
                          int8, every int4 layer is listed in ``not_expressible`` (the pipeline
                          decides whether that is acceptable; the file is not int4-sized).
``int8``                  full integer with the calibration data: the converter calibrates
                          only (``_experimental_calibrate_only``), then ``mlir_quantize``
                          quantizes with ``denylisted_nodes`` = the ops of the layers the plan
                          keeps in float, so mixed plans stay mixed. io is float32, int8 or
                          uint8 (``io_dtype``).
``int16``                 16x8: int16 activations, int8 weights, calibrated (TFLite's
                          ``EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8``); ops
                          without a 16x8 kernel stay float. Whole-model only: TF's 16x8
                          quantizer takes no denylist. io is float32.
========================  =====================================================================

Per-layer plans are followed only in ``int8`` (float layers stay float32; an fp16 layer
inside an int8 model is kept float32, since TFLite cannot mix float16 weights with int8).
Other per-layer differences are listed in ``not_expressible``.
"""

from __future__ import annotations

from edgeport.core.plan import PrecisionPlan
from edgeport.core.vocabulary import CALIBRATED_SCHEMES

IO_DTYPES = ("float32", "int8", "uint8")
# plan scheme -> what the TFLite converter is asked for
SCHEME_MODES = {
    "none": "fp32",
    "fp16": "fp16",
    "int8-dynamic": "dynamic",
    "int8-weight": "dynamic",
    "int4-weight": "dynamic",
    "int8": "int8",
    "int16": "int16",
}
# The modes that quantize activations from calibration ranges: those of the calibrated schemes.
CALIBRATED_MODES = tuple(SCHEME_MODES[scheme] for scheme in CALIBRATED_SCHEMES)
FLOAT_PRECISIONS = ("fp32", "fp16")
DYNAMIC_MIN_ELEMENTS = 1024  # TFLite dynamic-range quantization skips smaller weights


def scheme_notes(plan: PrecisionPlan, mode: str, io_dtype: str) -> tuple[str, list[str]]:
    """Return ``(io_dtype, notes)``: the io dtype the file of ``mode`` can have (float32 unless
    full-integer int8) and the notes saying how the plan's scheme is expressed in it."""
    notes: list[str] = []
    if io_dtype != "float32" and mode != "int8":
        notes.append(f"io_dtype {io_dtype} applies to full-integer int8 only; inputs/outputs stay float32")
        io_dtype = "float32"
    if plan.scheme == "int8-weight":
        notes.append(
            "int8-weight is written as TFLite dynamic-range quantization (int8 weights, activations "
            "quantized at run time per op); TFLite builtins have no int8 weight-only float-compute mode"
        )
    if plan.scheme == "int4-weight":
        notes.append("int4-weight is not expressible with TFLite builtins: fell back to dynamic-range int8")
    if mode == "dynamic":
        notes.append(f"TFLite dynamic-range quantization leaves weights under {DYNAMIC_MIN_ELEMENTS} elements float32")
    return io_dtype, notes


def expected_deviations(plan: PrecisionPlan, mode: str) -> tuple[dict[str, str], dict[str, list[str]]]:
    """Return ``({layer: why not expressible}, {layer: nodes to keep float})`` before converting."""
    not_expressible: dict[str, str] = {}
    float_layers: dict[str, list[str]] = {}
    for name, layer in plan.layers.items():
        p = layer.precision
        if mode == "int8":
            if p in FLOAT_PRECISIONS:
                float_layers[name] = list(layer.nodes)
                if p == "fp16":
                    not_expressible[name] = "fp16 inside an int8 TFLite model is kept fp32 (no fp16+int8 mix)"
            elif p != "int8":
                not_expressible[name] = f"{p} inside a full-integer TFLite model becomes int8"
        elif mode == "dynamic":
            if p == "int4-weight":
                not_expressible[name] = "int4 weights are not expressible with TFLite builtins; stored as int8"
            elif p in FLOAT_PRECISIONS:
                not_expressible[name] = f"TFLite dynamic-range quantization has no per-layer exclusion; {p} not kept"
            elif p == "int8":
                not_expressible[name] = "int8 activations need a full-integer model; this one is dynamic-range"
        elif mode == "int16" and p != "int16":
            not_expressible[name] = f"TFLite 16x8 quantization is whole-model (no per-layer exclusion); {p} not kept"
        elif mode == "fp16" and p != "fp16":
            not_expressible[name] = f"TFLite float16 conversion is whole-model; {p} not kept"
        elif mode == "fp32" and p != "fp32":
            not_expressible[name] = f"scheme 'none' writes a float32 model; {p} not applied"
    return not_expressible, float_layers


def _want(precision: str, mode: str, is_float_kept: bool) -> str:
    """The precision a layer should end up in, in a file of ``mode``."""
    if mode == "int8":
        return "fp32" if is_float_kept else "int8"
    return {"fp32": "fp32", "fp16": "fp16", "dynamic": "int8-dynamic", "int16": "int16"}[mode]


def unapplied(
    plan: PrecisionPlan,
    mode: str,
    applied: dict[str, str],
    float_layers: dict[str, list[str]],
    not_expressible: dict[str, str],
) -> dict[str, str]:
    """Return ``not_expressible`` with every planned layer added whose precision in the file
    (``applied``) is not what a file of ``mode`` should hold, and why."""
    result = dict(not_expressible)
    for layer, got in applied.items():
        want = _want(plan.layers[layer].precision, mode, layer in float_layers)
        if got == want or layer in result:
            continue
        if got == "missing":
            result[layer] = "no TFLite op found for this layer (folded or fused away by the converter)"
        elif mode == "dynamic" and got == "fp32":
            result[layer] = f"kept fp32: TFLite dynamic-range skips weights under {DYNAMIC_MIN_ELEMENTS} elements"
        else:
            result[layer] = f"planned {plan.layers[layer].precision}, the TFLite converter produced {got}"
    return result
