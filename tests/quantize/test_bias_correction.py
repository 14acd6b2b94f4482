"""Bias correction removes the output-mean shift that int8 weight rounding causes."""

from __future__ import annotations

import numpy as np
import onnx
import torch
from onnx import numpy_helper

from edgeport.quantize.bias_correction import _fake_quant_per_channel, correct_biases
from edgeport.runtime.ort import OrtRunner


def test_bias_correction_cancels_the_mean_shift_of_rounded_weights(tmp_path):
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(8, 4, 3, padding=1).eval()
    path = tmp_path / "conv.onnx"
    torch.onnx.export(conv, (torch.zeros(1, 8, 6, 6),), str(path), dynamo=False, input_names=["x"])
    model = onnx.load(str(path))
    rng = np.random.default_rng(0)
    # Inputs with a large per-channel mean: a rounding error in W then shifts the output mean.
    x = (rng.standard_normal((16, 8, 6, 6)) + np.arange(8).reshape(1, 8, 1, 1) * 3).astype(np.float32)
    node = model.graph.node[0]
    corrected, info = correct_biases(model, [{"x": x[i : i + 1]} for i in range(16)], {node.name})
    assert info["convs"] == 1 and info["max_shift"] > 0
    # Emulate int8 weights on both models, then compare the output means with fp32.
    fp32 = np.concatenate([OrtRunner(model.SerializeToString()).run({"x": x[i : i + 1]})[0] for i in range(16)])

    def rounded(m: onnx.ModelProto) -> np.ndarray:
        m = onnx.ModelProto.FromString(m.SerializeToString())
        weight = next(i for i in m.graph.initializer if len(i.dims) == 4)
        weight.CopyFrom(
            numpy_helper.from_array(
                _fake_quant_per_channel(numpy_helper.to_array(weight), 8).astype(np.float32), weight.name
            )
        )
        return np.concatenate([OrtRunner(m.SerializeToString()).run({"x": x[i : i + 1]})[0] for i in range(16)])

    shift_before = np.abs((rounded(model) - fp32).mean(axis=(0, 2, 3))).max()
    shift_after = np.abs((rounded(corrected) - fp32).mean(axis=(0, 2, 3))).max()
    assert shift_after < 0.25 * shift_before
