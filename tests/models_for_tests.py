"""Small models the tests convert (built fresh per test session, never downloaded)."""

from __future__ import annotations

import torch
from torch import nn


class TinyNet(nn.Module):
    """A small classifier: conv + BN + ReLU, pooling, linear. Input [N, 3, 16, 16]."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.head = nn.Linear(8, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn(self.conv(x)))
        return self.head(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


class FeatureNet(nn.Module):
    """Returns a conv feature map (not class scores), so int8 error always shows in cosine."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, padding=1)
        self.conv2 = nn.Conv2d(16, 16, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(torch.relu(self.conv1(x)))


class TwoInputNet(nn.Module):
    """Two named inputs of different shapes, two outputs."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(6, 4)
        self.b = nn.Linear(3, 4)

    def forward(self, left: torch.Tensor, right: torch.Tensor):
        return self.a(left) + self.b(right), self.a(left)


class NoisyNet(nn.Module):
    """Adds random noise in forward: its ONNX export cannot match the eager outputs."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return y + torch.rand_like(y)


def _seeded(model_class: type[nn.Module]) -> nn.Module:
    """Build ``model_class`` with fixed weights (seed 0), in eval mode."""
    torch.manual_seed(0)
    return model_class().eval()


def make_tiny() -> nn.Module:
    """Factory for ``--input_model tests/models_for_tests.py:make_tiny``."""
    return _seeded(TinyNet)


def make_feature_net() -> nn.Module:
    """Factory for the gate test."""
    return _seeded(FeatureNet)


def make_two_input() -> nn.Module:
    """Factory for the multi-input test."""
    return _seeded(TwoInputNet)


def make_noisy() -> nn.Module:
    """Factory for the parity-failure test."""
    return _seeded(NoisyNet)


class SineNet(nn.Module):
    """Convs around a sine: TFLite has no int8 SIN kernel, so a full-integer NPU cannot run it."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(torch.sin(self.conv1(x)))


def make_sine() -> nn.Module:
    """Factory for the op-compatibility test."""
    return _seeded(SineNet)


class ResidualDepthwiseNet(nn.Module):
    """Channel-pruning patterns in one small net: batch norms, an inverted residual block with a
    depthwise conv and a residual add, a concat, and a classifier. Input [N, 3, 16, 16]."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, padding=1, bias=False)
        self.stem_bn = nn.BatchNorm2d(16)
        self.expand = nn.Conv2d(16, 32, 1, bias=False)
        self.expand_bn = nn.BatchNorm2d(32)
        self.depthwise = nn.Conv2d(32, 32, 3, padding=1, groups=32, bias=False)
        self.depthwise_bn = nn.BatchNorm2d(32)
        self.project = nn.Conv2d(32, 16, 1, bias=False)
        self.project_bn = nn.BatchNorm2d(16)
        self.branch = nn.Conv2d(16, 16, 3, padding=1)
        self.head_conv = nn.Conv2d(32, 32, 1)
        self.fc = nn.Linear(32, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        stem = torch.relu(self.stem_bn(self.stem(x)))
        y = torch.relu(self.expand_bn(self.expand(stem)))
        y = torch.relu(self.depthwise_bn(self.depthwise(y)))
        residual = stem + self.project_bn(self.project(y))
        joined = torch.cat([residual, torch.relu(self.branch(residual))], 1)
        head = torch.relu(self.head_conv(joined))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(head, 1), 1))


def make_residual_depthwise() -> nn.Module:
    """Factory for the pruning tests (batch norms with non-trivial statistics, like a trained net)."""
    model = _seeded(ResidualDepthwiseNet)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 1.5)
                module.weight.uniform_(0.5, 1.5)
    return model
