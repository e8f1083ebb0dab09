"""The skeleton the CNN families share (residual, inverted residual, MBConv), and what they know
beyond building: their shrink ladder, assistant interpolation and the layout for an input size.

A staged CNN is a stem, stages of blocks (a stage's first block may change width and resolution),
an optional 1x1 head conv, global average pooling and a linear classifier. Its spec carries the
stage widths and depths and these layout fields (:class:`StagedLayout`, which every staged spec
inherits; the defaults are the small-image layout the zoo started with):

- ``strides``: per stage; ``()`` is 1 for the first stage and 2 after it;
- ``stem_stride``, ``stem_kernel``: the stem conv (1 and 3: full resolution);
- ``stem_pool``: a 3x3 stride-2 max pool after the stem (torchvision's ResNet stem);
- ``stem_width``: the stem's channels; 0 is the first stage's width, and then the stem writes
  that stage's residual space (it is ranked with it when a student is initialised);
- ``head_width``: a 1x1 conv-bn-activation to this width before pooling (MobileNetV2 and
  EfficientNet end with one to 1280); 0 is none.

:func:`layout_for` chooses these from the input size: small inputs (up to 32 px, the digits
demo) keep the full-resolution stem; larger ones get a stride-2 stem and stride-2 stages while the
feature map is larger than a few pixels, as ResNet-18, MobileNetV2 and EfficientNet-Lite do.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from edgedistill.models.base import WIDTH_MULTIPLIERS, FeatureInfo, geometric, round_width

# Inputs up to this many pixels a side keep the full-resolution stem (8x8 and 28x28 digits).
SMALL_INPUT = 32
# Downsampling stops once the feature map is this small: ImageNet nets end at 7x7 from 224 px.
MIN_FEATURE_MAP = 3


@dataclass(frozen=True, kw_only=True)
class StagedLayout:
    """The layout fields every staged spec inherits (see the module docstring). Keyword-only, so a
    spec's own fields keep their positions: ``ResNetSpec(1, 10, widths, depths)``."""

    strides: tuple[int, ...] = ()
    stem_stride: int = 1
    stem_kernel: int = 3
    stem_pool: bool = False
    stem_width: int = 0
    head_width: int = 0


def check_stages(widths: tuple[int, ...], depths: tuple[int, ...]) -> None:
    """The stage shape every staged CNN spec needs: one positive width and depth per stage."""
    if len(widths) != len(depths) or not widths:
        raise ValueError(f"widths {widths} and depths {depths} must be non-empty and equal length")
    if min(widths) < 1 or min(depths) < 1:
        raise ValueError(f"widths and depths must be positive: {widths} {depths}")


def check_layout(spec) -> None:
    check_stages(spec.widths, spec.depths)
    if spec.strides and (len(spec.strides) != len(spec.widths) or not set(spec.strides) <= {1, 2}):
        raise ValueError(f"strides {spec.strides} must give 1 or 2 for each of the {len(spec.widths)} stages")
    if spec.stem_stride not in (1, 2) or spec.stem_kernel not in (3, 5, 7):
        raise ValueError(f"stem stride {spec.stem_stride} (1 or 2) / kernel {spec.stem_kernel} (3, 5 or 7)")
    if spec.stem_width < 0 or spec.head_width < 0:
        raise ValueError(f"stem_width {spec.stem_width} and head_width {spec.head_width} must be >= 0")


def stage_strides(spec) -> tuple[int, ...]:
    return tuple(spec.strides) or tuple(1 if i == 0 else 2 for i in range(len(spec.widths)))


def stem_width(spec) -> int:
    return spec.stem_width or spec.widths[0]


def layout_suffix(spec) -> str:
    """What ``describe()`` adds for a layout other than the small-image default, e.g.
    ``" stem32s2 s1-2-2-2-1-2-1 head1280"`` (empty for the default, so names stay as they were)."""
    parts = []
    if spec.stem_stride != 1 or spec.stem_kernel != 3 or spec.stem_pool or spec.stem_width:
        parts.append(f"stem{stem_width(spec)}" + (f"k{spec.stem_kernel}" if spec.stem_kernel != 3 else "")
                     + f"s{spec.stem_stride}" + ("p" if spec.stem_pool else ""))
    if spec.strides and tuple(spec.strides) != tuple(1 if i == 0 else 2 for i in range(len(spec.widths))):
        parts.append("s" + "-".join(map(str, spec.strides)))
    if spec.head_width:
        parts.append(f"head{spec.head_width}")
    if getattr(spec, "same_padding", False):
        parts.append("same")
    return "".join(" " + p for p in parts)


def make_act(name: str) -> nn.Module:
    if name == "relu":
        return nn.ReLU()
    if name == "relu6":
        return nn.ReLU6()
    raise ValueError(f"unknown activation {name!r}: relu or relu6 (both fuse into LiteRT's int8 kernels)")


class Conv2dSame(nn.Conv2d):
    """A strided conv padded like TensorFlow's "SAME" (the extra pixel on the right and bottom), as
    EfficientNet-Lite's checkpoints were trained; same state-dict keys as ``nn.Conv2d``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = []
        for size, k, s in ((x.shape[-1], self.kernel_size[1], self.stride[1]), (x.shape[-2], self.kernel_size[0], self.stride[0])):
            total = max((-(-size // s) - 1) * s + k - size, 0)
            pads += [total // 2, total - total // 2]
        return super().forward(nn.functional.pad(x, pads))


def conv_bn(cin: int, cout: int, k: int = 3, stride: int = 1, groups: int = 1, same: bool = False) -> nn.Sequential:
    """Conv (no bias) + batch norm; ``same``: TensorFlow "SAME" padding for a strided conv
    (:class:`Conv2dSame`; for stride 1 and odd kernels it is the symmetric padding anyway)."""
    if same and stride > 1:
        conv = Conv2dSame(cin, cout, k, stride=stride, padding=0, groups=groups, bias=False)
    else:
        conv = nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2, groups=groups, bias=False)
    return nn.Sequential(conv, nn.BatchNorm2d(cout))


class GlobalAvgPool(nn.Module):
    """Mean over H and W. A plain mean (not AdaptiveAvgPool2d) keeps a dynamic batch exportable to
    LiteRT: the adaptive pool lowers through as_strided, which the converter cannot size."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3))


