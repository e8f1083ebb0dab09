"""The built-in loss terms: CE, KD, DIST, FitNets hints, attention transfer and RKD, registered in
that order (the order a recipe's terms are summed in).

Each term is a :class:`~edgedistill.distill.loss_registry.LossTerm` over a pure function of
:mod:`edgedistill.distill.loss_functions`. A new loss is one more registered class, here or in a
file of its own (see :mod:`edgedistill.distill.loss_registry`); append it, so the sums of existing
recipes keep their order.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from edgedistill.distill.loss_functions import (
    HintAdapter,
    attention_transfer_loss,
    dist_loss,
    feature_dim,
    feature_kind,
    hint_loss,
    kd_loss,
    rkd_loss,
    transformer_attention_loss,
)
from edgedistill.distill.loss_registry import LossBatch, LossOption, LossSetup, LossTerm, register_loss
from edgedistill.models.taps import FeatureTaps, attention_pairs


@register_loss
class CrossEntropyTerm(LossTerm):
    """Cross-entropy with the labels; the only term with weight 1 unless a string says otherwise."""

    name = "ce"
    default_weight = 1.0
    needs_labels = True

    def forward(self, batch: LossBatch) -> torch.Tensor:
        return F.cross_entropy(batch.student_logits, batch.labels)


@register_loss
class KDTerm(LossTerm):
    """Hinton KD at temperature ``T``."""

    name = "kd"
    options = (LossOption("temperature", 4.0, key="T", positive=True, hint="T=4 is typical"),)
    needs_teacher_logits = True

    def forward(self, batch: LossBatch) -> torch.Tensor:
        return kd_loss(batch.student_logits, batch.teacher_logits, self.option("temperature"))


@register_loss
class DISTTerm(LossTerm):
    """DIST: correlation of predictions between and within classes, at temperature 1."""

    name = "dist"
    needs_teacher_logits = True

    def forward(self, batch: LossBatch) -> torch.Tensor:
        return dist_loss(batch.student_logits, batch.teacher_logits)


@torch.no_grad()
def _dry_run(model: nn.Module, paths: list[str], sample: torch.Tensor) -> dict[str, torch.Tensor]:
    was_training = model.training
    model.eval()
    try:
        with FeatureTaps(model, paths) as taps:
            model(sample)
        return dict(taps.outputs)
    finally:
        model.train(was_training)


def _module_device(model: nn.Module) -> torch.device:
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


@register_loss
class HintTerm(LossTerm):
    """FitNets hints: every student stage imitates its paired teacher stage through an adapter
    sized by one dry run on the sample batch (its parameters train with the student)."""

    name = "hint"
    needs_features = True

    def __init__(self, weight, options) -> None:
        super().__init__(weight, options)
        self.pairs: list[tuple[str, str]] = []
        self.adapters = nn.ModuleList()

    def setup(self, ctx: LossSetup) -> None:
        self.pairs = ctx.stages
        self.paths_teacher = [t for t, _ in self.pairs]
        self.paths_student = [s for _, s in self.pairs]
        if not self.pairs:
            return
        t_out = _dry_run(ctx.teacher, self.paths_teacher, ctx.sample)
        s_out = _dry_run(ctx.student, self.paths_student, ctx.sample)
        for t_path, s_path in self.pairs:
            s_feat, t_feat = s_out[s_path], t_out[t_path]
            dims = (feature_dim(s_feat), feature_dim(t_feat))
            self.adapters.append(HintAdapter(*dims, feature_kind(s_feat), feature_kind(t_feat)))
        self.adapters.to(_module_device(ctx.student))

    def forward(self, batch: LossBatch) -> torch.Tensor | None:
        if not self.pairs:
            return None
        hints = [
            hint_loss(batch.student_feature(s), batch.teacher_feature(t), adapter)
            for (t, s), adapter in zip(self.pairs, self.adapters)
        ]
        return torch.stack(hints).mean()


@register_loss
class AttentionTerm(LossTerm):
    """Transformer pairs compare attention probabilities; otherwise stage feature maps are compared
    (Zagoruyko & Komodakis)."""

    name = "attention"
    needs_features = True

    def __init__(self, weight, options) -> None:
        super().__init__(weight, options)
        self.pairs: list[tuple[str, str]] = []
        self.on_probs = False

    def setup(self, ctx: LossSetup) -> None:
        probs = attention_pairs(ctx.teacher, ctx.student)
        self.on_probs = bool(probs)
        self.pairs = probs or ctx.stages
        self.paths_teacher = [t for t, _ in self.pairs]
        self.paths_student = [s for _, s in self.pairs]

    def forward(self, batch: LossBatch) -> torch.Tensor | None:
        if not self.pairs:
            return None
        s_list = [batch.student_feature(s) for _, s in self.pairs]
        t_list = [batch.teacher_feature(t) for t, _ in self.pairs]
        if self.on_probs:
            return torch.stack([transformer_attention_loss(s, t) for s, t in zip(s_list, t_list)]).mean()
        return attention_transfer_loss(s_list, t_list)


@register_loss
class RKDTerm(LossTerm):
    """Relational KD on the modules both models name as ``embedding_module``, on the logits when
    either names none."""

    name = "rkd"

    def __init__(self, weight, options) -> None:
        super().__init__(weight, options)
        self.embedding_pair: tuple[str, str] | None = None

    def configure(self, ctx: LossSetup) -> None:
        t_emb = getattr(ctx.teacher, "embedding_module", None)
        s_emb = getattr(ctx.student, "embedding_module", None)
        self.embedding_pair = (t_emb, s_emb) if t_emb and s_emb else None
        self.needs_features = self.embedding_pair is not None
        self.needs_teacher_logits = self.embedding_pair is None
        self.form = "rkd on the embedding modules" if self.embedding_pair else "logit-level rkd"

    def setup(self, ctx: LossSetup) -> None:
        if self.embedding_pair is not None:
            self.paths_teacher, self.paths_student = [self.embedding_pair[0]], [self.embedding_pair[1]]

    def forward(self, batch: LossBatch) -> torch.Tensor:
        if self.embedding_pair is None:
            return rkd_loss(batch.student_logits, batch.teacher_logits)
        t_path, s_path = self.embedding_pair
        return rkd_loss(batch.student_feature(s_path), batch.teacher_feature(t_path))
