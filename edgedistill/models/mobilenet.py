"""Inverted-residual (MobileNetV2-style) family: the zoo's most target-friendly family.

Every block is a 1x1 expansion, a 3x3 depthwise conv and a linear 1x1 projection (Sandler et al.
2018), so most multiply-accumulates sit in 1x1 convs (plain GEMMs) and the 3x3 spatial work costs
one MAC per channel and tap instead of one per channel pair. That is why XNNPACK and LiteRT run it
well on phones and boards, and why a teacher from outside the zoo gets its students from here.

Laid out like the residual CNN (:mod:`edgedistill.models.staged`): for small images the stem keeps
full resolution and each stage after the first halves it (8x8 digits end at 2x2 after three
stages); for larger ones a stride-2 stem, and :data:`REAL_RESOLUTION_BASE` is MobileNetV2's own
layout. Scalable in depth (blocks per stage) and width (channels per stage; the expanded width is
``expansion`` times a block's input, or per stage ``expansions``; per-stage depthwise ``kernels``).

Choices made for int8 deployment rather than copied from the paper:
- ReLU rather than ReLU6: conv + batch-norm + ReLU is the pattern PT2E QAT and LiteRT fuse into one
  int8 kernel everywhere; a fully integer model gets no benefit from ReLU6's clamp (the activation's
  quantization range already bounds it).
- No final 1x1 conv to 1280 channels before pooling at small-image widths, where it would be most
  of the model; the real-resolution base has it (``head_width``), scaled with the width ladder.
- A stage's first block changes width (and resolution) and has no shortcut; the others add their
  input, as in MobileNetV2.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from edgedistill.models.base import Family, register_family
from edgedistill.models.init import Copier, init_staged, l1_rows, top_k
from edgedistill.models.staged import (
    StagedCNN, StagedLayout, between_staged, check_layout, conv_bn, layout_for, layout_suffix, make_act, shrink_staged,
)

# What a teacher outside the zoo is shrunk from (edgedistill.select.candidates.zoo_teacher_spec): on
# small images an inverted-residual net about as wide and deep as the built-in teacher (widths,
# depths, expansion); the width ladder reaches down from there.
NON_ZOO_BASE = ((32, 64, 128), (2, 2, 2), 4)
# Above 32 px, MobileNetV2 (Sandler et al. 2018, table 2) at width 1.0, whose 224 px strides
# layout_for keeps while the map stays >= 3 px: stem 32 stride 2, seven stages, a 1280 head conv.
REAL_RESOLUTION_BASE = dict(
    widths=(16, 24, 32, 64, 96, 160, 320), depths=(1, 2, 3, 4, 3, 3, 1), strides=(1, 2, 2, 2, 1, 2, 1),
    expansions=(1, 6, 6, 6, 6, 6, 6), stem_width=32, head_width=1280,
)


@dataclass(frozen=True)
class MobileNetSpec(StagedLayout):
    in_channels: int
    num_classes: int
    widths: tuple[int, ...] = (32, 64, 128)
    depths: tuple[int, ...] = (2, 2, 2)
    expansion: int = 4
    family: str = "mobilenet"
    expansions: tuple[int, ...] = ()  # per stage; () is ``expansion`` everywhere
    kernels: tuple[int, ...] = ()  # depthwise kernel per stage; () is 3 everywhere
    act: str = "relu"
    same_padding: bool = False  # TensorFlow "SAME" padding on strided convs (EfficientNet-Lite checkpoints)

    def __post_init__(self) -> None:
        check_layout(self)
        n = len(self.widths)
        if self.expansion < 1 or min(self.expansions, default=1) < 1 or (self.expansions and len(self.expansions) != n):
            raise ValueError(f"expansion(s) must be positive, one per stage: {self}")
        if self.kernels and (len(self.kernels) != n or not set(self.kernels) <= {3, 5, 7}):
            raise ValueError(f"kernels {self.kernels}: one of 3, 5, 7 per stage")
        make_act(self.act)

    def stage_expansions(self) -> tuple[int, ...]:
        return tuple(self.expansions) or (self.expansion,) * len(self.widths)

    def stage_kernels(self) -> tuple[int, ...]:
        return tuple(self.kernels) or (3,) * len(self.widths)

    def describe(self) -> str:
        e = "-".join(map(str, self.expansions)) if self.expansions else str(self.expansion)
        k = f" k{'-'.join(map(str, self.kernels))}" if self.kernels and set(self.kernels) != {3} else ""
        act = f" {self.act}" if self.act != type(self).act else ""
        return (f"{self.family} w{'-'.join(map(str, self.widths))} d{'-'.join(map(str, self.depths))} "
                f"e{e}{k}{act}{layout_suffix(self)}")


def real_resolution_base(in_channels: int, num_classes: int, input_hw: tuple[int, int]) -> MobileNetSpec:
    """What a teacher outside the zoo is shrunk from at this input size (see the constants above)."""
    layout = layout_for(input_hw, len(REAL_RESOLUTION_BASE["widths"]), REAL_RESOLUTION_BASE["strides"])
    if not layout:
        return MobileNetSpec(in_channels, num_classes, *NON_ZOO_BASE)
    return MobileNetSpec(in_channels, num_classes, **{**REAL_RESOLUTION_BASE, **layout})


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expansion: int, kernel: int = 3, act: str = "relu",
                 same: bool = False) -> None:
        super().__init__()
        hidden = cin * expansion
        # expansion 1 has nothing to expand: the depthwise conv reads the input directly
        self.expand = conv_bn(cin, hidden, 1) if expansion != 1 else nn.Identity()
        self.act1 = make_act(act) if expansion != 1 else nn.Identity()
        self.dw = conv_bn(hidden, hidden, kernel, stride, groups=hidden, same=same)  # one filter per channel
        self.act2 = make_act(act)
        self.project = conv_bn(hidden, cout, 1)  # linear bottleneck: no activation after it
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.project(self.act2(self.dw(self.act1(self.expand(x)))))
        return x + y if self.residual else y


class MobileNet(StagedCNN):
    def __init__(self, spec: MobileNetSpec) -> None:
        e, k = spec.stage_expansions(), spec.stage_kernels()
        super().__init__(spec, lambda cin, cout, stride, i: InvertedResidual(cin, cout, stride, e[i], k[i], spec.act,
                                                                                    spec.same_padding))


def init_mobilenet(teacher: nn.Module, student: nn.Module, cp: Copier) -> dict:
    """As resnet, a stage's residual channels are ranked once per stage (stem and each kept block's
    projection filters); a block's expanded channels by the L1 norm of its expansion conv's
    filters, and its depthwise filters follow them one for one."""
    ts, ss = teacher.spec, student.spec
    te, se = ts.stage_expansions(), ss.stage_expansions()
    if any((a == 1) != (b == 1) for a, b in zip(te, se)) or ts.stage_kernels() != ss.stage_kernels():
        raise ValueError(f"teacher expansions {te} / kernels {ts.stage_kernels()} and student expansions {se} / "
                         f"kernels {ss.stage_kernels()}: a stage without an expansion conv, or another depthwise "
                         "kernel, has nothing to copy from")

    def copy_block(t: str, s: str, in_idx: torch.Tensor, res_idx: torch.Tensor) -> None:
        if f"{s}.expand.0.weight" not in cp.dst:
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
