"""Teacher-assistant distillation (Mirzadeh et al. 2020): bridge a large teacher-student gap.

A teacher far larger than its student teaches it worse than a mid-sized one would. The chain
teacher -> assistant(s) -> student keeps each hop's parameter ratio under a threshold:
:func:`plan_assistants` picks intermediate specs of the same family, spaced geometrically in
parameter count, and :func:`distill_chain` trains each one from the previous and the student from
the last, logging every hop.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from torch import nn

from edgedistill.data.dataset import ImageDataset
from edgedistill.distill.losses import LossWeights
from edgedistill.distill.trainer import TrainConfig, TrainResult, train
from edgedistill.models.base import count_parameters, create_model, families, get_family

log = logging.getLogger(__name__)

# ---------------------------------------------------------------------------------------------
# Planning


def spec_parameters(spec: Any) -> int:
    return count_parameters(create_model(spec))


def plan_assistants(teacher_spec: Any, student_spec: Any, ratio_threshold: float = 10.0) -> list[Any]:
    """Intermediate specs, largest first, so that every hop teacher -> a1 -> ... -> student has a
    parameter ratio <= ``ratio_threshold``; empty when the direct hop already does.

    Assistants are of the student's family, between student and teacher in every dimension (the
    family's :attr:`~edgedistill.models.base.Family.between`), spaced geometrically in parameter count.
    """
    if ratio_threshold <= 1:
        raise ValueError(f"ratio_threshold must be > 1, got {ratio_threshold}")
    family = getattr(student_spec, "family", None)
    interpolating = sorted(name for name in families() if get_family(name).between is not None)
    if getattr(teacher_spec, "family", None) != family or family not in interpolating:
        raise ValueError(
            f"teacher ({getattr(teacher_spec, 'family', type(teacher_spec).__name__)}) and student "
            f"({family}) must be of one family among {interpolating} to plan assistants"
        )
    between = get_family(family).between
    p_t, p_s = spec_parameters(teacher_spec), spec_parameters(student_spec)
    if p_t / p_s <= ratio_threshold:
        return []
    # Every spec the interpolation can reach, with its size (a fine grid of alpha).
    candidates: dict[Any, int] = {}
    for i in range(1, 400):
        spec = between(student_spec, teacher_spec, i / 400)
        if spec not in candidates and spec not in (student_spec, teacher_spec):
            p = spec_parameters(spec)
            if p_s < p < p_t:
                candidates[spec] = p
    hops = math.ceil(math.log(p_t / p_s) / math.log(ratio_threshold))
    for k in range(hops, hops + 8):
        chain, used = [], set()
        for j in range(k - 1, 0, -1):  # largest assistant first
            target = math.log(p_s) + j / k * math.log(p_t / p_s)
            free = [c for c in candidates if c not in used]
            if not free:
                break
            best = min(free, key=lambda c: abs(math.log(candidates[c]) - target))
            used.add(best)
            chain.append(best)
        sizes = [p_t] + [candidates[c] for c in chain] + [p_s]
        if all(a > b and a / b <= ratio_threshold for a, b in zip(sizes, sizes[1:])):
            return chain
    raise ValueError(
        f"cannot bridge {p_t:,} -> {p_s:,} parameters with hops of at most {ratio_threshold}x using "
        f"{family} specs between {teacher_spec} and {student_spec}; raise ratio_threshold"
    )


# ---------------------------------------------------------------------------------------------
# Training the chain


@dataclass
class Hop:
    teacher: str
    student: str
    teacher_params: int
    student_params: int
    result: TrainResult

    @property
    def ratio(self) -> float:
        return self.teacher_params / self.student_params


@dataclass
class ChainResult:
    assistants: list[Any] = field(default_factory=list)  # specs, largest first
    hops: list[Hop] = field(default_factory=list)  # teacher -> a1, ..., a_k -> student

    @property
    def student_result(self) -> TrainResult:
        return self.hops[-1].result

    @property
    def seconds(self) -> float:
        return sum(h.result.seconds for h in self.hops)

    def describe(self) -> str:
        names = [self.hops[0].teacher] + [h.student for h in self.hops]
        return " -> ".join(names)


def _describe(model: nn.Module) -> str:
    spec = getattr(model, "spec", None)
    name = spec.describe() if spec is not None and hasattr(spec, "describe") else type(model).__name__
    return f"{name} ({count_parameters(model):,} params)"


def distill_chain(
    teacher: nn.Module,
    student: nn.Module,
    data: ImageDataset,
    cfg: TrainConfig,
    weights: LossWeights,
    *,
    ratio_threshold: float = 10.0,
    assistant_cfg: TrainConfig | None = None,
    assistants: list[Any] | None = None,
    label: str = "student",
    checkpoint_dir: Path | None = None,
    progress: Callable[[str, int, int, str], None] | None = None,
    student_size: tuple[int, int] | None = None,
) -> ChainResult:
    """Distil ``teacher`` -> assistant(s) -> ``student`` (trained in place) with ``weights``.

    Both models must be zoo models (their ``spec`` plans the assistants) unless ``assistants``
    lists the specs. Assistants train with ``assistant_cfg`` (default ``cfg``); each hop checkpoints
    under ``checkpoint_dir/hop{i}``. With no assistant needed this is a plain distillation.
    ``student_size``: the student's resolution, when lower than the data's; the assistants train at
    it too, so only the first hop's teacher sees the full-size images.
    """
    if assistants is None:
        t_spec, s_spec = getattr(teacher, "spec", None), getattr(student, "spec", None)
        if t_spec is None or s_spec is None:
            raise ValueError("teacher and student need a `spec` (zoo models) to plan assistants; pass `assistants=`")
        assistants = plan_assistants(t_spec, s_spec, ratio_threshold)
    result = ChainResult(assistants=list(assistants))
    current = teacher
    stages = [(create_model(spec), assistant_cfg or cfg, f"{label}/assistant{i + 1}")
              for i, spec in enumerate(assistants)]
    stages.append((student, cfg, label))
    for i, (model, hop_cfg, hop_label) in enumerate(stages):
        log.info("distillation hop %d/%d: %s -> %s", i + 1, len(stages), _describe(current), _describe(model))
        hop_dir = checkpoint_dir / f"hop{i}" if checkpoint_dir is not None else None
        r = train(model, data, hop_cfg, teacher=current, weights=weights, label=hop_label,
                  checkpoint_dir=hop_dir, progress=progress, student_size=student_size,
                  teacher_size=student_size if i > 0 else None)
        result.hops.append(Hop(_describe(current), _describe(model), count_parameters(current),
                               count_parameters(model), r))
        log.info("hop %d done: %s best val acc %.4f (epoch %d)", i + 1, hop_label, r.best_val_acc, r.best_epoch)
        current = model
    log.info("distilled through %d assistant(s): %s", len(assistants), result.describe())
    return result
