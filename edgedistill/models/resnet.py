"""Residual CNN family, scalable in depth (blocks per stage) and width (channels per stage).

Sized for small images: a 3x3 stem keeps full resolution and each stage after the first halves it,
so an 8x8 digit ends at 2x2 after three stages. Blocks are conv-bn-relu pairs with an identity (or
1x1 projection) shortcut: patterns LiteRT fuses into single int8 kernels.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from edgedistill.models.base import FeatureInfo, register_family


@dataclass(frozen=True)
class ResNetSpec:
    in_channels: int
    num_classes: int
    widths: tuple[int, ...] = (32, 64, 128)
    depths: tuple[int, ...] = (2, 2, 2)
    family: str = "resnet"

    def __post_init__(self) -> None:
        check_stages(self.widths, self.depths)

    def describe(self) -> str:
        return f"resnet w{'-'.join(map(str, self.widths))} d{'-'.join(map(str, self.depths))}"


def check_stages(widths: tuple[int, ...], depths: tuple[int, ...]) -> None:
    """The stage shape every staged CNN spec needs: one positive width and depth per stage."""
    if len(widths) != len(depths) or not widths:
        raise ValueError(f"widths {widths} and depths {depths} must be non-empty and equal length")
    if min(widths) < 1 or min(depths) < 1:
        raise ValueError(f"widths and depths must be positive: {widths} {depths}")


def conv_bn(cin: int, cout: int, k: int = 3, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2, bias=False), nn.BatchNorm2d(cout)
    )


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = conv_bn(cin, cout, 3, stride)
        self.conv2 = conv_bn(cout, cout, 3, 1)
        self.shortcut = conv_bn(cin, cout, 1, stride) if (stride != 1 or cin != cout) else nn.Identity()
        self.act1 = nn.ReLU()
        self.act2 = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act1(self.conv1(x))
        y = self.conv2(y)
        return self.act2(y + self.shortcut(x))


class GlobalAvgPool(nn.Module):
    """Mean over H and W. A plain mean (not AdaptiveAvgPool2d) keeps a dynamic batch exportable to
    LiteRT: the adaptive pool lowers through as_strided, which the converter cannot size."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3))


class StagedCNN(nn.Module):
    """The skeleton the CNN families share: a full-resolution 3x3 stem, stages of blocks (each stage
    after the first halves the resolution in its first block), global average pooling and a linear
    head. ``block(cin, cout, stride)`` builds one block."""

    def __init__(self, spec, block: Callable[[int, int, int], nn.Module]) -> None:
        super().__init__()
        self.spec = spec
        self.stem = nn.Sequential(conv_bn(spec.in_channels, spec.widths[0], 3, 1), nn.ReLU())
        stages = []
        cin = spec.widths[0]
        self.feature_info: list[FeatureInfo] = []
        reduction = 1
        for i, (width, depth) in enumerate(zip(spec.widths, spec.depths)):
            stride = 1 if i == 0 else 2
            reduction *= stride
            stages.append(nn.Sequential(*[block(cin if j == 0 else width, width, stride if j == 0 else 1)
                                          for j in range(depth)]))
            cin = width
            self.feature_info.append(FeatureInfo(f"stages.{i}", width, reduction, "spatial"))
        self.stages = nn.Sequential(*stages)
        self.pool = GlobalAvgPool()
        self.head = nn.Linear(cin, spec.num_classes)
        self.attention_modules: list[str] = []
        self.embedding_module = "pool"

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(self.stem(x))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.pool(x)
        return x if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


class ResNet(StagedCNN):
    def __init__(self, spec: ResNetSpec) -> None:
        super().__init__(spec, BasicBlock)


register_family("resnet", ResNetSpec, ResNet)
