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

from edgedistill.models.base import Family, register_family
from edgedistill.models.init import Copier, init_staged, l1_rows, top_k
from edgedistill.models.resnet import StagedCNN, between_staged, check_stages, conv_bn, shrink_staged

# What a teacher outside the zoo is shrunk from (edgedistill.select.candidates.zoo_teacher_spec): an
# inverted-residual net about as wide and deep as the built-in teacher (widths, depths, expansion);
# the width ladder reaches down from there.
NON_ZOO_BASE = ((32, 64, 128), (2, 2, 2), 4)


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


def init_mobilenet(teacher: nn.Module, student: nn.Module, cp: Copier) -> dict:
    """As resnet, a stage's residual channels are ranked once per stage (stem and each kept block's
    projection filters); a block's expanded channels by the L1 norm of its expansion conv's
    filters, and its depthwise filters follow them one for one."""
    ts, ss = teacher.spec, student.spec
    if (ts.expansion == 1) != (ss.expansion == 1):
        raise ValueError(f"teacher expansion {ts.expansion} and student expansion {ss.expansion}: one of them "
                         "has no expansion conv to copy")

    def copy_block(t: str, s: str, in_idx: torch.Tensor, res_idx: torch.Tensor) -> None:
        if ss.expansion == 1:
            hidden = in_idx  # the depthwise conv reads the block's input channels
        else:
            hidden = top_k(l1_rows(cp.src[f"{t}.expand.0.weight"]), cp.dst[f"{s}.expand.0.weight"].shape[0])
            cp.conv_bn(f"{s}.expand", f"{t}.expand", hidden, in_idx)
        cp.conv_bn(f"{s}.dw", f"{t}.dw", hidden, None)
        cp.conv_bn(f"{s}.project", f"{t}.project", res_idx, hidden)

    return init_staged(teacher, student, cp, ("project",), (
        "stage residual channels: summed L1 norm of output filters of the stem / projection convs; "
        "expanded channels: L1 norm of the expansion conv's output filters (depthwise filters follow)"), copy_block)


# Shrinks and interpolates like the residual CNN: same widths/depths shape (the expansion stays the
# student's, or the teacher's when shrinking).
register_family(Family("mobilenet", MobileNetSpec, MobileNet, shrink=shrink_staged, init_from_teacher=init_mobilenet,
                       between=between_staged))
