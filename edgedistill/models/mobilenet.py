"""Inverted-residual (MobileNetV2-style) family: the zoo's most target-friendly family.

Every block is a 1x1 expansion, a 3x3 depthwise conv and a linear 1x1 projection (Sandler et al.
2018), so most multiply-accumulates sit in 1x1 convs (plain GEMMs) and the 3x3 spatial work costs
one MAC per channel and tap instead of one per channel pair. That is why XNNPACK and LiteRT run it
well on phones and boards, and why a teacher from outside the zoo gets its students from here.

Sized like the residual CNN: the stem keeps full resolution, each stage after the first halves it
(8x8 digits end at 2x2 after three stages), scalable in depth (blocks per stage) and width
(channels per stage; the expanded width is ``expansion`` times a block's input).

Choices made for int8 deployment rather than copied from the paper:
- ReLU rather than ReLU6: conv + batch-norm + ReLU is the pattern PT2E QAT and LiteRT fuse into one
  int8 kernel everywhere; a fully integer model gets no benefit from ReLU6's clamp (the activation's
  quantization range already bounds it).
- No final 1x1 conv to 1280 channels before pooling: at these widths it would be most of the model.
- A stage's first block changes width (and resolution) and has no shortcut; the others add their
  input, as in MobileNetV2.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from edgedistill.models.base import register_family
from edgedistill.models.resnet import StagedCNN, check_stages, conv_bn


@dataclass(frozen=True)
class MobileNetSpec:
    in_channels: int
    num_classes: int
    widths: tuple[int, ...] = (32, 64, 128)
    depths: tuple[int, ...] = (2, 2, 2)
    expansion: int = 4
    family: str = "mobilenet"

    def __post_init__(self) -> None:
        check_stages(self.widths, self.depths)
        if self.expansion < 1:
            raise ValueError(f"expansion must be positive: {self}")

    def describe(self) -> str:
        return (f"mobilenet w{'-'.join(map(str, self.widths))} d{'-'.join(map(str, self.depths))} "
                f"e{self.expansion}")


def dw_bn(channels: int, stride: int) -> nn.Sequential:
    """3x3 depthwise conv + batch norm: one filter per channel (``groups=channels``)."""
    return nn.Sequential(
        nn.Conv2d(channels, channels, 3, stride=stride, padding=1, groups=channels, bias=False),
        nn.BatchNorm2d(channels),
    )


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expansion: int) -> None:
        super().__init__()
        hidden = cin * expansion
        # expansion 1 has nothing to expand: the depthwise conv reads the input directly
        self.expand = conv_bn(cin, hidden, 1) if expansion != 1 else nn.Identity()
        self.act1 = nn.ReLU() if expansion != 1 else nn.Identity()
        self.dw = dw_bn(hidden, stride)
        self.act2 = nn.ReLU()
        self.project = conv_bn(hidden, cout, 1)  # linear bottleneck: no activation after it
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.project(self.act2(self.dw(self.act1(self.expand(x)))))
        return x + y if self.residual else y


class MobileNet(StagedCNN):
    def __init__(self, spec: MobileNetSpec) -> None:
        super().__init__(spec, lambda cin, cout, stride: InvertedResidual(cin, cout, stride, spec.expansion))


register_family("mobilenet", MobileNetSpec, MobileNet)
