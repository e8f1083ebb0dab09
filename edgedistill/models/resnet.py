"""Residual CNN family (ResNet basic blocks), scalable in depth (blocks per stage) and width
(channels per stage), laid out as :mod:`edgedistill.models.staged` says: for small images a 3x3
stem keeps full resolution and each stage after the first halves it (an 8x8 digit ends at 2x2
after three stages); for larger ones a stride-2 stem, and torchvision's ResNet-18/34 is exactly
``stem64k7s2p`` with four stages (:mod:`edgedistill.teacher.recognise` maps one onto this family).
Blocks are conv-bn-relu pairs with an identity (or 1x1 projection) shortcut: patterns LiteRT fuses
into single int8 kernels.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from edgedistill.models.base import Family, register_family
from edgedistill.models.init import Copier, init_staged, l1_rows, top_k
from edgedistill.models.staged import (
    StagedCNN, StagedLayout, between_staged, check_layout, conv_bn, layout_suffix, shrink_staged,
)


@dataclass(frozen=True)
class ResNetSpec(StagedLayout):
    in_channels: int
    num_classes: int
    widths: tuple[int, ...] = (32, 64, 128)
    depths: tuple[int, ...] = (2, 2, 2)
    family: str = "resnet"

    def __post_init__(self) -> None:
        check_layout(self)

    def describe(self) -> str:
        return f"resnet w{'-'.join(map(str, self.widths))} d{'-'.join(map(str, self.depths))}" + layout_suffix(self)


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


class ResNet(StagedCNN):
    def __init__(self, spec: ResNetSpec) -> None:
        super().__init__(spec, lambda cin, cout, stride, _stage: BasicBlock(cin, cout, stride))


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
