"""Quantization-aware fine-tuning (PT2E) of the distilled student, still supervised by the teacher.

The student is exported to an ATen graph, fake-quant observers are inserted where LiteRT's int8
kernels will quantize (per-channel symmetric weights, per-tensor activations), and a few epochs of
training with the build's own loss let the weights adapt to int8. ``convert_pt2e`` then fixes the
learned scales; that graph is exactly what litert-torch turns into the fully integer .tflite, so
the QAT result, not a fresh post-training calibration, reaches the device.

The loss is the build's recipe less what the exported graph cannot feed: terms on logits (ce, kd,
dist, logit-level rkd) run as in distillation; terms on intermediate features (hints, attention,
rkd on embeddings) need module paths to tap, which the exported graph no longer has. Those are
left out, and :class:`QATResult` says which and why.

Under ``torchrun`` the fine-tuning is data-parallel like distillation (:mod:`edgedistill.distill.ddp`):
each rank takes its share of the global batch through DistributedDataParallel, whose buffer
broadcast keeps every rank's observers on rank 0's statistics, so every rank converts the same graph.
BatchNorm normalises with the global batch's statistics, as in distillation, and the activation
observers watch the global batch (:func:`~edgedistill.distill.ddp.synced_observers`).
"""

from __future__ import annotations

import contextlib
import copy
import math
import time
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from edgedistill.data.dataset import ImageDataset
from edgedistill.distill import ddp, jobs
from edgedistill.distill.losses import DistillationLoss, LossWeights
from edgedistill.distill.recipe import DEFAULT_LOSS
from edgedistill.distill.batches import prefetched
from edgedistill.distill.evaluation import evaluate_split
from edgedistill.quantize import litert_patch

NO_TAPS = "the PT2E-exported graph has no module paths to tap"
# With nothing of the build's loss left (e.g. ce=0,hint=1), QAT keeps to the labels.
FALLBACK_LOSS = LossWeights(ce=1.0)


@dataclass
class QATConfig:
    epochs: int = 4
    lr: float = 5e-4
    batch_size: int = 64  # the global batch, as in distillation
    seed: int = 0


@dataclass
class QATResult:
    losses: list[float] = field(default_factory=list)
    val_acc: float = 0.0
    test_acc: float = 0.0
    seconds: float = 0.0
    loss_used: str = ""  # the loss QAT trained with, as a --loss string
    loss_dropped: dict[str, str] = field(default_factory=dict)  # term of the build's loss -> why not here

    def to_dict(self) -> dict:
        return asdict(self)


def make_quantizer():
    """litert-torch's PT2E quantizer (per-channel symmetric weights, QAT), which also quantizes
    conv + ReLU6 as one op (:mod:`edgedistill.quantize.clamp_fusion`)."""
    from litert_torch.quantize.pt2e_quantizer import get_symmetric_quantization_config

    from edgedistill.quantize.clamp_fusion import clamp_fusing_quantizer

    return clamp_fusing_quantizer(get_symmetric_quantization_config(is_per_channel=True, is_qat=True))


def batch_dim() -> torch.export.Dim:
    return torch.export.Dim("batch", min=1, max=4096)


def qat_loss(
    weights: LossWeights, student: nn.Module, teacher: nn.Module | None, have_teacher_logits: bool
) -> DistillationLoss:
    """The part of ``weights`` that can train the exported ``student``: its ``dropped`` says what
    was left out and why, ``used`` what remains. ``teacher`` is only looked at (RKD runs on
    embeddings, so cannot run here, when both models name an embedding module)."""
    loss = DistillationLoss(teacher, student, weights, None, features=False, teacher_logits=have_teacher_logits,
                            no_features_because=NO_TAPS)
    if not loss.terms:
        fallback = DistillationLoss(None, student, FALLBACK_LOSS, None, features=False, teacher_logits=False)
        fallback.dropped = loss.dropped
        return fallback
    return loss


