"""Small vision-transformer family, scalable in depth (blocks) and width (embedding dim, heads).

Sized for small images: a strided-conv patch embedding (8x8 digits with patch 2 -> 16 tokens),
learned position embeddings, pre-norm blocks, and mean-pooling over tokens instead of a cls token,
so the exported graph is a plain chain of matmuls with static shapes.

Attention is written out (q, k, v projections, scaled dot product, softmax) rather than calling a
fused kernel, because distillation needs the probabilities: each attention module passes them
through an ``nn.Identity`` named ``attn_probs``, so a forward hook on
``blocks.{i}.attn.attn_probs`` sees the (N, heads, L, L) tensor without touching ``forward``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from edgedistill.models.base import (
    WIDTH_MULTIPLIERS,
    Family,
    FeatureInfo,
    depth_options,
    geometric,
    register_family,
    round_width,
)
from edgedistill.models.init import Copier, evenly_spaced, l1_rows, top_k


@dataclass(frozen=True)
class ViTSpec:
    in_channels: int
    num_classes: int
    image_size: int
    patch_size: int = 2
    dim: int = 64
    depth: int = 4
    heads: int = 4
    mlp_ratio: float = 2.0
    family: str = "vit"

    def __post_init__(self) -> None:
        if min(self.in_channels, self.num_classes, self.image_size, self.patch_size) < 1:
            raise ValueError(f"in_channels, num_classes, image_size and patch_size must be positive: {self}")
        if self.image_size % self.patch_size:
            raise ValueError(
                f"image_size {self.image_size} is not divisible by patch_size {self.patch_size}; "
                "pick a patch size that tiles the image"
            )
        if min(self.dim, self.depth, self.heads) < 1 or self.mlp_ratio <= 0:
            raise ValueError(f"dim, depth, heads and mlp_ratio must be positive: {self}")
        if self.dim % self.heads:
            raise ValueError(f"dim {self.dim} is not divisible by heads {self.heads}")

    @property
    def num_tokens(self) -> int:
        return (self.image_size // self.patch_size) ** 2

    def describe(self) -> str:
        return f"vit d{self.dim} L{self.depth} h{self.heads} p{self.patch_size}"


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.head_dim = dim // heads
        self.scale = self.head_dim**-0.5
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim)
        self.v = nn.Linear(dim, dim)
        self.attn_probs = nn.Identity()  # hook point for attention distillation
        self.proj = nn.Linear(dim, dim)

    def _split_heads(self, x: torch.Tensor) -> torch.Tensor:
        n, length, _ = x.shape
        return x.reshape(n, length, self.heads, self.head_dim).transpose(1, 2)  # (N, heads, L, hd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, length, dim = x.shape
        q, k, v = self._split_heads(self.q(x)), self._split_heads(self.k(x)), self._split_heads(self.v(x))
        probs = self.attn_probs(torch.softmax((q @ k.transpose(-2, -1)) * self.scale, dim=-1))
        out = (probs @ v).transpose(1, 2).reshape(n, length, dim)
        return self.proj(out)


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, max(1, int(round(dim * mlp_ratio))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class ViT(nn.Module):
    def __init__(self, spec: ViTSpec) -> None:
        super().__init__()
        self.spec = spec
        self.patch_embed = nn.Conv2d(spec.in_channels, spec.dim, spec.patch_size, stride=spec.patch_size)
        self.pos_embed = nn.Parameter(torch.zeros(1, spec.num_tokens, spec.dim))
        self.blocks = nn.Sequential(*[Block(spec.dim, spec.heads, spec.mlp_ratio) for _ in range(spec.depth)])
        self.norm = nn.LayerNorm(spec.dim)
        self.pool = nn.Identity()  # output is the pooled embedding (relational distillation taps it)
        self.head = nn.Linear(spec.dim, spec.num_classes)
        self.feature_info: list[FeatureInfo] = [
            FeatureInfo(f"blocks.{i}", spec.dim, spec.patch_size, "tokens") for i in range(spec.depth)
        ]
        self.attention_modules: list[str] = [f"blocks.{i}.attn.attn_probs" for i in range(spec.depth)]
        self.embedding_module = "pool"
        self._init_weights()

    def _init_weights(self) -> None:
        # Position embeddings at unit scale, like the patch-embedding tokens they are added to, and
        # PyTorch's default Linear init. The usual trunc_normal(0.02) for both leaves the tokens with
        # almost no position signal, and a mean-pooled model then learns like a bag of patches: a
        # d64 L4 ViT reached 46% on 8x8 digits in 20 epochs that way, 96% with this init in 40.
        nn.init.trunc_normal_(self.pos_embed, std=1.0, a=-2.0, b=2.0)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x).flatten(2).transpose(1, 2)  # (N, L, dim), tokens in row-major order
        return self.norm(self.blocks(x + self.pos_embed))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.pool(x.mean(dim=1))
        return x if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


# --- what the family knows beyond building ---------------------------------------------------------


def shrink_vit(spec: ViTSpec) -> list[ViTSpec]:
    """Fewer layers and a narrower embedding with proportionally fewer heads of the teacher's head
    width, the teacher's own shape included, deepest and widest first."""
    specs = []
    head_dim = spec.dim // spec.heads
    for depth in depth_options(spec.depth):
        for m in WIDTH_MULTIPLIERS:
            heads = max(1, round(spec.heads * m))
            # heads in proportion, each as wide as the teacher's; a single head may be narrower
            dim = heads * head_dim if heads > 1 else min(head_dim, round_width(spec.dim * m))
            specs.append(dataclasses.replace(spec, dim=dim, depth=depth, heads=heads))
    return specs


