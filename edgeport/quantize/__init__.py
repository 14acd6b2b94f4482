"""Quantization: calibration, the precision plan (data), and applying it to ONNX."""
