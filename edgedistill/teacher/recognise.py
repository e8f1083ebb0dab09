"""Recognise a teacher from outside the zoo by its modules, and map it onto the zoo family it is.

The teachers mobile teams bring are ResNets, MobileNets and EfficientNets from torchvision, timm or
a package. When one is recognised, its students keep its structure and start from its weights like
a zoo teacher's do: :func:`recognise` reads the layout off the module tree (by attribute names and
layer shapes, never by class name, so a copied or subclassed model is recognised too), builds the
zoo spec that has that layout, and renames the teacher's state dict into the zoo model's: the
teacher's *twin*. The twin is then run beside the teacher on one random batch:

- identical outputs (both layouts below, to float rounding): the twin *is* the teacher, and the
  build uses it in the teacher's place (feature hints by stage, teacher assistants of its family);
- otherwise (a variant whose computation the zoo's modules do not reproduce): the user's module
  stays the teacher and the twin is only where the student's initial weights are sliced from.

The twin's batch norms take the teacher's epsilon (EfficientNet-Lite's checkpoints use
TensorFlow's 1e-3); its students are built from the spec with the zoo's 1e-5, and fine-tune.

Recognised today:

- torchvision's ResNet layout with basic blocks (ResNet-18/34: ``conv1, bn1, relu, maxpool,
  layer1..4, fc``; each block ``conv1, bn1, conv2, bn2`` and an optional ``downsample``) -> resnet;
- ``efficientnet_lite_pytorch``'s EfficientNet(-Lite) (``_conv_stem, _bn0, _blocks, _conv_head,
  _bn1, _fc``; blocks ``_expand_conv, _bn0, _depthwise_conv, _bn1, _project_conv, _bn2``) without
  squeeze-excite -> mbconv with TensorFlow "SAME" padding on its strided convs, as it was trained.

Anything else (bottleneck ResNets, squeeze-excite, other layouts) returns a :class:`Recognised`
with ``spec`` None and ``reason`` saying what did not match; its students come from the zoo's most
target-friendly family and the report says so.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

# A twin whose logits differ from the teacher's by at most this (relative to their scale) is the teacher.
EXACT_TOLERANCE = 1e-4


@dataclass
class Recognised:
    """What :func:`recognise` made of a teacher: its layout as a zoo spec (None when not recognised),
    the twin carrying its weights, and how close the twin's outputs are."""

    layout: str  # e.g. "torchvision ResNet (basic blocks)"; "" when not recognised
    spec: object | None = None
    twin: nn.Module | None = None
    max_logit_diff: float | None = None  # max |teacher - twin| over one batch, relative to max |teacher|
    reason: str = ""  # why it was not recognised
    why_inexact: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def exact(self) -> bool:
        return self.max_logit_diff is not None and self.max_logit_diff <= EXACT_TOLERANCE

    def describe(self) -> str:
        if self.spec is None:
            return f"not a recognised layout ({self.reason})"
        how = ("the twin reproduces its outputs and stands in for it" if self.exact else
               f"the twin's outputs differ by {self.max_logit_diff:.2g} of their scale ({self.why_inexact}), so "
               "the teacher stays as given and the twin only seeds the student's weights")
        return f"{self.layout}, mapped onto the zoo's {self.spec.describe()}: {how}"

    def to_dict(self) -> dict:
        from edgedistill.models import spec_to_dict

        return {"layout": self.layout, "spec": spec_to_dict(self.spec) if self.spec is not None else None,
                "exact": self.exact, "max_logit_diff": self.max_logit_diff, "reason": self.reason,
                "description": self.describe()}


