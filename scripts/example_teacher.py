"""An example teacher given as a factory, defined outside the package:

    edgedistill build --teacher scripts/example_teacher.py:build --weights teacher.safetensors

A factory is any function that takes no arguments and returns an ``nn.Module`` whose forward maps
a float NCHW batch to logits ``(N, classes)``. Its weights come separately (``--weights``), as
``.safetensors`` or a ``torch.save(model.state_dict(), path)`` file, so no pickled code is ever
loaded. This one suits 1-channel images of any size (e.g. 28x28 digits) with 10 classes.
"""

from __future__ import annotations

from torch import nn


def _conv_block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)
    )


class SmallCNN(nn.Module):
    """Three conv stages, global average pooling, one linear head."""

    def __init__(self, in_channels: int = 1, num_classes: int = 10, width: int = 32) -> None:
        super().__init__()
        self.stem = _conv_block(in_channels, width)
        self.stage1 = nn.Sequential(_conv_block(width, width * 2), nn.MaxPool2d(2))
        self.stage2 = nn.Sequential(_conv_block(width * 2, width * 4), nn.MaxPool2d(2))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(width * 4, num_classes)

    def forward_features(self, x):
        return self.stage2(self.stage1(self.stem(x)))

    def forward_head(self, features):
        return self.head(self.pool(features).flatten(1))

    def forward(self, x):
        return self.forward_head(self.forward_features(x))


def build() -> nn.Module:
    return SmallCNN(in_channels=1, num_classes=10)
