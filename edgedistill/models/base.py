"""The small protocol every zoo model answers, and the registry of families that know their models.

A zoo model is an ``nn.Module`` with:
- ``spec``: a frozen dataclass that rebuilds it (``create_model(model.spec)``), saved beside weights;
- ``forward_features(x)`` -> the last feature map / token sequence before pooling;
- ``forward_head(features, pre_logits=False)`` -> logits (or the pooled embedding);
- ``feature_info``: one :class:`FeatureInfo` per stage, naming the module whose output is that
  stage's features, so hints and attention transfer address features by module path;
- ``attention_modules``: module paths whose outputs are attention probabilities (transformers).

A family is one file in ``models/`` that calls :func:`register_family` with a :class:`Family`
(and one import line in ``models/__init__.py``). Everything the rest of the package knows about a
family it asks the record:
- ``spec_cls`` and ``build``: the spec dataclass (with a ``family`` field naming the family and a
  ``describe()``) and the ``nn.Module`` built from it;
- ``shrink(spec)``: the students selection considers for a teacher of this spec, narrower and
  shallower, the teacher's own shape included (duplicates are dropped by the caller; the ladders
  below are the shared steps);
- ``init_from_teacher(teacher, student, copier)``: copy a teacher's most important weights into a
  smaller student of the family through a :class:`~edgedistill.models.init.Copier`, returning what
  was done (see :mod:`edgedistill.models.init`); None when the family has no rule;
- ``between(student_spec, teacher_spec, alpha)``: a spec a fraction ``alpha`` of the way from the
  student to the teacher in every dimension (teacher assistants); None when the family has none;
- ``dynamic_batch`` and ``int8_problem``: how it exports to LiteRT with litert-torch 0.10: whether
  its .tflite can take any batch, and why it cannot be fully integer ("" when it can).
"""

from __future__ import annotations

import dataclasses
import math
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


@dataclass(frozen=True)
class Family:
    """What one model family knows: how to build, shrink, initialise from a teacher, interpolate
    towards a teacher and export its models (see the module docstring)."""

    name: str
    spec_cls: type
    build: Callable[[Any], nn.Module]
    shrink: Callable[[Any], list[Any]]
    init_from_teacher: Callable[[nn.Module, nn.Module, Any], dict] | None = None
    between: Callable[[Any, Any, float], Any] | None = None
    dynamic_batch: bool = True
    int8_problem: str = ""


_FAMILIES: dict[str, Family] = {}


def register_family(family: Family) -> Family:
    _FAMILIES[family.name] = family
    return family


def families() -> list[str]:
    return sorted(_FAMILIES)


def get_family(name: str | None) -> Family:
    """The registered family called ``name`` (a KeyError naming the known ones otherwise)."""
    if name not in _FAMILIES:
        raise KeyError(f"unknown model family {name!r}; known: {', '.join(families())}")
    return _FAMILIES[name]


def family_of(spec: Any) -> Family:
    """The family of a zoo spec (its ``family`` field), e.g. ``family_of(spec).dynamic_batch``."""
    return get_family(getattr(spec, "family", None))


def create_model(spec: Any) -> nn.Module:
    return family_of(spec).build(spec)


# --- the shared steps of the families' shrink rules and assistant interpolation -------------------

WIDTH_MULTIPLIERS = (1.0, 0.75, 0.5, 0.375, 0.25, 0.1875, 0.125)


def round_width(w: float, multiple: int = 4) -> int:
    return max(multiple, int(round(w / multiple)) * multiple)


def depth_options(depth: int) -> list[int]:
    """A layer count, three quarters, half and a quarter of it (at least 1), deepest first."""
    return sorted({depth, max(1, (3 * depth) // 4), max(1, depth // 2), max(1, depth // 4)}, reverse=True)


def geometric(a: float, b: float, alpha: float) -> float:
    """The point a fraction ``alpha`` of the way from ``a`` to ``b`` on a log scale."""
    return math.exp((1 - alpha) * math.log(a) + alpha * math.log(b))


def spec_to_dict(spec: Any) -> dict:
    d = dataclasses.asdict(spec)
    d["family"] = spec.family
    return d


def spec_from_dict(d: dict) -> Any:
    d = dict(d)
    spec_cls = get_family(d.pop("family")).spec_cls
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
