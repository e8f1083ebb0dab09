"""EfficientNet-Lite-style MBConv family: inverted residuals with 3x3 and 5x5 depthwise kernels,
ReLU6, no squeeze-excite, a 1280-wide head conv.

EfficientNet-Lite (Google's edge variant of EfficientNet) dropped squeeze-excite and swapped swish
for ReLU6 precisely so the whole net stays on int8 builtin kernels of LiteRT; that is the family
here. Its blocks are the inverted-residual family's (:mod:`edgedistill.models.mobilenet`: 1x1
expansion, kxk depthwise, linear 1x1 projection) with per-stage kernels and expansions, so it
shares that family's module and weight-copy rule and differs in its spec: the defaults are
EfficientNet-Lite0's layout at 224 px (stem 32 stride 2; seven stages; head conv 1280), which
:mod:`edgedistill.teacher.recognise` reads off an ``efficientnet_lite_pytorch`` model. Its ReLU6
is quantized fused with the conv before it, as TFLite runs it (:mod:`edgedistill.quantize.clamp_fusion`:
without that the 96 px student lost 20 points at int8).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from edgedistill.models.base import Family, register_family
from edgedistill.models.mobilenet import MobileNet, MobileNetSpec, init_mobilenet
from edgedistill.models.staged import between_staged, shrink_staged


@dataclass(frozen=True)
class MBConvSpec(MobileNetSpec):
    widths: tuple[int, ...] = (16, 24, 40, 80, 112, 192, 320)
    depths: tuple[int, ...] = (1, 2, 2, 3, 3, 4, 1)
    expansion: int = 6
    family: str = "mbconv"
    # the layout (StagedLayout's keyword-only fields, stay keyword-only): Lite0's at 224 px
    strides: tuple[int, ...] = field(default=(1, 2, 2, 2, 1, 2, 1), kw_only=True)
    stem_stride: int = field(default=2, kw_only=True)
    stem_width: int = field(default=32, kw_only=True)
    head_width: int = field(default=1280, kw_only=True)
    expansions: tuple[int, ...] = (1, 6, 6, 6, 6, 6, 6)
    kernels: tuple[int, ...] = (3, 3, 5, 3, 5, 5, 3)
    act: str = "relu6"


def shrink_mbconv(spec: MBConvSpec) -> list[MBConvSpec]:
    """The staged shrink ladder; students pad symmetrically even when the teacher pads like
    TensorFlow: litert-torch 0.10 cannot lower a pad before a conv with a dynamic batch
    ("Dimension size after padding is not at least 0"), and a student is trained anyway (the
    weights it starts from are the same shapes either way)."""
    return [dataclasses.replace(s, same_padding=False) for s in shrink_staged(spec)]


register_family(Family("mbconv", MBConvSpec, MobileNet, shrink=shrink_mbconv, init_from_teacher=init_mobilenet,
                       between=between_staged))
