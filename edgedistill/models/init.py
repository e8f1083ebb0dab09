"""Initialise a narrower, shallower student of the teacher's family from the teacher's weights.

DistilBERT-style: the student's blocks are evenly spaced blocks of the teacher (first and last
kept, ``round(linspace(0, T-1, S))``), and each narrower layer keeps the teacher's most important
channels, sliced consistently through every layer that reads them. Each family says how in its
:attr:`~edgedistill.models.base.Family.init_from_teacher` hook (its own file's docstring says
what it ranks by); this module holds what they share: the :class:`Copier` that slices teacher
tensors into the student's state dict, the ranking helpers, the stage walk of the staged CNNs
(:func:`init_staged`) and the dispatch (:func:`init_student_from_teacher`).

Kept channels stay in the teacher's order. Batch-norm running statistics no longer match once
inputs were dropped, so pass ``sample`` (a few hundred training inputs) to re-estimate them.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from edgedistill.models.base import families, get_family


def evenly_spaced(n_teacher: int, n_student: int) -> list[int]:
    """Indices of ``n_student`` of ``n_teacher`` blocks, first and last included."""
    if n_student > n_teacher:
        raise ValueError(f"student has {n_student} blocks but the teacher only {n_teacher}")
    return [int(i) for i in np.linspace(0, n_teacher - 1, n_student).round()]


def top_k(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of the ``k`` largest scores, in ascending index order."""
    if k > scores.numel():
        raise ValueError(f"cannot keep {k} of {scores.numel()} channels")
    return torch.sort(torch.topk(scores, k).indices).values


def l1_rows(w: torch.Tensor) -> torch.Tensor:
    """L1 norm of each output filter (dim 0) of a conv or linear weight."""
    return w.detach().abs().reshape(w.shape[0], -1).sum(dim=1)


class Copier:
    """The student's state dict being filled from the teacher's: ``take`` copies one tensor sliced
    along each dimension by the given indices (None keeps a dimension whole), checking it fits."""

    def __init__(self, teacher: nn.Module, student: nn.Module) -> None:
        self.src = teacher.state_dict()
        self.dst = student.state_dict()
        self.copied: set[str] = set()

    def take(self, dst_key: str, src_key: str, *index: torch.Tensor | None) -> None:
        t = self.src[src_key]
        for dim, idx in enumerate(index):
            if idx is not None:
                t = t.index_select(dim, idx)
        if tuple(t.shape) != tuple(self.dst[dst_key].shape):
            raise ValueError(f"{src_key} sliced to {tuple(t.shape)} does not fit {dst_key} {tuple(self.dst[dst_key].shape)}")
        self.dst[dst_key] = t.clone()
        self.copied.add(dst_key)

    def conv_bn(self, dst: str, src: str, out_idx: torch.Tensor, in_idx: torch.Tensor | None) -> None:
        """A zoo ``conv_bn`` (Sequential of conv, bn): conv weight [out, in] and every BN tensor [out]."""
        self.take(f"{dst}.0.weight", f"{src}.0.weight", out_idx, in_idx)
        for name in ("weight", "bias", "running_mean", "running_var"):
            self.take(f"{dst}.1.{name}", f"{src}.1.{name}", out_idx)
        self.dst[f"{dst}.1.num_batches_tracked"] = self.src[f"{src}.1.num_batches_tracked"].clone()
        self.copied.add(f"{dst}.1.num_batches_tracked")


def stage_channels(w: dict, stage: int, t_width: int, s_width: int, blocks: list[int],
                   writers: tuple[str, ...], with_stem: bool) -> torch.Tensor:
    """The ``s_width`` channels of a stage's residual space to keep: ranked by the summed L1 norm of
    the output filters of every conv writing into it (the stem for stage 0 when ``with_stem``, and
    each kept block's ``writers`` convs that exist)."""
    score = torch.zeros(t_width)
    if with_stem:
        score += l1_rows(w["stem.0.0.weight"])
    for j in blocks:
        for name in writers:
            key = f"stages.{stage}.{j}.{name}.0.weight"
            if key in w:
                score += l1_rows(w[key])
    return top_k(score, s_width)


def _layout(spec) -> tuple[bool, int]:
    """(whether the stem writes stage 0's residual space, the head conv's width or 0)."""
    stem_width = getattr(spec, "stem_width", 0)
    return (not stem_width or stem_width == spec.widths[0]), getattr(spec, "head_width", 0)


