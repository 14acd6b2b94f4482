"""From a request to what the device runs: op classes and scheme resolution.

``op_class`` maps an ONNX op type to the op class whose costs a profile gives.
``resolve_scheme`` turns ``--quantization X --output_format F`` into the scheme the device
runs well for that format; when that is not X, it returns a decision (asked, done, why) for the
report, so that nothing is substituted silently.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from edgeport.core.errors import InputError
from edgeport.core.registry import format_entry, format_names
from edgeport.profiles.schema import SCHEMES, DeviceProfile, FormatTarget

_CONV = {"Conv", "ConvTranspose", "ConvInteger", "QLinearConv", "NhwcConv", "FusedConv", "DeformConv"}
_MATMUL = {
    "MatMul",
    "Gemm",
    "MatMulInteger",
    "QLinearMatMul",
    "MatMulNBits",
    "MatMulBnb4",
    "DynamicQuantizeMatMul",
    "MatMulIntegerToFloat",
    "FusedMatMul",
    "FusedGemm",
    "QGemm",
    "Einsum",
}
_ATTENTION = {
    "Attention",
    "MultiHeadAttention",
    "GroupQueryAttention",
    "PackedAttention",
    "PackedMultiHeadAttention",
    "QAttention",
    "SparseAttention",
    "DecoderMaskedMultiHeadAttention",
}
_NORM = {
    "LayerNormalization",
    "BatchNormalization",
    "InstanceNormalization",
    "GroupNormalization",
    "RMSNormalization",
    "SimplifiedLayerNormalization",
    "SkipLayerNormalization",
    "SkipSimplifiedLayerNormalization",
    "EmbedLayerNormalization",
    "LpNormalization",
    "MeanVarianceNormalization",
    "LRN",
    # Softmax is a normalizing reduction: float-sensitive like the norms, rarely run in int8.
    "Softmax",
    "LogSoftmax",
}
_POOLING = {
    "MaxPool",
    "AveragePool",
    "GlobalAveragePool",
    "GlobalMaxPool",
    "LpPool",
    "GlobalLpPool",
    "QLinearAveragePool",
    "QLinearGlobalAveragePool",
    "MaxRoiPool",
    "RoiAlign",
}
_ELEMENTWISE = {
    "Add",
    "Sub",
    "Mul",
    "Div",
    "Pow",
    "Sqrt",
    "Reciprocal",
    "Exp",
    "Log",
    "Abs",
    "Neg",
    "Max",
    "Min",
    "Sum",
    "Mean",
    "Relu",
    "LeakyRelu",
    "PRelu",
    "Elu",
    "Selu",
    "Celu",
    "Clip",
    "Sigmoid",
    "HardSigmoid",
    "HardSwish",
    "Tanh",
    "Softplus",
    "Softsign",
    "Mish",
    "Gelu",
    "FastGelu",
    "BiasGelu",
    "QuickGelu",
    "Erf",
    "Where",
    "Equal",
    "Less",
    "LessOrEqual",
    "Greater",
    "GreaterOrEqual",
    "And",
    "Or",
    "Not",
    "Xor",
    "Floor",
    "Ceil",
    "Round",
    "Sign",
    "Sin",
    "Cos",
    "QLinearAdd",
    "QLinearMul",
    "QLinearSigmoid",
    "QLinearLeakyRelu",
}

# Nearest schemes to try, in order, when the device does not run the requested one. Each list
# prefers substitutes that lose less accuracy (weight-only and float before static int8), then
# the more aggressive ones, so that a device that only runs int8 (an NPU) still gets int8.
FALLBACKS: dict[str, tuple[str, ...]] = {
    "none": ("fp16", "int8-weight", "int8-dynamic", "int8", "int4-weight", "int16"),
    "fp16": ("none", "int8-weight", "int8-dynamic", "int8", "int4-weight", "int16"),
    "int8": ("int8-dynamic", "int8-weight", "fp16", "none", "int4-weight", "int16"),
    "int8-dynamic": ("int8-weight", "int8", "fp16", "none", "int4-weight", "int16"),
    "int8-weight": ("int8-dynamic", "fp16", "int4-weight", "int8", "none", "int16"),
    "int4-weight": ("int8-weight", "int8-dynamic", "fp16", "int8", "none", "int16"),
    # int16 activations are asked for to stay integer with more accuracy: int8 first.
    "int16": ("int8", "int8-dynamic", "int8-weight", "fp16", "none", "int4-weight"),
    # Palettization is weight-only compression of the same size: the same width of weights first.
    "palettize-8": ("palettize-6", "int8-weight", "palettize-4", "int4-weight", "fp16", "none"),
    "palettize-6": ("palettize-8", "palettize-4", "int8-weight", "int4-weight", "fp16", "none"),
    "palettize-4": ("palettize-6", "int4-weight", "palettize-8", "int8-weight", "fp16", "none"),
}
# The compute precision each scheme implies when the runtime honours it (None: any float).
_NATURAL_COMPUTE = {"none": "fp32", "fp16": "fp16", "int8": "int8", "int8-dynamic": "int8", "int16": "int16"}


def op_class(op_type: str, node_attrs: dict[str, Any] | None = None) -> str:
    """Return the op class (a key of a profile's ``op_classes``) of an ONNX op type.

    ``node_attrs`` tells a depthwise convolution from a plain one. Pass ``{"group": g,
    "in_channels": c}`` (depthwise when ``g > 1`` and ``g == c``) or ``{"group": g,
    "weight_shape": [out, in_per_group, kh, kw]}`` (depthwise when ``g > 1`` and
    ``in_per_group == 1``). Without them a Conv is ``conv``. Unknown op types are ``other``.
    """
    attrs = node_attrs or {}
    if op_type in _CONV:
        group = int(attrs.get("group", 1) or 1)
        if group > 1:
            in_channels = attrs.get("in_channels")
            weight_shape = attrs.get("weight_shape")
            if in_channels is not None and int(in_channels) == group:
                return "depthwise_conv"
            if weight_shape is not None and len(weight_shape) > 1 and int(weight_shape[1]) == 1:
                return "depthwise_conv"
        return "conv"
    if op_type in _MATMUL:
        return "matmul"
    if op_type in _ATTENTION:
        return "attention"
    if op_type in _NORM:
        return "norm"
    if op_type in _POOLING:
        return "pooling"
    if op_type in _ELEMENTWISE:
        return "elementwise"
    return "other"


@dataclass(frozen=True)
class SchemeResolution:
    """What will be done for a requested scheme on one device and format.

    ``scheme`` is the scheme to apply (``auto`` is passed through untouched), ``compute`` the
    precision the device computes in (``fp32``, ``fp16``, ``int8``; ``auto`` for ``auto``), and
    ``decision`` a report entry ``{"asked", "done", "why"}`` when either differs from what the
    request implies, else None.
    """

    scheme: str
    compute: str
    decision: dict[str, str] | None = None


def _compute(scheme: str, fmt: FormatTarget) -> str:
    """Return the precision ``fmt``'s runtime computes ``scheme`` in."""
    if scheme in ("int8", "int8-dynamic"):
        return "int8"
    if scheme == "int16":
        return "int16"
    floats = fmt.float_compute
    if not floats:
        # An integer-only accelerator: float work is not its own (the schema only allows int8).
        return "int8"
    if scheme == "none":
        return "fp32" if "fp32" in floats else floats[0]
    # fp16 and weight-only schemes compute in fp16 where the runtime can, else in fp32
    # (ORT's CPU provider and TFLite's CPU kernels upcast fp16 weights to fp32).
    return "fp16" if "fp16" in floats else floats[0]


def _not_run_reason(profile: DeviceProfile, fmt: FormatTarget, scheme: str) -> str:
    """Return the device fact that explains why ``fmt`` does not run ``scheme``."""
    if scheme in fmt.why_not:
        return fmt.why_not[scheme]
    if scheme == "int16" and not profile.int16_activations:
        return "the device has no 16-bit activation kernels (int16_activations: false)"
    if profile.constraints.full_integer_only:
        return "the device runs full-integer graphs only (constraints.full_integer_only)"
    if scheme in ("int8", "int8-dynamic") and fmt.float_compute and "int8" not in fmt.schemes:
        return f"it computes in {'/'.join(fmt.float_compute)}, not int8 (formats.{fmt.name}.float_compute)"
    return f"formats.{fmt.name}.schemes lists only {', '.join(fmt.schemes)}"


def _compute_reason(fmt: FormatTarget, scheme: str, compute: str) -> str:
    """Return why ``scheme`` computes in ``compute`` rather than in what it implies."""
    natural = _NATURAL_COMPUTE.get(scheme)
    return (
        f"{fmt.runtime} computes float ops in {'/'.join(fmt.float_compute)} "
        f"(formats.{fmt.name}.float_compute), so {scheme} computes in {compute}, not {natural}"
    )


def resolve_scheme(profile: DeviceProfile, requested: str, output_format: str) -> SchemeResolution:
    """Return the scheme ``profile`` runs well for ``--quantization requested`` in ``output_format``.

    Keeps ``requested`` when the format's runtime runs it; otherwise picks the nearest scheme it
    runs (see ``FALLBACKS``) and returns a decision whose "why" quotes the profile fact. A
    decision is also returned when the scheme is kept but computes in another precision than it
    implies (fp32 on an fp16-only GPU delegate). ``requested == "auto"`` is returned untouched.
    Raises InputError when the profile does not run ``output_format`` at all, or when the
    request or format is unknown.
    """
    requested = "none" if requested == "fp32" else requested
    if requested == "auto":
        return SchemeResolution(scheme="auto", compute="auto")
    if requested not in SCHEMES:
        raise InputError(f"unknown --quantization {requested!r}", hint=f"choose one of {', '.join(SCHEMES)}, auto")
    if output_format not in format_names():
        raise InputError(
            f"unknown --output_format {output_format!r}", hint=f"choose one of {', '.join(format_names())}"
        )
    section = format_entry(output_format).section(output_format)
    fmt = profile.formats.get(section)
    if fmt is None:
        reason = profile.unsupported_formats.get(section)
        runs = "; ".join(f"{f.name} ({f.summary()})" for f in profile.formats.values())
        message = f"profile {profile.name} does not run {output_format} output"
        if reason:
            message += f": {reason}"
        raise InputError(message, hint=f"it runs: {runs}")

    asked = f"--quantization {requested} for {output_format}"
    if requested in fmt.schemes:
        compute = _compute(requested, fmt)
        natural = _NATURAL_COMPUTE.get(requested)
        if natural is None or natural == compute:
            return SchemeResolution(scheme=requested, compute=compute)
        decision = {
            "asked": asked,
            "done": f"{requested}, {compute} compute",
            "why": f"on {profile.name}, {_compute_reason(fmt, requested, compute)}",
        }
        return SchemeResolution(scheme=requested, compute=compute, decision=decision)

    for candidate in FALLBACKS[requested]:
        if candidate in fmt.schemes:
            compute = _compute(candidate, fmt)
            why = (
                f"{profile.name} runs {output_format} with {fmt.runtime}, which does not run {requested} well: "
                f"{_not_run_reason(profile, fmt, requested)}; {candidate} ({compute} compute) is the nearest "
                f"scheme it runs"
            )
            decision = {"asked": asked, "done": f"{candidate}, {compute} compute", "why": why}
            return SchemeResolution(scheme=candidate, compute=compute, decision=decision)
    raise InputError(  # only reachable with a user profile whose format lists nothing near
        f"profile {profile.name} runs none of the schemes near {requested} for {output_format}",
        hint=f"it runs: {', '.join(fmt.schemes)}",
    )
