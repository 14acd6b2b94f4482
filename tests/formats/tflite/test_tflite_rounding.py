"""GPTQ weight rounding for TFLite convolutions: patch order, padding and the error it saves."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edgeport.formats.tflite.rounding import ConvGeometry, _patches, accumulate_hessian, gptq_round, round_conv


def _tf_same_conv(x: np.ndarray, weights: np.ndarray, geometry: ConvGeometry) -> np.ndarray:
    """TensorFlow's SAME-padded conv (NHWC input, TFLite weight layout), computed with torch."""
    kh, kw = geometry.kernel
    sh, sw = geometry.stride
    pads = []
    for size, k, s in zip(x.shape[1:3], (kh, kw), (sh, sw), strict=True):
        total = max((-(-size // s) - 1) * s + k - size, 0)
        pads.append((total // 2, total - total // 2))
    inputs = torch.from_numpy(x.transpose(0, 3, 1, 2)).double()
    inputs = torch.nn.functional.pad(inputs, (*pads[1], *pads[0]))
    if geometry.depthwise:
        kernel = torch.from_numpy(weights[0].transpose(2, 0, 1)[:, None]).double()  # C*m, 1, KH, KW
        out = torch.nn.functional.conv2d(inputs, kernel, stride=(sh, sw), groups=x.shape[3])
    else:
        kernel = torch.from_numpy(weights.transpose(0, 3, 1, 2)).double()  # O, I, KH, KW
        out = torch.nn.functional.conv2d(inputs, kernel, stride=(sh, sw))
    return out.numpy().transpose(0, 2, 3, 1)


@pytest.mark.parametrize(
    "geometry",
    [
        ConvGeometry(depthwise=False, kernel=(3, 3), stride=(2, 2), same_padding=True),
        ConvGeometry(depthwise=False, kernel=(1, 1), stride=(1, 1), same_padding=False),
        ConvGeometry(depthwise=True, kernel=(5, 5), stride=(2, 2), same_padding=True),
        ConvGeometry(depthwise=True, kernel=(3, 3), stride=(1, 1), same_padding=True),
    ],
)
def test_patches_reproduce_the_convolution(geometry):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 11, 9, 4))
    kh, kw = geometry.kernel
    if geometry.depthwise:
        weights = rng.normal(size=(1, kh, kw, 4))
        patches = _patches(x, geometry)  # P, KH, KW, C
        ours = np.einsum("pklc,klc->pc", patches, weights[0])
    else:
        weights = rng.normal(size=(6, kh, kw, 4))
        ours = _patches(x, geometry).reshape(-1, kh * kw * 4) @ weights.reshape(6, -1).T
    reference = _tf_same_conv(x, weights, geometry) if geometry.same_padding else None
    if reference is None:  # VALID 1x1: every pixel is a patch
        reference = x.reshape(-1, 4) @ weights.reshape(6, 4).T
    np.testing.assert_allclose(ours, reference.reshape(ours.shape), atol=1e-9)


def test_gptq_lowers_the_output_error_of_rounding():
    """On correlated inputs, GPTQ's int8 weights change the layer's output far less than
    round-to-nearest on the same per-channel grid, and stay on that grid."""
    rng = np.random.default_rng(1)
    geometry = ConvGeometry(depthwise=False, kernel=(3, 3), stride=(1, 1), same_padding=True)
    mixing = rng.normal(size=(8, 8))
    x = (rng.normal(size=(4, 12, 12, 8)) @ mixing) + 0.5  # correlated channels, non-zero mean
    weights = rng.normal(size=(16, 3, 3, 8)) * 0.1
    scales = np.abs(weights.reshape(16, -1)).max(1) / 127
    hessian = accumulate_hessian(None, x, geometry)
    gptq = round_conv(weights, scales, hessian, geometry).astype(np.float64) * scales[:, None, None, None]
    nearest = np.clip(np.round(weights / scales[:, None, None, None]), -127, 127) * scales[:, None, None, None]

    def output_error(quantized: np.ndarray) -> float:
        return float(np.mean((_tf_same_conv(x, quantized, geometry) - _tf_same_conv(x, weights, geometry)) ** 2))

    assert output_error(gptq) < 0.5 * output_error(nearest), (output_error(gptq), output_error(nearest))
    levels = gptq / scales[:, None, None, None]
    np.testing.assert_allclose(levels, np.round(levels), atol=1e-9)
    assert np.abs(np.round(levels)).max() <= 127


def test_gptq_without_information_rounds_to_nearest():
    """An identity Hessian (uncorrelated inputs) leaves nothing to compensate: round-to-nearest."""
    rng = np.random.default_rng(2)
    weights = rng.normal(size=(5, 9))
    scales = np.abs(weights).max(1) / 127
    levels = gptq_round(weights, np.eye(9), scales)
    np.testing.assert_array_equal(levels, np.clip(np.round(weights / scales[:, None]), -127, 127))