def init_staged(teacher: nn.Module, student: nn.Module, cp: Copier, writers: tuple[str, ...], criterion: str,
                copy_block: Callable[[str, str, torch.Tensor, torch.Tensor], str | None]) -> dict:
    """The stage walk the CNN families share: rank each stage's residual channels once (from the
    kept blocks' ``writers`` convs, and the stem's filters when the stem writes stage 0's space;
    a stem of its own width is ranked by itself), copy the stem, let ``copy_block(t, s, in_idx,
    res_idx)`` copy one kept block (returning a note when something could not be copied), copy the
    head conv when there is one (its filters ranked by L1 norm), then the classifier's columns of
    the channels kept last."""
    ts, ss = teacher.spec, student.spec
    if len(ts.widths) != len(ss.widths):
        raise ValueError(f"teacher has {len(ts.widths)} stages, student {len(ss.widths)}: no stage mapping")
    (t_shared, t_head), (s_shared, s_head) = _layout(ts), _layout(ss)
    if t_shared != s_shared or bool(t_head) != bool(s_head):
        raise ValueError("teacher and student differ in layout (a stem of its own width, a head conv): "
                         "no channel mapping")
    report: dict[str, Any] = {"blocks": {}, "residual_channels": {}, "criterion": criterion}
    prev_idx = None  # kept channels of the previous stage's residual space (the stem's output for stage 0)
    if not s_shared:
        prev_idx = top_k(l1_rows(cp.src["stem.0.0.weight"]), cp.dst["stem.0.0.weight"].shape[0])
        cp.conv_bn("stem.0", "stem.0", prev_idx, None)
    for i, (tw, sw) in enumerate(zip(ts.widths, ss.widths)):
        blocks = evenly_spaced(ts.depths[i], ss.depths[i])
        report["blocks"][f"stages.{i}"] = blocks
        res_idx = stage_channels(cp.src, i, tw, sw, blocks, writers, with_stem=i == 0 and s_shared)
        report["residual_channels"][f"stages.{i}"] = res_idx.tolist()
        if i == 0 and s_shared:
            cp.conv_bn("stem.0", "stem.0", res_idx, None)
            prev_idx = res_idx
        for sj, tj in enumerate(blocks):
            note = copy_block(f"stages.{i}.{tj}", f"stages.{i}.{sj}", prev_idx if sj == 0 else res_idx, res_idx)
            if note:
                report.setdefault("not_copied", []).append(note)
        prev_idx = res_idx
    if s_head:
        head_idx = top_k(l1_rows(cp.src["head_conv.0.0.weight"]), s_head)
        cp.conv_bn("head_conv.0", "head_conv.0", head_idx, prev_idx)
        prev_idx = head_idx
    if ts.num_classes == ss.num_classes:
        cp.take("head.weight", "head.weight", None, prev_idx)
        cp.take("head.bias", "head.bias")
    return report


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, sample: torch.Tensor, batch_size: int = 128) -> int:
    """Re-estimate every BatchNorm's running statistics on ``sample`` (cumulative average)."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return 0
    saved = [(m, m.momentum) for m in bns]
    was_training = model.training
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
    model.train()
    try:
        for i in range(0, len(sample), batch_size):
            model(sample[i:i + batch_size])
    finally:
        for m, mom in saved:
            m.momentum = mom
        model.train(was_training)
    return len(bns)


def init_student_from_teacher(teacher: nn.Module, student: nn.Module, sample: torch.Tensor | None = None) -> dict:
    """Copy the teacher's most important weights into ``student`` (in place) and say what was done.

    Both must be zoo models of the same family (``spec.family``); otherwise nothing is copied and
    the report says why. ``sample``: inputs to re-estimate batch-norm statistics after slicing.
    Returns {"initialised": bool, "family", "copied_tensors", "copied_fraction" (of the student's
    parameters), "blocks", ..., "reason" when not initialised}.
    """
    ts, ss = getattr(teacher, "spec", None), getattr(student, "spec", None)
    if ts is None or ss is None or getattr(ts, "family", None) != getattr(ss, "family", None):
        return {"initialised": False, "reason": "teacher and student are not zoo models of the same family: "
                "the student keeps its random initialisation"}
    cp = Copier(teacher, student)
    init = get_family(ts.family).init_from_teacher if ts.family in families() else None
    if init is None:
        return {"initialised": False, "reason": f"no initialisation rule for family {ts.family!r}"}
    try:
        report = init(teacher, student, cp)
    except ValueError as err:
        return {"initialised": False, "family": ts.family, "reason": str(err)}
    student.load_state_dict(cp.dst)
    total = sum(p.numel() for p in student.parameters())
    named = dict(student.named_parameters())
    copied = sum(named[k].numel() for k in cp.copied if k in named)
    report.update({"initialised": True, "family": ts.family, "copied_tensors": len(cp.copied),
                   "copied_fraction": copied / total if total else 0.0})
    if sample is not None:
        report["batchnorm_recalibrated"] = recalibrate_batchnorm(student, sample)
    return report
