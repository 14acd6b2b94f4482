"""The words every stage shares, written once: quantization schemes and the precisions a plan
assigns. Output formats and runtimes are listed in :mod:`edgeport.core.registry`."""

# Quantization schemes (what the user asks for with --quantization); "none" is fp32.
# "int16" is 16-bit activations with int8 weights (TFLite 16x8, ORT QDQ int16 activations).
# "palettize-8/6/4": weights as n-bit indices into a k-means look-up table (Core ML palettization).
SCHEMES = (
    "none",
    "fp16",
    "int8",
    "int8-dynamic",
    "int8-weight",
    "int4-weight",
    "int16",
    "palettize-8",
    "palettize-6",
    "palettize-4",
)
# Precisions in op_classes: the schemes, with fp32 instead of "none".
PRECISIONS = tuple("fp32" if s == "none" else s for s in SCHEMES)
# Schemes whose activations are quantized from calibration ranges (they need calibration data).
CALIBRATED_SCHEMES = ("int8", "int16")
# Palettization schemes and their index bits.
PALETTE_SCHEMES = {"palettize-8": 8, "palettize-6": 6, "palettize-4": 4}
