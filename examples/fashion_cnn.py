"""The example model: a small CNN for Fashion-MNIST (28x28 grayscale, 10 classes).

Importable as ``examples.fashion_cnn:FashionCNN`` (or ``examples/fashion_cnn.py:FashionCNN``)
so that a state_dict of it can be converted with ``--model_class``.
"""

from __future__ import annotations

import torch
from torch import nn

# Fashion-MNIST training-set pixel statistics (on [0, 1] pixels); folding them into the model
# means callers feed plain [0, 1] images.
PIXEL_MEAN = 0.2860
PIXEL_STD = 0.3530


def _conv_block(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class FashionCNN(nn.Module):
    """Four 3x3 conv blocks, two max-pools, global average pooling and a linear classifier.

    Input: float32 ``[N, 1, 28, 28]`` in [0, 1]. Output: ``[N, 10]`` logits.
    """

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            _conv_block(1, 32),
            _conv_block(32, 64),
            nn.MaxPool2d(2),
            _conv_block(64, 128),
            nn.MaxPool2d(2),
            _conv_block(128, 128),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(128, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return class logits for a batch of [0, 1] images."""
        x = (x - PIXEL_MEAN) / PIXEL_STD
        x = self.features(x)
        x = torch.flatten(self.pool(x), 1)
        return self.classifier(x)
