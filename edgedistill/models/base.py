"""The small protocol every zoo model answers, so distillation can tap any layer of any family.

A zoo model is an ``nn.Module`` with:
- ``spec``: a frozen dataclass that rebuilds it (``create_model(model.spec)``), saved beside weights;
- ``forward_features(x)`` -> the last feature map / token sequence before pooling;
- ``forward_head(features, pre_logits=False)`` -> logits (or the pooled embedding);
- ``feature_info``: one :class:`FeatureInfo` per stage, naming the module whose output is that
  stage's features, so hints and attention transfer address features by module path;
- ``attention_modules``: module paths whose outputs are attention probabilities (transformers).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import nn


@dataclass(frozen=True)
class FeatureInfo:
    module: str  # module path whose forward output is the stage's features
    channels: int  # channels (CNN) or embedding width (transformer)
    reduction: int  # input pixels per feature position along one side
    kind: str = "spatial"  # "spatial" -> (N, C, H, W); "tokens" -> (N, L, D)


_FAMILIES: dict[str, tuple[type, Callable[[Any], nn.Module]]] = {}


def register_family(name: str, spec_cls: type, build: Callable[[Any], nn.Module]) -> None:
    _FAMILIES[name] = (spec_cls, build)


def families() -> list[str]:
    return sorted(_FAMILIES)


def create_model(spec: Any) -> nn.Module:
    family = getattr(spec, "family", None)
    if family not in _FAMILIES:
        raise KeyError(f"unknown model family {family!r}; known: {', '.join(families())}")
    return _FAMILIES[family][1](spec)


def spec_to_dict(spec: Any) -> dict:
    d = dataclasses.asdict(spec)
    d["family"] = spec.family
    return d


def spec_from_dict(d: dict) -> Any:
    d = dict(d)
    family = d.pop("family")
    if family not in _FAMILIES:
        raise KeyError(f"unknown model family {family!r}; known: {', '.join(families())}")
    spec_cls = _FAMILIES[family][0]
    fields = {f.name: f for f in dataclasses.fields(spec_cls)}
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items() if k in fields}
    return spec_cls(**kwargs)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def count_flops(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """Multiply-accumulates of one forward pass at batch 1 (conv and linear layers), times two."""
    total = 0

    def conv_hook(mod: nn.Conv2d, _inp, out):
        nonlocal total
        k = mod.kernel_size[0] * mod.kernel_size[1] * (mod.in_channels // mod.groups)
        total += 2 * k * out.numel()

    def linear_hook(mod: nn.Linear, inp, out):
        nonlocal total
        total += 2 * mod.in_features * out.numel()

    handles = []
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            handles.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):
            handles.append(m.register_forward_hook(linear_hook))
    was_training = model.training
    model.eval()
    try:
        model(torch.zeros((1, *input_shape)))
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return total