class StagedCNN(nn.Module):
    """Stem, stages, optional head conv, pooling and a linear head (see the module docstring).
    ``block(cin, cout, stride, stage)`` builds one block of stage ``stage``."""

    def __init__(self, spec, block: Callable[[int, int, int, int], nn.Module]) -> None:
        super().__init__()
        self.spec = spec
        act = getattr(spec, "act", "relu")
        same = getattr(spec, "same_padding", False)
        stem = [conv_bn(spec.in_channels, stem_width(spec), spec.stem_kernel, spec.stem_stride, same=same), make_act(act)]
        reduction = spec.stem_stride
        if spec.stem_pool:
            stem.append(nn.MaxPool2d(3, stride=2, padding=1))
            reduction *= 2
        self.stem = nn.Sequential(*stem)
        stages = []
        cin = stem_width(spec)
        self.feature_info: list[FeatureInfo] = []
        for i, (width, depth, stride) in enumerate(zip(spec.widths, spec.depths, stage_strides(spec))):
            reduction *= stride
            stages.append(nn.Sequential(*[block(cin if j == 0 else width, width, stride if j == 0 else 1, i)
                                          for j in range(depth)]))
            cin = width
            self.feature_info.append(FeatureInfo(f"stages.{i}", width, reduction, "spatial"))
        self.stages = nn.Sequential(*stages)
        if spec.head_width:
            self.head_conv = nn.Sequential(conv_bn(cin, spec.head_width, 1), make_act(act))
            cin = spec.head_width
        self.pool = GlobalAvgPool()
        self.head = nn.Linear(cin, spec.num_classes)
        self.attention_modules: list[str] = []
        self.embedding_module = "pool"

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stages(self.stem(x))
        return self.head_conv(x) if self.spec.head_width else x

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.pool(x)
        return x if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def layout_for(input_hw: tuple[int, int], n_stages: int, base_strides: tuple[int, ...] = (),
               stem_pool: bool = False) -> dict:
    """Layout fields for an input of ``input_hw`` pixels: {} (the small-image default) up to
    :data:`SMALL_INPUT`; above it a stride-2 stem (and ``stem_pool``), then the stages' strides
    (``base_strides``, default 1 then 2s) kept at 2 only while the map stays at least
    :data:`MIN_FEATURE_MAP` pixels a side."""
    side = min(input_hw)
    if side <= SMALL_INPUT:
        return {}
    size = side / (4 if stem_pool else 2)
    strides = []
    for s in base_strides or tuple(1 if i == 0 else 2 for i in range(n_stages)):
        if s == 2 and size / 2 >= MIN_FEATURE_MAP:
            size /= 2
            strides.append(2)
        else:
            strides.append(1)
    return {"stem_stride": 2, "stem_pool": stem_pool, "strides": tuple(strides)}


def shrink_staged(spec) -> list:
    """Narrower (width multipliers: the stages, the stem and the head conv kept in proportion) and
    shallower (fewer blocks per stage) versions of a staged CNN spec, its own shape included,
    deepest and widest first."""
    depth_options = {
        tuple(spec.depths),
        tuple(max(1, d - 1) for d in spec.depths),
        tuple(max(1, d // 2) for d in spec.depths),
        tuple(1 for _ in spec.depths),
    }
    return [dataclasses.replace(scaled_widths(spec, m), depths=depths)
            for depths in sorted(depth_options, reverse=True) for m in WIDTH_MULTIPLIERS]


def scaled_widths(spec, m: float):
    """``spec`` at ``m`` times its width: the stages, the stem and the head conv in proportion."""
    extra = {k: round_width(getattr(spec, k) * m) for k in ("stem_width", "head_width") if getattr(spec, k)}
    return dataclasses.replace(spec, widths=tuple(round_width(w * m) for w in spec.widths), **extra)


def between_staged(s, t, alpha: float):
    """A staged CNN spec ``alpha`` of the way from student ``s`` to teacher ``t`` (geometrically, in
    every width and depth, the stem's and head conv's widths included); other fields stay the
    student's."""
    if len(s.widths) != len(t.widths):
        # Different stage counts: keep the student's stages and grow only their widths.
        t_w = [t.widths[min(len(t.widths) - 1, round(i * (len(t.widths) - 1) / max(1, len(s.widths) - 1)))]
               for i in range(len(s.widths))]
        t_d = list(s.depths)
    else:
        t_w, t_d = list(t.widths), list(t.depths)
    widths = tuple(max(1, round(geometric(a, b, alpha))) for a, b in zip(s.widths, t_w))
    depths = tuple(max(1, round(geometric(a, b, alpha))) for a, b in zip(s.depths, t_d))
    extra = {k: max(1, round(geometric(getattr(s, k), getattr(t, k), alpha)))
             for k in ("stem_width", "head_width") if getattr(s, k) and getattr(t, k)}
    return dataclasses.replace(s, widths=widths, depths=depths, **extra)
