"""Residual CNN family, scalable in depth (blocks per stage) and width (channels per stage).

Sized for small images: a 3x3 stem keeps full resolution and each stage after the first halves it,
so an 8x8 digit ends at 2x2 after three stages. Blocks are conv-bn-relu pairs with an identity (or
1x1 projection) shortcut: patterns LiteRT fuses into single int8 kernels.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from edgedistill.models.base import (
    WIDTH_MULTIPLIERS,
    Family,
    FeatureInfo,
    geometric,
    register_family,
    round_width,
)
from edgedistill.models.init import Copier, init_staged, l1_rows, top_k


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


# --- what the staged CNN families (resnet, mobilenet) know beyond building ---------------------------


def shrink_staged(spec) -> list:
    """Narrower (width multipliers, channels kept in proportion) and shallower (fewer blocks per
    stage) versions of a staged CNN spec, its own shape included, deepest and widest first."""
    depth_options = {
        tuple(spec.depths),
        tuple(max(1, d - 1) for d in spec.depths),
        tuple(max(1, d // 2) for d in spec.depths),
        tuple(1 for _ in spec.depths),
    }
    specs = []
    for depths in sorted(depth_options, reverse=True):
        for m in WIDTH_MULTIPLIERS:
            widths = tuple(round_width(w * m) for w in spec.widths)
            specs.append(dataclasses.replace(spec, widths=widths, depths=depths))
    return specs


def between_staged(s, t, alpha: float):
    """A staged CNN spec ``alpha`` of the way from student ``s`` to teacher ``t`` (geometrically, in
    every width and depth); fields other than widths and depths stay the student's."""
    if len(s.widths) != len(t.widths):
        # Different stage counts: keep the student's stages and grow only their widths.
        t_w = [t.widths[min(len(t.widths) - 1, round(i * (len(t.widths) - 1) / max(1, len(s.widths) - 1)))]
               for i in range(len(s.widths))]
        t_d = list(s.depths)
    else:
        t_w, t_d = list(t.widths), list(t.depths)
    widths = tuple(max(1, round(geometric(a, b, alpha))) for a, b in zip(s.widths, t_w))
    depths = tuple(max(1, round(geometric(a, b, alpha))) for a, b in zip(s.depths, t_d))
    return dataclasses.replace(s, widths=widths, depths=depths)


def init_resnet(teacher: nn.Module, student: nn.Module, cp: Copier) -> dict:
    """A stage's residual channels are shared by every block's output and its shortcut, so they are
    ranked once per stage by the summed L1 norm of the output filters of every conv writing into
    them (the stem for stage 0, each kept block's second conv and projection shortcut); a block's
    inner channels are ranked by the L1 norm of its first conv's output filters. BN parameters, the
    next conv's input channels, the shortcut and the head's inputs are sliced with the same indices."""

    def copy_block(t: str, s: str, in_idx: torch.Tensor, res_idx: torch.Tensor) -> str | None:
        inner = top_k(l1_rows(cp.src[f"{t}.conv1.0.weight"]), len(res_idx))
        cp.conv_bn(f"{s}.conv1", f"{t}.conv1", inner, in_idx)
        cp.conv_bn(f"{s}.conv2", f"{t}.conv2", res_idx, inner)
        has_s, has_t = f"{s}.shortcut.0.weight" in cp.dst, f"{t}.shortcut.0.weight" in cp.src
        if has_s and has_t:
            cp.conv_bn(f"{s}.shortcut", f"{t}.shortcut", res_idx, in_idx)
        elif has_s:
            return f"{s}.shortcut (teacher block {t.rsplit('.', 1)[1]} has an identity shortcut)"
        return None

    return init_staged(teacher, student, cp, ("conv2", "shortcut"), (
        "stage residual channels: summed L1 norm of output filters of the stem / second convs / shortcuts; "
        "block inner channels: L1 norm of the first conv's output filters"), copy_block)


register_family(Family("resnet", ResNetSpec, ResNet, shrink=shrink_staged, init_from_teacher=init_resnet,
                       between=between_staged))
