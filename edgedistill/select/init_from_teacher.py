"""Initialise a narrower, shallower student of the teacher's family from the teacher's weights.

DistilBERT-style: the student's blocks are evenly spaced blocks of the teacher (first and last
kept, ``round(linspace(0, T-1, S))``), and each narrower layer keeps the teacher's most important
channels, sliced consistently through every layer that reads them:

- resnet: a stage's residual channels are shared by every block's output and its shortcut, so they
  are ranked once per stage by the summed L1 norm of the output filters of every conv writing into
  them (the stem for stage 0, each kept block's second conv and projection shortcut); a block's
  inner channels are ranked by the L1 norm of its first conv's output filters. BN parameters, the
  next conv's input channels, the shortcut and the head's inputs are sliced with the same indices.
- mobilenet: as resnet, a stage's residual channels are ranked once per stage (stem and each kept
  block's projection filters); a block's expanded channels by the L1 norm of its expansion conv's
  filters, and its depthwise filters follow them one for one.
- vit: heads are ranked per layer by the L1 norm of their q, k, v rows and their proj columns;
  the residual-stream (embedding) dims by the summed L1 norm of everything writing into them
  (patch embedding filters, every kept block's proj and fc2 rows); MLP hidden units by the L1 norm
  of their fc1 row plus fc2 column. Layer norms, position embeddings and the head follow.

Kept channels stay in the teacher's order. Batch-norm running statistics no longer match once
inputs were dropped, so pass ``sample`` (a few hundred training inputs) to re-estimate them.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch
from torch import nn


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


def _l1_rows(w: torch.Tensor) -> torch.Tensor:
    """L1 norm of each output filter (dim 0) of a conv or linear weight."""
    return w.detach().abs().reshape(w.shape[0], -1).sum(dim=1)


class _Copier:
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


def _stage_channels(w: dict, stage: int, t_width: int, s_width: int, blocks: list[int],
                    writers: tuple[str, ...]) -> torch.Tensor:
    """The ``s_width`` channels of a stage's residual space to keep: ranked by the summed L1 norm of
    the output filters of every conv writing into it (the stem for stage 0, and each kept block's
    ``writers`` convs that exist)."""
    score = torch.zeros(t_width)
    if stage == 0:
        score += _l1_rows(w["stem.0.0.weight"])
    for j in blocks:
        for name in writers:
            key = f"stages.{stage}.{j}.{name}.0.weight"
            if key in w:
                score += _l1_rows(w[key])
    return top_k(score, s_width)


def _init_staged(teacher: nn.Module, student: nn.Module, cp: _Copier, writers: tuple[str, ...], criterion: str,
                 copy_block: Callable[[str, str, torch.Tensor, torch.Tensor], str | None]) -> dict:
    """The stage walk the CNN families share: rank each stage's residual channels once (from the
    stem and the kept blocks' ``writers`` convs), copy the stem, let ``copy_block(t, s, in_idx,
    res_idx)`` copy one kept block (returning a note when something could not be copied), then
    copy the head's columns of the last stage's kept channels."""
    ts, ss = teacher.spec, student.spec
    if len(ts.widths) != len(ss.widths):
        raise ValueError(f"teacher has {len(ts.widths)} stages, student {len(ss.widths)}: no stage mapping")
    report: dict[str, Any] = {"blocks": {}, "residual_channels": {}, "criterion": criterion}
    prev_idx = None  # kept channels of the previous stage's residual space (stem output for stage 0)
    for i, (tw, sw) in enumerate(zip(ts.widths, ss.widths)):
        blocks = evenly_spaced(ts.depths[i], ss.depths[i])
        report["blocks"][f"stages.{i}"] = blocks
        res_idx = _stage_channels(cp.src, i, tw, sw, blocks, writers)
        report["residual_channels"][f"stages.{i}"] = res_idx.tolist()
        if i == 0:
            cp.conv_bn("stem.0", "stem.0", res_idx, None)
            prev_idx = res_idx
        for sj, tj in enumerate(blocks):
            note = copy_block(f"stages.{i}.{tj}", f"stages.{i}.{sj}", prev_idx if sj == 0 else res_idx, res_idx)
            if note:
                report.setdefault("not_copied", []).append(note)
        prev_idx = res_idx
    if ts.num_classes == ss.num_classes:
        cp.take("head.weight", "head.weight", None, prev_idx)
        cp.take("head.bias", "head.bias")
    return report


def _init_resnet(teacher: nn.Module, student: nn.Module, cp: _Copier) -> dict:
    def copy_block(t: str, s: str, in_idx: torch.Tensor, res_idx: torch.Tensor) -> str | None:
        inner = top_k(_l1_rows(cp.src[f"{t}.conv1.0.weight"]), len(res_idx))
        cp.conv_bn(f"{s}.conv1", f"{t}.conv1", inner, in_idx)
        cp.conv_bn(f"{s}.conv2", f"{t}.conv2", res_idx, inner)
        has_s, has_t = f"{s}.shortcut.0.weight" in cp.dst, f"{t}.shortcut.0.weight" in cp.src
        if has_s and has_t:
            cp.conv_bn(f"{s}.shortcut", f"{t}.shortcut", res_idx, in_idx)
        elif has_s:
            return f"{s}.shortcut (teacher block {t.rsplit('.', 1)[1]} has an identity shortcut)"
        return None

    return _init_staged(teacher, student, cp, ("conv2", "shortcut"), (
        "stage residual channels: summed L1 norm of output filters of the stem / second convs / shortcuts; "
        "block inner channels: L1 norm of the first conv's output filters"), copy_block)


def _init_mobilenet(teacher: nn.Module, student: nn.Module, cp: _Copier) -> dict:
    ts, ss = teacher.spec, student.spec
    if (ts.expansion == 1) != (ss.expansion == 1):
        raise ValueError(f"teacher expansion {ts.expansion} and student expansion {ss.expansion}: one of them "
                         "has no expansion conv to copy")

    def copy_block(t: str, s: str, in_idx: torch.Tensor, res_idx: torch.Tensor) -> None:
        if ss.expansion == 1:
            hidden = in_idx  # the depthwise conv reads the block's input channels
        else:
            hidden = top_k(_l1_rows(cp.src[f"{t}.expand.0.weight"]), cp.dst[f"{s}.expand.0.weight"].shape[0])
            cp.conv_bn(f"{s}.expand", f"{t}.expand", hidden, in_idx)
        cp.conv_bn(f"{s}.dw", f"{t}.dw", hidden, None)
        cp.conv_bn(f"{s}.project", f"{t}.project", res_idx, hidden)

    return _init_staged(teacher, student, cp, ("project",), (
        "stage residual channels: summed L1 norm of output filters of the stem / projection convs; "
        "expanded channels: L1 norm of the expansion conv's output filters (depthwise filters follow)"), copy_block)


def _init_vit(teacher: nn.Module, student: nn.Module, cp: _Copier) -> dict:
    ts, ss = teacher.spec, student.spec
    w = cp.src
    blocks = evenly_spaced(ts.depth, ss.depth)
    t_hd, s_hd = ts.dim // ts.heads, ss.dim // ss.heads
    if s_hd > t_hd or ss.heads > ts.heads:
        raise ValueError(f"student heads ({ss.heads} x {s_hd}) are not a subset of the teacher's ({ts.heads} x {t_hd})")
    report: dict[str, Any] = {"blocks": blocks, "heads": {}, "criterion": (
        "heads: L1 norm of their q/k/v rows + proj columns; embedding dims: summed L1 norm of patch-embedding "
        "filters and kept blocks' proj / fc2 rows; MLP units: L1 of fc1 row + fc2 column")}
    score = _l1_rows(w["patch_embed.weight"]).clone()
    for j in blocks:
        score += _l1_rows(w[f"blocks.{j}.attn.proj.weight"]) + _l1_rows(w[f"blocks.{j}.mlp.fc2.weight"])
    emb = top_k(score, ss.dim)
    report["embedding_dims"] = emb.tolist()
    same_grid = (ts.patch_size, ts.image_size, ts.in_channels) == (ss.patch_size, ss.image_size, ss.in_channels)
    if same_grid:
        cp.take("patch_embed.weight", "patch_embed.weight", emb)
        cp.take("patch_embed.bias", "patch_embed.bias", emb)
        cp.take("pos_embed", "pos_embed", None, None, emb)
    else:
        report.setdefault("not_copied", []).append("patch_embed, pos_embed (different patch grid or channels)")
    for sj, tj in enumerate(blocks):
        t, s = f"blocks.{tj}", f"blocks.{sj}"
        for norm in ("norm1", "norm2"):
            cp.take(f"{s}.{norm}.weight", f"{t}.{norm}.weight", emb)
            cp.take(f"{s}.{norm}.bias", f"{t}.{norm}.bias", emb)
        q, k, v, o = (w[f"{t}.attn.{n}.weight"].detach().abs() for n in ("q", "k", "v", "proj"))
        per_channel = q.sum(1) + k.sum(1) + v.sum(1) + o.sum(0)  # one score per attention channel
        head_scores = per_channel.reshape(ts.heads, t_hd).sum(1)
        heads = top_k(head_scores, ss.heads)
        report["heads"][s] = heads.tolist()
        chans = []
        for h in heads.tolist():
            within = per_channel[h * t_hd:(h + 1) * t_hd]
            chans.append(h * t_hd + top_k(within, s_hd))
        att = torch.cat(chans)
        for n in ("q", "k", "v"):
            cp.take(f"{s}.attn.{n}.weight", f"{t}.attn.{n}.weight", att, emb)
            cp.take(f"{s}.attn.{n}.bias", f"{t}.attn.{n}.bias", att)
        cp.take(f"{s}.attn.proj.weight", f"{t}.attn.proj.weight", emb, att)
        cp.take(f"{s}.attn.proj.bias", f"{t}.attn.proj.bias", emb)
        s_hidden = cp.dst[f"{s}.mlp.fc1.weight"].shape[0]
        hid = top_k(_l1_rows(w[f"{t}.mlp.fc1.weight"]) + w[f"{t}.mlp.fc2.weight"].abs().sum(0), s_hidden)
        cp.take(f"{s}.mlp.fc1.weight", f"{t}.mlp.fc1.weight", hid, emb)
        cp.take(f"{s}.mlp.fc1.bias", f"{t}.mlp.fc1.bias", hid)
        cp.take(f"{s}.mlp.fc2.weight", f"{t}.mlp.fc2.weight", emb, hid)
        cp.take(f"{s}.mlp.fc2.bias", f"{t}.mlp.fc2.bias", emb)
    cp.take("norm.weight", "norm.weight", emb)
    cp.take("norm.bias", "norm.bias", emb)
    if ts.num_classes == ss.num_classes:
        cp.take("head.weight", "head.weight", None, emb)
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
    cp = _Copier(teacher, student)
    try:
        if ts.family == "resnet":
            report = _init_resnet(teacher, student, cp)
        elif ts.family == "mobilenet":
            report = _init_mobilenet(teacher, student, cp)
        elif ts.family == "vit":
            report = _init_vit(teacher, student, cp)
        else:
            return {"initialised": False, "reason": f"no initialisation rule for family {ts.family!r}"}
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
