"""Intermediate features by module path, taken with forward hooks; and which layers to pair.

:class:`FeatureTaps` records the outputs of named submodules of any ``nn.Module`` while a forward
pass runs, without editing the model. :func:`stage_pairs` and :func:`attention_pairs` decide which
student layer imitates which teacher layer: by the zoo protocol (``feature_info``,
``attention_modules``) when a model answers it, by a dry run on a sample input otherwise.
"""

from __future__ import annotations

import difflib
from typing import Any

import torch
from torch import nn

from edgedistill.models.base import FeatureInfo


def _module_paths(model: nn.Module) -> list[str]:
    return [name for name, _ in model.named_modules() if name]


def resolve_module(model: nn.Module, path: str) -> nn.Module:
    """``model.get_submodule(path)``, with a KeyError that names the closest valid paths."""
    try:
        return model.get_submodule(path)
    except AttributeError:
        pass
    names = _module_paths(model)
    close = difflib.get_close_matches(path, names, n=5, cutoff=0.4) or names[:5]
    raise KeyError(
        f"no module {path!r} in {type(model).__name__}; did you mean one of: {', '.join(close)}? "
        f"(print(dict(model.named_modules()).keys()) lists all {len(names)} paths)"
    )


class FeatureTaps:
    """Record the forward outputs of ``paths`` (module paths of ``model``) while inside ``with``.

    ``outputs[path]`` holds the output of the module's most recent call, kept in the graph so
    student-side losses backpropagate; run the teacher under ``torch.no_grad()``. Unknown paths
    fail at construction, before any forward pass is spent.
    """

    def __init__(self, model: nn.Module, paths: list[str]) -> None:
        self.model = model
        self.paths = list(dict.fromkeys(paths))
        self._modules = {path: resolve_module(model, path) for path in self.paths}
        self.outputs: dict[str, Any] = {}
        self._handles: list[torch.utils.hooks.RemovableHandle] = []

    def _hook(self, path: str):
        def record(_module: nn.Module, _inputs: Any, output: Any) -> None:
            self.outputs[path] = output

        return record

    def clear(self) -> None:
        self.outputs.clear()

    def __enter__(self) -> "FeatureTaps":
        if self._handles:
            raise RuntimeError("FeatureTaps is already active; leave the first `with` before entering again")
        self._handles = [m.register_forward_hook(self._hook(p)) for p, m in self._modules.items()]
        return self

    def __exit__(self, *exc: object) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []


def _relative_index(i: int, n_student: int, n_teacher: int) -> int:
    """Student layer i of S -> teacher layer round((i+1)*T/S)-1, rounding halves up."""
    return min(n_teacher - 1, max(0, int((i + 1) * n_teacher / n_student + 0.5) - 1))


@torch.no_grad()
def discover_stages(model: nn.Module, sample: torch.Tensor) -> list[FeatureInfo]:
    """Stages of an arbitrary model: the last module at each distinct spatial resolution.

    Candidates are convolutions and containers (``nn.Sequential``, blocks: any module with
    children), hooked during one eval-mode forward pass on ``sample``. A container that returns its
    last child's tensor unchanged keeps the child's (more specific) path. 1x1 maps after global
    pooling are dropped unless nothing else has a spatial layout.
    """
    order: list[tuple[int, int]] = []
    last: dict[tuple[int, int], tuple[str, torch.Tensor]] = {}

    def hook(path: str):
        def record(_m: nn.Module, _i: Any, out: Any) -> None:
            if not (isinstance(out, torch.Tensor) and out.dim() == 4):
                return
            res = (int(out.shape[2]), int(out.shape[3]))
            if res in last and last[res][1] is out:
                return  # same tensor as the child that produced it
            if res in order:
                order.remove(res)
            order.append(res)
            last[res] = (path, out)

        return record

    handles = [
        m.register_forward_hook(hook(name))
        for name, m in model.named_modules()
        if name and (isinstance(m, nn.Conv2d) or next(m.children(), None) is not None)
    ]
    was_training = model.training
    model.eval()
    try:
        model(sample)
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    if not order:
        raise ValueError(
            f"found no convolutional stages in {type(model).__name__}: no Conv2d or container returned "
            "an (N, C, H, W) tensor; give the model a `feature_info` list or name the layers to pair"
        )
    # `order` is by when each resolution's last module finished: forward order of the stages
    if len(order) > 1:
        order = [r for r in order if r != (1, 1)] or order
    in_h = int(sample.shape[-2])
    return [
        FeatureInfo(last[r][0], int(last[r][1].shape[1]), max(1, round(in_h / r[0])), "spatial") for r in order
    ]


def _stages(model: nn.Module, sample: torch.Tensor | None) -> list[FeatureInfo]:
    info = getattr(model, "feature_info", None)
    if info:
        return list(info)
    if sample is None:
        raise ValueError(
            f"{type(model).__name__} has no `feature_info`; pass `sample` (one input batch) so its "
            "stages can be found with a dry run"
        )
    return discover_stages(model, sample)


def stage_pairs(
    teacher: nn.Module, student: nn.Module, sample: torch.Tensor | None = None
) -> list[tuple[str, str]]:
    """(teacher path, student path) per student stage, matched by relative position.

    Student stage i of S pairs with teacher stage round((i+1)*T/S)-1; when that stage's reduction
    differs from the student's and some teacher stage has the same reduction, the nearest such
    stage is taken instead, so hints compare features at the same resolution where possible.
    """
    t_stages, s_stages = _stages(teacher, sample), _stages(student, sample)
    pairs = []
    for i, s in enumerate(s_stages):
        j = _relative_index(i, len(s_stages), len(t_stages))
        if t_stages[j].reduction != s.reduction:
            same = [k for k, t in enumerate(t_stages) if t.reduction == s.reduction]
            if same:
                j = min(same, key=lambda k: (abs(k - j), -k))
        pairs.append((t_stages[j].module, s.module))
    return pairs


def attention_pairs(teacher: nn.Module, student: nn.Module) -> list[tuple[str, str]]:
    """(teacher path, student path) of attention-probability modules, matched by relative depth.

    Empty when either model has no ``attention_modules`` (e.g. a CNN).
    """
    t_mods = list(getattr(teacher, "attention_modules", None) or [])
    s_mods = list(getattr(student, "attention_modules", None) or [])
    if not t_mods or not s_mods:
        return []
    return [(t_mods[_relative_index(i, len(s_mods), len(t_mods))], s) for i, s in enumerate(s_mods)]
