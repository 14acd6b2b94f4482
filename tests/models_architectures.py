"""Small architectures beyond plain CNNs, for the converter coverage tests (issue #4).

Every model is tiny (a few thousand to ~60k parameters), seeded and in eval mode, so the
tests can export each one once and compare numbers. :data:`ARCHITECTURES` maps a name to an
:class:`ArchSpec`: the factory, the example inputs (name -> shape with batch 1, dtype) and a
function that makes seeded numpy samples for any batch size.

Importing this module builds nothing (no side effects); the TFLite and Core ML tests read
it. Input names are the ``forward`` argument names, which is what the exporters keep.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

VOCAB = 100  # token ids of the transformer are in [0, VOCAB)
SEQ_LEN = 16  # tokens per sample (transformer)
STEPS = 12  # time steps per sample (LSTM/GRU)
FEATURES = 8  # features per time step (LSTM/GRU)


@dataclass(frozen=True)
class ArchSpec:
    """One architecture of the test set.

    ``inputs`` maps each input name to ``(shape with batch 1, numpy dtype name)`` in
    ``forward`` order; ``outputs`` is the number of outputs; ``kind`` says how to compare
    results: ``"logits"`` (class scores: top-1 agreement is meaningful) or ``"dense"``
    (a feature/segmentation map: compare by cosine/abs error only).
    """

    factory: Callable[[], nn.Module]
    inputs: dict[str, tuple[tuple[int, ...], str]]
    outputs: int
    kind: str
    description: str

    def make_inputs(self, count: int, seed: int = 0) -> dict[str, np.ndarray]:
        """Return ``count`` seeded samples per input, ``{name: array [count, ...]}``."""
        rng = np.random.default_rng(seed)
        arrays = {}
        for name, (shape, dtype) in self.inputs.items():
            full = (count, *shape[1:])
            if np.dtype(dtype).kind in "iu":
                arrays[name] = rng.integers(0, VOCAB, size=full).astype(dtype)
            else:
                arrays[name] = rng.standard_normal(full).astype(dtype)
        return arrays

    def example_tensors(self, count: int = 1, seed: int = 0) -> tuple[torch.Tensor, ...]:
        """Return :meth:`make_inputs` as torch tensors, in ``forward`` order (for export/tracing)."""
        return tuple(torch.from_numpy(a) for a in self.make_inputs(count, seed).values())

    def reference(self, arrays: dict[str, np.ndarray]) -> list[np.ndarray]:
        """Run the fp32 torch model on ``arrays``; return its outputs as a list of numpy arrays."""
        model = self.factory()
        with torch.no_grad():
            out = model(*(torch.from_numpy(arrays[name]) for name in self.inputs))
        out = out if isinstance(out, tuple | list) else (out,)
        return [o.numpy() for o in out]


def _seeded(build: Callable[[], nn.Module]) -> nn.Module:
    """Build a model with fixed weights (seed 0) and non-trivial BatchNorm statistics, in eval mode."""
    torch.manual_seed(0)
    model = build()
    generator = torch.Generator().manual_seed(1)
    for module in model.modules():
        # Fresh BN layers are identities (mean 0, var 1): give them real statistics so
        # folding BN into the convs is actually exercised.
        if isinstance(module, nn.BatchNorm2d):
            n = module.num_features
            module.running_mean.copy_(0.1 * torch.randn(n, generator=generator))
            module.running_var.copy_(0.5 + torch.rand(n, generator=generator))
    return model.eval()


def _conv_bn(cin: int, cout: int, k: int = 3, stride: int = 1, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout), nn.ReLU6()
    )


class DepthwiseCNN(nn.Module):
    """MobileNet-style depthwise separable blocks. Input ``x`` [N, 3, 32, 32] -> logits [N, 10]."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            _conv_bn(3, 16, stride=2),
            _conv_bn(16, 16, groups=16),  # depthwise
            _conv_bn(16, 32, k=1),  # pointwise
            _conv_bn(32, 32, stride=2, groups=32),
            _conv_bn(32, 64, k=1),
        )
        self.head = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).mean(dim=(2, 3)))


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """ShuffleNet's channel shuffle: reshape to groups, swap, flatten back."""
    n, c, h, w = x.shape
    return x.reshape(n, groups, c // groups, h, w).transpose(1, 2).reshape(n, c, h, w)


class GroupedShuffleCNN(nn.Module):
    """Grouped 1x1 convs with channel shuffle (ShuffleNet v1 unit). ``x`` [N, 3, 32, 32] -> [N, 10]."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = _conv_bn(3, 24, stride=2)
        self.group1 = _conv_bn(24, 24, k=1, groups=3)
        self.depthwise = nn.Sequential(nn.Conv2d(24, 24, 3, 1, 1, groups=24, bias=False), nn.BatchNorm2d(24))
        self.group2 = nn.Sequential(nn.Conv2d(24, 48, 1, groups=3, bias=False), nn.BatchNorm2d(48))
        self.head = nn.Linear(48, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        y = channel_shuffle(self.group1(x), 3)
        y = self.group2(self.depthwise(y))
        y = torch.relu(y + torch.cat([x, x], dim=1))  # residual across the grouped block
        return self.head(y.mean(dim=(2, 3)))


class UNetDecoder(nn.Module):
    """A two-level U-Net: transposed conv and bilinear resize up, concat skips.

    ``x`` [N, 3, 32, 32] -> segmentation logits [N, 2, 32, 32].
    """

    def __init__(self) -> None:
        super().__init__()
        self.enc1 = _conv_bn(3, 16)
        self.enc2 = _conv_bn(16, 32)
        self.bottom = _conv_bn(32, 32)
        self.up2 = nn.ConvTranspose2d(32, 32, 2, stride=2)
        self.dec2 = _conv_bn(64, 16)
        self.dec1 = _conv_bn(32, 8)
        self.out = nn.Conv2d(8, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s1 = self.enc1(x)  # 32x32
        s2 = self.enc2(F.max_pool2d(s1, 2))  # 16x16
        b = self.bottom(F.max_pool2d(s2, 2))  # 8x8
        d2 = self.dec2(torch.cat([self.up2(b), s2], dim=1))  # transposed conv up to 16x16
        up = F.interpolate(d2, scale_factor=2.0, mode="bilinear", align_corners=False)  # resize up to 32x32
        return self.out(self.dec1(torch.cat([up, s1], dim=1)))


class TokenTransformer(nn.Module):
    """Embedding of int64 token ids + nn.TransformerEncoder, mean-pooled. ``ids`` [N, 16] -> [N, 4]."""

    def __init__(self) -> None:
        super().__init__()
        d = 32
        self.embed = nn.Embedding(VOCAB, d)
        self.position = nn.Parameter(0.02 * torch.randn(1, SEQ_LEN, d))
        layer = nn.TransformerEncoderLayer(d, nhead=4, dim_feedforward=64, dropout=0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, num_layers=2, enable_nested_tensor=False)
        self.head = nn.Linear(d, 4)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        h = self.encoder(self.embed(ids) + self.position)
        return self.head(h.mean(dim=1))


class ViTAttention(nn.Module):
    """ViT block written by hand: patch-embed conv, multi-head softmax attention, LayerNorm, GELU MLP.

    ``x`` [N, 3, 32, 32] -> logits [N, 10] (16 patches of 8x8, 4 heads of 8).
    """

    def __init__(self) -> None:
        super().__init__()
        d, self.heads = 32, 4
        self.patch = nn.Conv2d(3, d, 8, stride=8)
        self.position = nn.Parameter(0.02 * torch.randn(1, 16, d))
        self.norm1 = nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.norm2 = nn.LayerNorm(d)
        self.mlp = nn.Sequential(nn.Linear(d, 64), nn.GELU(), nn.Linear(64, d))
        self.norm3 = nn.LayerNorm(d)
        self.head = nn.Linear(d, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = self.patch(x).flatten(2).transpose(1, 2) + self.position  # [N, 16, d]
        n, length, d = t.shape
        q, k, v = self.qkv(self.norm1(t)).reshape(n, length, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        attention = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(d // self.heads), dim=-1)
        t = t + self.proj((attention @ v).transpose(1, 2).reshape(n, length, d))
        t = t + self.mlp(self.norm2(t))
        return self.head(self.norm3(t).mean(dim=1))


class LSTMSeq(nn.Module):
    """nn.LSTM (batch_first) over ``x`` [N, 12, 8]; the last step's state -> [N, 4]."""

    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.LSTM(FEATURES, 32, batch_first=True)
        self.head = nn.Linear(32, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(x)
        return self.head(out[:, -1])


class GRUSeq(nn.Module):
    """nn.GRU (batch_first) over ``x`` [N, 12, 8]; the last step's state -> [N, 4]."""

    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.GRU(FEATURES, 32, batch_first=True)
        self.head = nn.Linear(32, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(x)
        return self.head(out[:, -1])


class TwoInTwoOut(nn.Module):
    """An image and a vector in, class scores and a regression out.

    ``image`` [N, 3, 16, 16], ``vector`` [N, 6] -> (scores [N, 5], value [N, 3]).
    """

    def __init__(self) -> None:
        super().__init__()
        self.conv = _conv_bn(3, 16, stride=2)
        self.vec = nn.Linear(6, 16)
        self.fuse = nn.Linear(32, 5)
        self.reg = nn.Linear(16, 3)

    def forward(self, image: torch.Tensor, vector: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        a = self.conv(image).mean(dim=(2, 3))
        b = torch.relu(self.vec(vector))
        return self.fuse(torch.cat([a, b], dim=1)), self.reg(b)


def make_depthwise_cnn() -> nn.Module:
    """Factory: :class:`DepthwiseCNN`, seeded, eval mode."""
    return _seeded(DepthwiseCNN)


def make_grouped_shuffle_cnn() -> nn.Module:
    """Factory: :class:`GroupedShuffleCNN`, seeded, eval mode."""
    return _seeded(GroupedShuffleCNN)


def make_unet_decoder() -> nn.Module:
    """Factory: :class:`UNetDecoder`, seeded, eval mode."""
    return _seeded(UNetDecoder)


def make_token_transformer() -> nn.Module:
    """Factory: :class:`TokenTransformer`, seeded, eval mode."""
    return _seeded(TokenTransformer)


def make_vit_attention() -> nn.Module:
    """Factory: :class:`ViTAttention`, seeded, eval mode."""
    return _seeded(ViTAttention)


def make_lstm_seq() -> nn.Module:
    """Factory: :class:`LSTMSeq`, seeded, eval mode."""
    return _seeded(LSTMSeq)


def make_gru_seq() -> nn.Module:
    """Factory: :class:`GRUSeq`, seeded, eval mode."""
    return _seeded(GRUSeq)


def make_two_in_two_out() -> nn.Module:
    """Factory: :class:`TwoInTwoOut`, seeded, eval mode."""
    return _seeded(TwoInTwoOut)


_IMAGE = {"x": ((1, 3, 32, 32), "float32")}
_SEQUENCE = {"x": ((1, STEPS, FEATURES), "float32")}

ARCHITECTURES: dict[str, ArchSpec] = {
    "depthwise_cnn": ArchSpec(make_depthwise_cnn, _IMAGE, 1, "logits", "depthwise separable convs (MobileNet)"),
    "grouped_shuffle_cnn": ArchSpec(
        make_grouped_shuffle_cnn, _IMAGE, 1, "logits", "grouped convs + channel shuffle (ShuffleNet)"
    ),
    "unet_decoder": ArchSpec(make_unet_decoder, _IMAGE, 1, "dense", "transposed conv, bilinear resize, concat skips"),
    "token_transformer": ArchSpec(
        make_token_transformer,
        {"ids": ((1, SEQ_LEN), "int64")},
        1,
        "logits",
        "int64 token ids -> Embedding -> nn.TransformerEncoder",
    ),
    "vit_attention": ArchSpec(
        make_vit_attention, _IMAGE, 1, "logits", "patch conv, hand-written multi-head attention, LayerNorm, GELU"
    ),
    "lstm_seq": ArchSpec(make_lstm_seq, _SEQUENCE, 1, "logits", "nn.LSTM, batch_first"),
    "gru_seq": ArchSpec(make_gru_seq, _SEQUENCE, 1, "logits", "nn.GRU, batch_first"),
    "two_in_two_out": ArchSpec(
        make_two_in_two_out,
        {"image": ((1, 3, 16, 16), "float32"), "vector": ((1, 6), "float32")},
        2,
        "logits",
        "two inputs (image, vector), two outputs (scores, regression)",
    ),
}
