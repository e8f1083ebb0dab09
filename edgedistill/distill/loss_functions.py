"""The distillation losses as pure functions: tensors in, a scalar out; nothing here runs a model.

Each is registered as a weighted, configurable term of a build's loss in
:mod:`edgedistill.distill.loss_terms`; these are the arithmetic only, usable on their own.

References: Hinton et al. 2015 (KD), Romero et al. 2015 (FitNets hints), Zagoruyko & Komodakis 2017
(attention transfer), Park et al. 2019 (RKD), Huang et al. 2022 (DIST).
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

# ---------------------------------------------------------------------------------------------
# Logit losses


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """KL(softmax(t/T) || softmax(s/T)), batch mean, times T^2 so gradients keep their scale."""
    t = temperature
    return (
        F.kl_div(
            F.log_softmax(student_logits / t, dim=-1),
            F.log_softmax(teacher_logits.detach() / t, dim=-1),
            reduction="batchmean",
            log_target=True,
        )
        * t
        * t
    )


def _pearson_rows(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    a = a - a.mean(dim=1, keepdim=True)
    b = b - b.mean(dim=1, keepdim=True)
    return (a * b).sum(dim=1) / (a.norm(dim=1) * b.norm(dim=1) + eps)


def dist_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    beta: float = 1.0,
    gamma: float = 1.0,
    temperature: float = 1.0,
) -> torch.Tensor:
    """DIST: 1 - Pearson correlation of predictions, per sample (inter-class, weighted ``beta``)
    and per class across the batch (intra-class, weighted ``gamma``). Matches relations rather
    than exact probabilities, so it tolerates a large teacher-student gap better than KL."""
    t = temperature
    y_s = torch.softmax(student_logits / t, dim=1)
    y_t = torch.softmax(teacher_logits.detach() / t, dim=1)
    inter = 1.0 - _pearson_rows(y_s, y_t).mean()
    intra = 1.0 - _pearson_rows(y_s.t(), y_t.t()).mean()
    return t * t * (beta * inter + gamma * intra)


# ---------------------------------------------------------------------------------------------
# Resizing helpers: features are (N, C, H, W) maps or (N, L, D) token sequences whose L tokens lie
# on a square grid in row-major order (ViT patches); resizing goes through that grid.


def _resize2d(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    if x.shape[-2] >= size[0] and x.shape[-1] >= size[1]:
        return F.adaptive_avg_pool2d(x, size)
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def _grid_side(length: int) -> int | None:
    side = math.isqrt(length)
    return side if side * side == length else None


def _resize_last(x: torch.Tensor, length: int) -> torch.Tensor:
    """Resize the last dimension (token positions) to ``length`` through the square grid."""
    cur = x.shape[-1]
    if cur == length:
        return x
    lead = x.shape[:-1]
    flat = x.reshape(-1, 1, cur)
    g_in, g_out = _grid_side(cur), _grid_side(length)
    if g_in and g_out:
        out = _resize2d(flat.reshape(-1, 1, g_in, g_in), (g_out, g_out)).reshape(-1, 1, length)
    elif cur >= length:
        out = F.adaptive_avg_pool1d(flat, length)
    else:
        out = F.interpolate(flat, size=length, mode="linear", align_corners=False)
    return out.reshape(*lead, length)


def _tokens_to_map(x: torch.Tensor) -> torch.Tensor:
    n, length, d = x.shape
    side = _grid_side(length)
    if side is None:
        raise ValueError(f"cannot lay {length} tokens on a square grid to compare them with a spatial map")
    return x.transpose(1, 2).reshape(n, d, side, side)


# ---------------------------------------------------------------------------------------------
# Hints (FitNets)


class HintAdapter(nn.Module):
    """Maps student features onto the teacher's shape so they can be compared.

    Spatial teacher (N, C, H, W): 1x1 conv + BN when channels differ; adaptive average pooling to
    shrink or bilinear interpolation to grow the resolution. Token teacher (N, L, D): linear when
    widths differ; token counts are resized over the square patch grid. A student of the other
    kind is first laid out like the teacher (tokens on their grid, or a map flattened to tokens).
    With equal widths no parameters are created: the student must match the teacher directly.
    """

    def __init__(
        self, student_dim: int, teacher_dim: int, student_kind: str = "spatial", teacher_kind: str = "spatial"
    ) -> None:
        super().__init__()
        for kind in (student_kind, teacher_kind):
            if kind not in ("spatial", "tokens"):
                raise ValueError(f"feature kind must be 'spatial' or 'tokens', got {kind!r}")
        self.student_kind, self.teacher_kind = student_kind, teacher_kind
        self.proj: nn.Module
        if student_dim == teacher_dim:
            self.proj = nn.Identity()
        elif teacher_kind == "spatial":
            self.proj = nn.Sequential(
                nn.Conv2d(student_dim, teacher_dim, 1, bias=False), nn.BatchNorm2d(teacher_dim)
            )
        else:
            self.proj = nn.Linear(student_dim, teacher_dim)

    def forward(self, x: torch.Tensor, teacher_shape: Sequence[int]) -> torch.Tensor:
        if self.student_kind != self.teacher_kind:
            x = _tokens_to_map(x) if self.teacher_kind == "spatial" else x.flatten(2).transpose(1, 2)
        x = self.proj(x)
        if self.teacher_kind == "spatial":
            return _resize2d(x, (int(teacher_shape[-2]), int(teacher_shape[-1])))
        return _resize_last(x.transpose(1, 2), int(teacher_shape[-2])).transpose(1, 2)


def feature_kind(x: torch.Tensor) -> str:
    if x.dim() == 4:
        return "spatial"
    if x.dim() == 3:
        return "tokens"
    raise ValueError(f"expected (N, C, H, W) or (N, L, D) features, got shape {tuple(x.shape)}")


def feature_dim(x: torch.Tensor) -> int:
    return int(x.shape[1] if x.dim() == 4 else x.shape[-1])


def hint_loss(
    student_feat: torch.Tensor, teacher_feat: torch.Tensor, adapter: HintAdapter | None = None
) -> torch.Tensor:
    """MSE between the adapted student features and the teacher's."""
    teacher_feat = teacher_feat.detach()
    if adapter is not None:
        student_feat = adapter(student_feat, teacher_feat.shape)
    if student_feat.shape != teacher_feat.shape:
        raise ValueError(
            f"hint shapes differ: student {tuple(student_feat.shape)} vs teacher {tuple(teacher_feat.shape)}; "
            "pass a HintAdapter built for this pair"
        )
    return F.mse_loss(student_feat, teacher_feat)


