"""The precision plan as coremltools weight compression, applied by constant name.

Each matched layer (:mod:`edgeport.formats.coreml.match`) is compressed through
``OptimizationConfig(op_name_configs=...)``: the global config stays None, so nothing the plan
does not name is touched, and ``weight_threshold`` is 0 because coremltools' default (2048
elements) silently skips small layers.

===========================  =====================================================================
plan precision               Core ML
===========================  =====================================================================
``fp16``                     fp16 weights and compute (``compute_precision=FLOAT16``)
``fp32`` / ``none``          fp32 compute for that op (FP16ComputePrecision's op_selector), if the
                             profile computes fp32; the Neural Engine does not: fp16, recorded
``int8-weight``              ``constexpr_blockwise_shift_scale``: int8 per output channel with a zero
                             point (asymmetric: measured more accurate than symmetric here)
``int4-weight``              int4 per block of ``int4_weight.block_size`` input channels (iOS18 /
                             macOS15); per output channel when the input channels do not divide
``palettize-8/6/4``          ``constexpr_lut_to_dense``: a k-means look-up table of 2^n fp16
                             values per tensor, n-bit indices (iOS16 / macOS13)
``int8`` (W8A8)              int8 weights + activation quantization: coremltools calibrates
                             activation ranges by running Core ML, so only on macOS; elsewhere the
                             weights are int8 and the activations are recorded as not expressible
``int8-dynamic``             not expressible (Core ML has no dynamic quantization): int8 weights
===========================  =====================================================================
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edgeport.core.plan import PrecisionPlan
from edgeport.core.vocabulary import PALETTE_SCHEMES
from edgeport.formats.coreml.match import WeightMatch
from edgeport.formats.coreml.tools import import_coremltools, quiet
from edgeport.profiles.schema import DeviceProfile

# Every planned weight is compressed whatever its size: coremltools' default threshold (2048
# elements) silently leaves small layers (a Fashion-MNIST CNN's first convs) uncompressed.
WEIGHT_THRESHOLD = 0


def compression_config(precision: str, shape: list[int], profile: DeviceProfile, cto) -> tuple[Any, str]:
    """Return the coremltools op config for one weight in ``precision`` and a description of it,
    or (None, precision) for precisions that are not weight compressions.
    """
    if precision == "int8":
        # W8A8: the symmetric int8 weights the profile's int8 scheme (and the Neural Engine) expects.
        mode = "linear_symmetric" if profile.int8.weight_symmetric else "linear"
        config = cto.OpLinearQuantizerConfig(
            mode=mode, dtype="int8", granularity="per_channel", weight_threshold=WEIGHT_THRESHOLD
        )
        return config, f"int8 per output channel, {'symmetric' if mode == 'linear_symmetric' else 'with zero points'}"
    if precision in ("int8-weight", "int8-dynamic"):
        # Weight-only: a zero point per channel costs 1 byte per channel and fits skewed channels
        # better (EfficientNet-Lite0, emulated: top-1 agreement 0.917 vs 0.833 symmetric).
        config = cto.OpLinearQuantizerConfig(
            mode="linear", dtype="int8", granularity="per_channel", weight_threshold=WEIGHT_THRESHOLD
        )
        return config, "int8 per output channel, with zero points"
    if precision == "int4-weight":
        block = profile.int4_weight.block_size
        mode = "linear_symmetric" if profile.int4_weight.symmetric else "linear"
        if len(shape) > 1 and shape[1] % block == 0:
            config = cto.OpLinearQuantizerConfig(
                mode=mode, dtype="int4", granularity="per_block", block_size=block, weight_threshold=WEIGHT_THRESHOLD
            )
            return config, f"int4 per block of {block} input channels"
        # Per-block needs the input channels to divide into blocks (a depthwise conv has 1).
        config = cto.OpLinearQuantizerConfig(
            mode=mode, dtype="int4", granularity="per_channel", weight_threshold=WEIGHT_THRESHOLD
        )
        channels = shape[1] if len(shape) > 1 else shape[0]
        return config, f"int4 per output channel ({channels} input channels do not divide into blocks of {block})"
    if precision in PALETTE_SCHEMES:
        bits = PALETTE_SCHEMES[precision]
        config = cto.OpPalettizerConfig(
            mode="kmeans", nbits=bits, granularity="per_tensor", weight_threshold=WEIGHT_THRESHOLD
        )
        return config, f"{2**bits}-entry k-means look-up table per tensor, {bits}-bit indices"
    return None, precision


def compress_weights(
    mlmodel, matches: list[WeightMatch], plan: PrecisionPlan, profile: DeviceProfile
) -> tuple[Any, dict[str, str]]:
    """Apply the plan's weight compressions by constant name; return (mlmodel, {onnx node: description})."""
    ct = import_coremltools()
    cto = ct.optimize.coreml
    linear: dict[str, Any] = {}
    palette: dict[str, Any] = {}
    described: dict[str, str] = {}
    for match in matches:
        precision = plan.layers[match.layer].precision
        config, text = compression_config(precision, match.shape, profile, cto)
        if config is None:
            continue
        described[match.onnx_node] = text
        (palette if precision in PALETTE_SCHEMES else linear)[match.const] = config
    with quiet():
        if linear:
            mlmodel = cto.linear_quantize_weights(mlmodel, cto.OptimizationConfig(op_name_configs=linear))
        if palette:
            mlmodel = cto.palettize_weights(mlmodel, cto.OptimizationConfig(op_name_configs=palette))
    return mlmodel, described


def quantize_activations(
    mlmodel, matches: list[WeightMatch], plan: PrecisionPlan, samples: list[dict[str, np.ndarray]]
):
    """W8A8 on macOS: coremltools calibrates the inputs of the ops of int8 layers by running
    the model with Core ML (``linear_quantize_activations``). Returns the new mlmodel."""
    ct = import_coremltools()
    cto = ct.optimize.coreml
    config = {
        m.coreml_op_name: cto.experimental.OpActivationLinearQuantizerConfig(mode="linear_symmetric")
        for m in matches
        if plan.layers[m.layer].precision == "int8"
    }
    with quiet():
        return cto.experimental.linear_quantize_activations(
            mlmodel, cto.OptimizationConfig(op_name_configs=config), samples
        )
