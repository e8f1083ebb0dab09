"""The teacher's side of distillation: its logits and tapped features, computed once per training
image and view under inference mode (bf16 autocast on GPU), so that every epoch after the first
costs little more than training from labels."""

from __future__ import annotations

import torch
from torch import nn

from edgedistill.distill.batches import shift_views, to_device
from edgedistill.models.taps import FeatureTaps


def teacher_outputs(teacher: nn.Module, paths: list[str], x: torch.Tensor, use_bf16: bool):
    with torch.inference_mode(), torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=use_bf16):
        with FeatureTaps(teacher, paths) as taps:
            logits = teacher(x)
        feats = {p: taps.outputs[p] for p in paths}
    # Inference tensors may not be saved for backward (an MSE hint saves its target), so leave
    # inference mode with ordinary fp32 copies.
    return logits.float().clone(), {p: f.float().clone() for p, f in feats.items()}


class TeacherCache:
    """Teacher logits and tapped features for every training image, per view: ``views`` is 1
    (no augmentation) or 9 (every shift)."""

    def __init__(self, teacher: nn.Module, paths: list[str], x: torch.Tensor, views: int, fill: float,
                 device: torch.device, use_bf16: bool, chunk: int = 512) -> None:
        logits, feats = [], {p: [] for p in paths}
        for view in range(views):
            for i in range(0, len(x), chunk):
                xb = x[i : i + chunk]
                if views > 1:
                    xb = shift_views(xb, torch.full((len(xb),), view, dtype=torch.long), fill)
                out_l, out_f = teacher_outputs(teacher, paths, to_device(xb, device), use_bf16)
                logits.append(out_l)
                for p in paths:
                    feats[p].append(out_f[p])
        n = len(x)
        self.views = views
        # (views * N, ...): row view * N + i holds image i seen in that view
        self.logits = torch.cat(logits)
        self.feats = {p: torch.cat(f) for p, f in feats.items()}
        self.n = n

    def lookup(self, idx: torch.Tensor, views: torch.Tensor | None):
        rows = idx if views is None else views * self.n + idx
        rows = rows.to(self.logits.device)
        return self.logits[rows], {p: f[rows] for p, f in self.feats.items()}


def teacher_cache_mb(teacher: nn.Module, paths: list[str], sample: torch.Tensor, n: int, views: int) -> float:
    logits, feats = teacher_outputs(teacher, paths, sample, use_bf16=False)
    per_sample = (logits[0].numel() + sum(f[0].numel() for f in feats.values())) * 4
    return per_sample * n * views / 2**20