# ---------------------------------------------------------------------------------------------
# Attention transfer (CNN spatial maps) and transformer attention probabilities


def _spatial_energy(feat: torch.Tensor, p: float) -> torch.Tensor:
    """Mean over channels of |A|^p: (N, H, W) for maps, (N, L) for tokens."""
    return feat.abs().pow(p).mean(dim=1 if feat.dim() == 4 else -1)


def attention_map(feat: torch.Tensor, p: float = 2) -> torch.Tensor:
    """Spatial attention of a feature map: mean over channels of |A|^p, flattened, unit L2 norm
    per sample. Token sequences (N, L, D) give one value per token."""
    return F.normalize(_spatial_energy(feat, p).flatten(1), dim=1)


def _energy_to(energy: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Resize a student energy map to the teacher's positions (grid for tokens)."""
    if energy.shape[1:] == like.shape[1:]:
        return energy
    if like.dim() == 3:  # teacher map (N, H, W)
        if energy.dim() == 2:
            side = _grid_side(energy.shape[1])
            if side is None:
                raise ValueError(f"cannot lay {energy.shape[1]} tokens on a square grid")
            energy = energy.reshape(-1, side, side)
        size = (int(like.shape[1]), int(like.shape[2]))
        return F.adaptive_avg_pool2d(energy.unsqueeze(1), size).squeeze(1)
    return _resize_last(energy.flatten(1), int(like.shape[1]))  # teacher tokens (N, L)


def attention_transfer_loss(
    s_feat: torch.Tensor | Sequence[torch.Tensor], t_feat: torch.Tensor | Sequence[torch.Tensor], p: float = 2
) -> torch.Tensor:
    """Mean over matched stages of the batch-mean ||a_s - a_t||_2 of normalised attention maps.

    Takes one feature pair or two equal-length sequences of matched stages. A student map at
    another resolution is brought to the teacher's with adaptive average pooling.
    """
    s_list = [s_feat] if isinstance(s_feat, torch.Tensor) else list(s_feat)
    t_list = [t_feat] if isinstance(t_feat, torch.Tensor) else list(t_feat)
    if len(s_list) != len(t_list) or not s_list:
        raise ValueError(f"need matched, non-empty stage lists; got {len(s_list)} student, {len(t_list)} teacher")
    losses = []
    for s, t in zip(s_list, t_list):
        t_energy = _spatial_energy(t.detach(), p)
        s_energy = _energy_to(_spatial_energy(s, p), t_energy)
        a_s = F.normalize(s_energy.flatten(1), dim=1)
        a_t = F.normalize(t_energy.flatten(1), dim=1)
        losses.append((a_s - a_t).norm(dim=1).mean())
    return torch.stack(losses).mean()


def _group_heads(probs: torch.Tensor, groups: int) -> torch.Tensor:
    n, h, lq, lk = probs.shape
    return probs.reshape(n, groups, h // groups, lq, lk).mean(dim=2)


def transformer_attention_loss(
    s_probs: torch.Tensor,
    t_probs: torch.Tensor,
    head_map: Sequence[int | Sequence[int]] | None = None,
    eps: float = 1e-8,
) -> torch.Tensor:
    """KL(teacher row || student row) of attention probabilities (N, heads, L, L), mean over rows.

    Heads: ``head_map[j]`` lists the teacher heads averaged for student head j. By default equal
    counts pair one to one; teacher heads divisible into the student's count are averaged in
    consecutive groups (and vice versa); otherwise every head of both is averaged into one.
    Token counts: the teacher's rows and columns are resized to the student's over the patch grid
    and renormalised, so the student's own distribution is compared unaltered.
    """
    t_probs = t_probs.detach()
    hs, ht = s_probs.shape[1], t_probs.shape[1]
    if head_map is not None:
        if len(head_map) != hs:
            raise ValueError(f"head_map has {len(head_map)} entries for {hs} student heads")
        idx = [[h] if isinstance(h, int) else list(h) for h in head_map]
        t_probs = torch.stack([t_probs[:, heads].mean(dim=1) for heads in idx], dim=1)
    elif hs != ht:
        if ht % hs == 0:
            t_probs = _group_heads(t_probs, hs)
        elif hs % ht == 0:
            s_probs = _group_heads(s_probs, ht)
        else:
            t_probs, s_probs = t_probs.mean(dim=1, keepdim=True), s_probs.mean(dim=1, keepdim=True)
    length = s_probs.shape[-1]
    if t_probs.shape[-1] != length:
        t_probs = _resize_last(_resize_last(t_probs, length).transpose(-2, -1), length).transpose(-2, -1)
        t_probs = t_probs / t_probs.sum(dim=-1, keepdim=True).clamp_min(eps)
    kl = (t_probs * (t_probs.clamp_min(eps).log() - s_probs.clamp_min(eps).log())).sum(dim=-1)
    return kl.mean()


# ---------------------------------------------------------------------------------------------
# Relational KD


def _pairwise_distances(e: torch.Tensor) -> torch.Tensor:
    sq = (e * e).sum(dim=1)
    d2 = (sq.unsqueeze(0) + sq.unsqueeze(1) - 2.0 * e @ e.t()).clamp_min(1e-12)
    off_diag = 1.0 - torch.eye(e.shape[0], device=e.device, dtype=e.dtype)
    return d2.sqrt() * off_diag


def _normalised_distances(e: torch.Tensor) -> torch.Tensor:
    d = _pairwise_distances(e)
    n = e.shape[0]
    return d / (d.sum() / max(1, n * (n - 1))).clamp_min(1e-12)


def _angles(e: torch.Tensor) -> torch.Tensor:
    diff = F.normalize(e.unsqueeze(0) - e.unsqueeze(1), p=2, dim=2)  # (N, N, D) unit vectors
    return (diff @ diff.transpose(1, 2)).flatten()


def rkd_loss(s_emb: torch.Tensor, t_emb: torch.Tensor, w_dist: float = 1.0, w_angle: float = 2.0) -> torch.Tensor:
    """Relational KD: distance-wise (pairwise distances over their mean) and angle-wise (cosine of
    every triplet's angle) potentials, each a smooth L1 between student and teacher. Embedding
    widths may differ; a batch of at least 2 (3 for angles) is needed to carry any signal."""
    s = s_emb.flatten(1)
    t = t_emb.detach().flatten(1)
    loss = s.new_zeros(())
    if w_dist:
        loss = loss + w_dist * F.smooth_l1_loss(_normalised_distances(s), _normalised_distances(t))
    if w_angle:
        loss = loss + w_angle * F.smooth_l1_loss(_angles(s), _angles(t))
    return loss