def recognise(teacher: nn.Module, input_shape: tuple[int, int, int], num_classes: int) -> Recognised:
    """Map ``teacher`` onto a zoo family (see the module docstring); ``input_shape`` is (C, H, W)."""
    if isinstance(teacher, torch.jit.ScriptModule):
        return Recognised("", reason="a TorchScript module, whose layers are not nn modules to read; pass the "
                                     "factory and its weights (FILE.py:FUNCTION --weights) to keep its structure")
    for layout, reader in _READERS:
        try:
            found = reader(teacher, input_shape[0], num_classes)
        except _NotThis:
            continue
        except _Unsupported as err:
            return Recognised("", reason=f"{layout}: {err}")
        except (AttributeError, TypeError, IndexError, ValueError) as err:  # the names fit, the shapes do not
            return Recognised("", reason=f"{layout}: its modules do not read as one ({type(err).__name__}: {err})")
        spec, state, bn_eps = found
        from edgedistill.models import create_model

        twin = create_model(spec)
        for bn in twin.modules():  # a module attribute, not a weight: the twin computes as the teacher does
            if isinstance(bn, nn.BatchNorm2d):
                bn.eps = bn_eps
        try:
            missing, unexpected = twin.load_state_dict(state, strict=False)
        except RuntimeError as err:  # a tensor of another shape than the layout read implies
            return Recognised("", reason=f"{layout}: weights do not map ({str(err).splitlines()[-1].strip()})")
        if missing or unexpected:
            return Recognised("", reason=f"{layout}: weights do not map ({len(missing)} missing, "
                                         f"{len(unexpected)} unexpected, e.g. {(missing or unexpected)[0]})")
        twin.eval()
        diff = _logit_diff(teacher, twin, input_shape)
        return Recognised(layout, spec, twin, diff, why_inexact="" if diff <= EXACT_TOLERANCE else
                          "a computation the zoo's modules do not reproduce")
    return Recognised("", reason="no ResNet (torchvision layout) or EfficientNet-Lite (efficientnet_lite_pytorch) "
                                 "module structure")


class _NotThis(Exception):
    """The module does not have this layout at all."""


class _Unsupported(Exception):
    """The module has this layout, in a variant the zoo cannot express."""


@torch.no_grad()
def _logit_diff(teacher: nn.Module, twin: nn.Module, input_shape: tuple[int, int, int]) -> float:
    x = torch.randn((4, *input_shape), generator=torch.Generator().manual_seed(0))
    was = teacher.training
    teacher.eval()
    try:
        a = teacher(x)
    finally:
        teacher.train(was)
    b = twin(x)
    return float((a - b).abs().max() / a.abs().max().clamp_min(1e-12))


def _conv_bn(state: dict, dst: str, conv: nn.Conv2d, bn: nn.BatchNorm2d) -> None:
    """The zoo's ``conv_bn`` (Sequential(conv, bn)) keys at ``dst`` from a conv and its batch norm."""
    state[f"{dst}.0.weight"] = conv.weight.detach().clone()
    for name, t in bn.state_dict().items():
        state[f"{dst}.1.{name}"] = t.clone()


def _has(module: nn.Module, *names: str) -> bool:
    return all(hasattr(module, n) for n in names)


def _read_torchvision_resnet(m: nn.Module, in_channels: int, num_classes: int):
    from edgedistill.models.resnet import ResNetSpec

    if not (_has(m, "conv1", "bn1", "maxpool", "fc") and all(hasattr(m, f"layer{i}") for i in range(1, 5))):
        raise _NotThis
    layers = [getattr(m, f"layer{i}") for i in range(1, 5)]
    if any(hasattr(b, "conv3") for layer in layers for b in layer):
        raise _Unsupported("bottleneck blocks (ResNet-50 and deeper); the zoo's residual family has basic blocks")
    if not isinstance(m.maxpool, nn.MaxPool2d) or m.conv1.kernel_size != (7, 7) or m.conv1.stride != (2, 2):
        raise _Unsupported("a stem other than torchvision's 7x7 stride-2 conv and 3x3 max pool")
    if m.conv1.in_channels != in_channels or not isinstance(m.fc, nn.Linear) or m.fc.out_features != num_classes:
        raise _Unsupported(f"takes {m.conv1.in_channels} channels and answers {getattr(m.fc, 'out_features', '?')} "
                           f"classes; the data has {in_channels} and {num_classes}")
    widths = tuple(layer[-1].conv2.out_channels for layer in layers)
    strides = tuple(layer[0].conv1.stride[0] for layer in layers)
    stem = m.conv1.out_channels
    spec = ResNetSpec(in_channels, num_classes, widths, tuple(len(layer) for layer in layers), strides=strides,
                      stem_stride=2, stem_kernel=7, stem_pool=True, stem_width=0 if stem == widths[0] else stem)
    state: dict = {}
    _conv_bn(state, "stem.0", m.conv1, m.bn1)
    for i, layer in enumerate(layers):
        for j, b in enumerate(layer):
            _conv_bn(state, f"stages.{i}.{j}.conv1", b.conv1, b.bn1)
            _conv_bn(state, f"stages.{i}.{j}.conv2", b.conv2, b.bn2)
            if getattr(b, "downsample", None) is not None:
                _conv_bn(state, f"stages.{i}.{j}.shortcut", b.downsample[0], b.downsample[1])
    state["head.weight"], state["head.bias"] = m.fc.weight.detach().clone(), m.fc.bias.detach().clone()
    return spec, state, m.bn1.eps