@jobs.announced("qat")
def qat_finetune(
    student: nn.Module,
    data: ImageDataset,
    teacher_logits: torch.Tensor | None,
    cfg: QATConfig,
    weights: LossWeights | None = None,
    *,
    teacher: nn.Module | None = None,
    student_size: tuple[int, int] | None = None,
) -> tuple[torch.fx.GraphModule, object, QATResult]:
    """Return (converted int8 reference graph, the quantizer, metrics). ``teacher_logits`` are the
    teacher's logits on the un-augmented training split (None: the terms that need them drop out).
    ``weights``: the build's loss (default: the default recipe, ce=0.5,kd=0.5,T=4); its logit-level
    terms train the graph (:func:`qat_loss`). ``teacher`` tells which form of RKD the build ran
    (without it, RKD runs on the logits). Under ``torchrun`` every rank makes this call (in a
    build, at rank 0's word). ``student_size`` (H, W): the student's resolution, when it is not
    the data's (the teacher's logits are then those of the full-size images)."""
    from torchao.quantization.pt2e import (
        allow_exported_model_train_eval,
        move_exported_model_to_eval,
        move_exported_model_to_train,
    )
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_qat_pt2e

    data = data.resized(student_size) if student_size else data
    criterion = qat_loss(DEFAULT_LOSS if weights is None else weights, student, teacher, teacher_logits is not None)
    litert_patch.install()
    torch.manual_seed(cfg.seed)
    y_train = torch.from_numpy(data.train.labels)
    quantizer = make_quantizer()
    # torch.export shares parameter storage with the module it traces: fine-tune a copy, so the
    # caller's float student (exported as the fp32 artifacts) keeps its distilled weights.
    student = copy.deepcopy(student).cpu().train()
    sample = torch.from_numpy(data.batch("train", slice(0, 4)))
    graph = torch.export.export(student, (sample,), dynamic_shapes=({0: batch_dim()},)).module()
    prepared = prepare_qat_pt2e(graph, quantizer)
    move_exported_model_to_train(prepared)
    ddp.init_from_env()
    rank, world = ddp.rank(), ddp.world_size()
    batch = ddp.per_rank_batch(cfg.batch_size, world)
    net = ddp.wrap(prepared, torch.device("cpu")) if world > 1 else prepared
    opt = torch.optim.AdamW(prepared.parameters(), lr=cfg.lr, weight_decay=0.0)
    steps = max(1, cfg.epochs * math.ceil(len(y_train) / (batch * world)))
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
    result = QATResult(loss_used=criterion.used.to_str(), loss_dropped=dict(criterion.dropped))
    t0 = time.perf_counter()
    with contextlib.ExitStack() as synced:
        if world > 1:
            synced.enter_context(ddp.synced_batchnorm(prepared))
            synced.enter_context(ddp.synced_observers(prepared))
        _epochs(net, criterion, opt, sched, data, y_train, teacher_logits, cfg, batch, result)
    if world > 1:
        ddp.broadcast_buffers(prepared)  # the last step's observer updates, too
    move_exported_model_to_eval(prepared)
    converted = convert_pt2e(prepared, fold_quantize=False)
    move_exported_model_to_eval(converted)
    # Let .eval()/.train() work on the graph, so evaluation code treats it like any module.
    allow_exported_model_train_eval(converted)
    result.seconds = time.perf_counter() - t0
    result.val_acc = evaluate_split(converted, data, "val")
    result.test_acc = evaluate_split(converted, data, "test")
    return converted, quantizer, result




def _epochs(net, criterion, opt, sched, data, y_train, teacher_logits, cfg, batch, result) -> None:
    rank, world = ddp.rank(), ddp.world_size()
    for epoch in range(cfg.epochs):
        gen = torch.Generator().manual_seed(cfg.seed * 100_003 + 7_919 + epoch)
        perm = torch.randperm(len(y_train), generator=gen)
        total, seen = 0.0, 0
        steps = [ddp.share(perm, None, i, batch, rank, world) for i in range(0, len(perm), batch * world)
                 if len(perm[i : i + batch * world]) >= 2]
        for (idx, _, weight), xb in prefetched(steps, lambda step: torch.from_numpy(data.batch("train", step[0].numpy()))):
            logits = net(xb)
            t_logits = teacher_logits[idx] if teacher_logits is not None else None
            loss, _ = criterion(logits, y_train[idx], t_logits, {}, {})
            opt.zero_grad(set_to_none=True)
            (loss * weight if world > 1 else loss).backward()
            opt.step()
            sched.step()
            real = len(idx) if weight > 0 else 0  # a stand-in sample counts for nothing
            total += float(loss.detach()) * real
            seen += real
        if world > 1:
            total, seen, _, _ = ddp.sum_stats(total, seen, 0, {}, torch.device("cpu"))
        result.losses.append(total / max(1, seen))