def between_vit(s: ViTSpec, t: ViTSpec, alpha: float) -> ViTSpec:
    """A spec ``alpha`` of the way from student ``s`` to teacher ``t`` in heads, width, depth and MLP ratio."""
    heads = max(1, round(geometric(s.heads, t.heads, alpha)))
    dim = max(heads, heads * round(geometric(s.dim, t.dim, alpha) / heads))
    depth = max(1, round(geometric(s.depth, t.depth, alpha)))
    mlp_ratio = round(geometric(s.mlp_ratio, t.mlp_ratio, alpha), 2)
    # Tokens (image and patch size) stay the student's, so every hop pairs the student's grid.
    return dataclasses.replace(s, heads=heads, dim=dim, depth=depth, mlp_ratio=mlp_ratio)


def init_vit(teacher: nn.Module, student: nn.Module, cp: Copier) -> dict:
    """Heads are ranked per layer by the L1 norm of their q, k, v rows and their proj columns; the
    residual-stream (embedding) dims by the summed L1 norm of everything writing into them (patch
    embedding filters, every kept block's proj and fc2 rows); MLP hidden units by the L1 norm of
    their fc1 row plus fc2 column. Layer norms, position embeddings and the head follow."""
    ts, ss = teacher.spec, student.spec
    w = cp.src
    blocks = evenly_spaced(ts.depth, ss.depth)
    t_hd, s_hd = ts.dim // ts.heads, ss.dim // ss.heads
    if s_hd > t_hd or ss.heads > ts.heads:
        raise ValueError(f"student heads ({ss.heads} x {s_hd}) are not a subset of the teacher's ({ts.heads} x {t_hd})")
    report: dict[str, Any] = {"blocks": blocks, "heads": {}, "criterion": (
        "heads: L1 norm of their q/k/v rows + proj columns; embedding dims: summed L1 norm of patch-embedding "
        "filters and kept blocks' proj / fc2 rows; MLP units: L1 of fc1 row + fc2 column")}
    score = l1_rows(w["patch_embed.weight"]).clone()
    for j in blocks:
        score += l1_rows(w[f"blocks.{j}.attn.proj.weight"]) + l1_rows(w[f"blocks.{j}.mlp.fc2.weight"])
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
        hid = top_k(l1_rows(w[f"{t}.mlp.fc1.weight"]) + w[f"{t}.mlp.fc2.weight"].abs().sum(0), s_hidden)
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


# How it exports with litert-torch 0.10, found by exporting one: every reshape (its own LayerNorm
# decomposition's included) is lowered with the sample's batch baked into a constant shape, so a
# "dynamic" ViT file declares batch -1 but fails at any other batch (hence a fixed batch of 1); and
# its PT2E quantizer leaves the norms, softmax and GELU in float (hence no fully integer file).
register_family(Family(
    "vit", ViTSpec, ViT, shrink=shrink_vit, init_from_teacher=init_vit, between=between_vit,
    dynamic_batch=False,
    int8_problem=("litert-torch 0.10 quantizes a ViT's matmuls but leaves its LayerNorm, softmax and GELU in "
                  "float, which int8 verification refuses"),
))