def _read_efficientnet_lite(m: nn.Module, in_channels: int, num_classes: int):
    from edgedistill.models.mbconv import MBConvSpec

    if not (_has(m, "_conv_stem", "_bn0", "_blocks", "_conv_head", "_bn1", "_fc")):
        raise _NotThis
    blocks = list(m._blocks)
    if any(getattr(b, "has_se", False) for b in blocks):
        raise _Unsupported("squeeze-excite blocks (EfficientNet-B*); the zoo's MBConv family is the Lite variant")
    act = type(getattr(m, "_swish", None))
    if act is not nn.ReLU6:
        raise _Unsupported(f"activation {act.__name__} (the zoo's MBConv family uses ReLU6, as -Lite does)")
    if m._conv_stem.in_channels != in_channels or m._fc.out_features != num_classes:
        raise _Unsupported(f"takes {m._conv_stem.in_channels} channels and answers {m._fc.out_features} classes; "
                           f"the data has {in_channels} and {num_classes}")
    # a stage is a run of blocks with one output width, kernel and expansion, entered by its first block
    stages: list[list] = []
    for b in blocks:
        a = b._block_args
        stride = a.stride[0] if isinstance(a.stride, (list, tuple)) else a.stride
        first = not stages or stride != 1 or a.input_filters != a.output_filters
        if first:
            stages.append([])
        stages[-1].append((b, a, stride))
    spec = MBConvSpec(
        in_channels, num_classes, widths=tuple(s[0][1].output_filters for s in stages),
        depths=tuple(len(s) for s in stages), strides=tuple(s[0][2] for s in stages),
        expansions=tuple(s[0][1].expand_ratio for s in stages), kernels=tuple(s[0][1].kernel_size for s in stages),
        stem_width=m._conv_stem.out_channels, stem_stride=m._conv_stem.stride[0], head_width=m._conv_head.out_channels,
        same_padding=True,  # the package pads every conv like TensorFlow's "SAME" (static or dynamic)
    )
    state: dict = {}
    _conv_bn(state, "stem.0", m._conv_stem, m._bn0)
    for i, stage in enumerate(stages):
        for j, (b, a, _stride) in enumerate(stage):
            if a.expand_ratio != 1:
                _conv_bn(state, f"stages.{i}.{j}.expand", b._expand_conv, b._bn0)
            _conv_bn(state, f"stages.{i}.{j}.dw", b._depthwise_conv, b._bn1)
            _conv_bn(state, f"stages.{i}.{j}.project", b._project_conv, b._bn2)
    _conv_bn(state, "head_conv.0", m._conv_head, m._bn1)
    state["head.weight"], state["head.bias"] = m._fc.weight.detach().clone(), m._fc.bias.detach().clone()
    return spec, state, m._bn0.eps


_READERS = (
    ("torchvision ResNet (basic blocks)", _read_torchvision_resnet),
    ("EfficientNet-Lite (efficientnet_lite_pytorch)", _read_efficientnet_lite),
)
