"""Outlier smoothing: exact in fp32, and it lets dynamic int8 keep more accuracy."""

from __future__ import annotations

import numpy as np
import onnx
import torch
from torch import nn

from edgeport.quantize.smoothing import smooth, smoothable_groups
from edgeport.runtime.ort import OrtRunner
from edgeport.verify.metrics import cosine_per_sample


class TokenMLP(nn.Module):
    """A transformer-style MLP on [batch, tokens, channels] (exports as MatMul + Add)."""

    def __init__(self) -> None:
        super().__init__()
        self.up = nn.Linear(32, 64)
        self.down = nn.Linear(64, 32)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(torch.nn.functional.gelu(self.up(x)))


def _model_and_data(tmp_path):
    torch.manual_seed(0)
    model = TokenMLP().eval()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((40, 16, 32)).astype(np.float32)
    x[..., 3] *= 40.0  # one outlier channel, as LayerNorm outputs have in transformers
    path = tmp_path / "mlp.onnx"
    torch.onnx.export(model, (torch.from_numpy(x[:1]),), str(path), dynamo=False, input_names=["x"])
    return onnx.load(str(path)), x


def test_smoothing_is_exact_in_fp32_and_helps_int8(tmp_path):
    from onnxruntime.quantization import QuantType, quantize_dynamic

    model, x = _model_and_data(tmp_path)
    assert len(smoothable_groups(model)) == 2
    feeds = [{"x": x[i : i + 1]} for i in range(20)]
    smoothed, info = smooth(model, feeds, alpha=0.7)
    assert info["groups"] == 2 and info["matmuls"] == 2
    onnx.checker.check_model(smoothed)
    test = [{"x": x[i : i + 1]} for i in range(20, 40)]
    reference = np.concatenate([OrtRunner(model.SerializeToString()).run(f)[0] for f in test])
    after = np.concatenate([OrtRunner(smoothed.SerializeToString()).run(f)[0] for f in test])
    np.testing.assert_allclose(after, reference, rtol=1e-4, atol=1e-4)

    def int8_cosine(m: onnx.ModelProto, name: str) -> float:
        src, dst = tmp_path / f"{name}.onnx", tmp_path / f"{name}_int8.onnx"
        onnx.save(m, str(src))
        quantize_dynamic(str(src), str(dst), per_channel=True, weight_type=QuantType.QInt8)
        runner = OrtRunner(dst)
        quantized = np.concatenate([runner.run(f)[0] for f in test])
        return float(cosine_per_sample(reference.reshape(20, -1), quantized.reshape(20, -1)).mean())

    plain, better = int8_cosine(model, "plain"), int8_cosine(smoothed, "smoothed")
    assert better > plain
    assert 1 - better < 0.7 * (1 - plain)  # at least 30% less cosine error
