"""Quantization-aware fine-tuning (PT2E) of the distilled student, still supervised by the teacher.

The student is exported to an ATen graph, fake-quant observers are inserted where LiteRT's int8
kernels will quantize (per-channel symmetric weights, per-tensor activations), and a few epochs of
training with the build's own loss let the weights adapt to int8. ``convert_pt2e`` then fixes the
learned scales, and bias correction (:mod:`edgedistill.quantize.bias_correction`) takes the int8
weights' mean error out of the biases; that graph is exactly what litert-torch turns into the fully
integer .tflite. The student quantized post-training (histogram observers, bias-corrected) is the
other candidate: it ships instead only when it is clearly better on the validation split
(:func:`clearly_better`), as it was on a 96 px MBConv student initialised from EfficientNet-Lite0.

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
from edgedistill.distill.evaluation import evaluate_split, predict_split
from edgedistill.quantize import litert_patch
from edgedistill.quantize.bias_correction import correct_biases

# Training images bias correction measures the int8 weights' error on (a seeded sample).
BIAS_CORRECTION_IMAGES = 256
NO_TAPS = "the PT2E-exported graph has no module paths to tap"
# With nothing of the build's loss left (e.g. ce=0,hint=1), QAT keeps to the labels.
FALLBACK_LOSS = LossWeights(ce=1.0)


@dataclass
class QATConfig:
    epochs: int = 4
    lr: float = 5e-4
    batch_size: int = 64  # the global batch, as in distillation
    seed: int = 0
    # under torchrun: BatchNorm and the observers see the global batch (--no-sync-batchnorm: each
    # process's own), as in distillation
    sync_batchnorm: bool = True


@dataclass
class QATResult:
    losses: list[float] = field(default_factory=list)
    val_acc: float = 0.0
    test_acc: float = 0.0
    seconds: float = 0.0
    loss_used: str = ""  # the loss QAT trained with, as a --loss string
    loss_dropped: dict[str, str] = field(default_factory=dict)  # term of the build's loss -> why not here
    bias_correction: dict = field(default_factory=dict)  # BiasCorrection.to_dict() of the converted graph
    val_acc_before: float = 0.0  # the same graph's, not fine-tuned (observers set on calibration images)
    val_acc_fine_tuned: float = 0.0  # the fine-tuned graph's (val_acc: the shipped one's)
    fine_tuned_kept: bool = True  # False: the graph before fine-tuning was clearly better on val, and ships

    def to_dict(self) -> dict:
        return asdict(self)


def make_quantizer(qat: bool = True):
    """litert-torch's PT2E quantizer (per-channel symmetric weights; fake-quant for QAT, else
    histogram observers), which also quantizes conv + ReLU6 as one op (:mod:`edgedistill.quantize.clamp_fusion`)."""
    from litert_torch.quantize.pt2e_quantizer import get_symmetric_quantization_config

    from edgedistill.quantize.clamp_fusion import clamp_fusing_quantizer

    config = get_symmetric_quantization_config(is_per_channel=True, is_qat=qat)
    if qat:
        config = _weights_follow_now(config)
    return clamp_fusing_quantizer(config)


def _weights_follow_now(config):
    """``config`` with each weight's fake-quant range that of the weights as they are now.

    The library's QAT weight observer is a moving average (constant 0.01) of per-channel min/max:
    it trails weights that QAT and BatchNorm's running statistics keep moving (BN folds into conv
    weights), so by convert the folded weights outgrow the range and are clipped. Measured on a
    96 px MBConv student, 4 epochs: a bias shift of 10.3 in one layer, 86.0% int8 test accuracy
    against 89.0% post-training, and a training loss that rose (0.32 -> 0.37). Averaging constant
    1.0 is the current min/max, as PTQ has it: with it the loss falls (0.29 -> 0.25), though that
    student's QAT graph still did worse on val than its post-training one (hence both candidates)."""
    import dataclasses

    weight = config.weight
    made = weight.observer_or_fake_quant_ctr.p  # the functools.partial inside torch's with_args wrapper
    follow = made.func.with_args(*made.args, **{**made.keywords, "averaging_constant": 1.0})
    return dataclasses.replace(config, weight=dataclasses.replace(weight, observer_or_fake_quant_ctr=follow))


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
    from torchao.quantization.pt2e import move_exported_model_to_train
    from torchao.quantization.pt2e.quantize_pt2e import prepare_qat_pt2e

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
    calibration = lambda: _calibration_batches(data, cfg.seed)  # noqa: E731
    # The student quantized post-training on the calibration images: QAT's graph ships unless this
    # one is clearly better on the validation split (measured on a 96 px MBConv student: 4 epochs
    # of QAT left int8 at 86.0% test where this graph, bias-corrected, had 89.0%).
    ptq_quantizer = make_quantizer(qat=False)
    before = post_training_quantize(student, sample, ptq_quantizer, calibration())
    # Each graph's int8 weights' mean error, measured on training images, taken out of its float
    # biases (bias_correction.py: on a 96 px MBConv student, 86.4% -> 89.0% test accuracy).
    before_fix = correct_biases(before, calibration())
    with contextlib.ExitStack() as synced:
        if world > 1 and cfg.sync_batchnorm:
            synced.enter_context(ddp.synced_batchnorm(prepared))
            synced.enter_context(ddp.synced_observers(prepared))
        _epochs(net, criterion, opt, sched, data, y_train, teacher_logits, cfg, batch, result)
    if world > 1:
        ddp.broadcast_buffers(prepared)  # the last step's observer updates, too
    after = _reference_graph(prepared)
    after_fix = correct_biases(after, calibration())
    y_val = torch.from_numpy(data.val.labels)
    if len(y_val):  # no validation images: nothing to choose by, and the fine-tuned graph ships
        right_before = predict_split(before, data, "val").argmax(1) == y_val
        right_after = predict_split(after, data, "val").argmax(1) == y_val
        result.val_acc_before = float(right_before.float().mean())
        result.val_acc_fine_tuned = float(right_after.float().mean())
        result.fine_tuned_kept = not clearly_better(right_before, right_after)
    converted, fix = (after, after_fix) if result.fine_tuned_kept else (before, before_fix)
    result.bias_correction = fix.to_dict()
    quantizer = quantizer if result.fine_tuned_kept else ptq_quantizer
    result.val_acc = result.val_acc_fine_tuned if result.fine_tuned_kept else result.val_acc_before
    result.seconds = time.perf_counter() - t0
    result.test_acc = evaluate_split(converted, data, "test")
    return converted, quantizer, result


def clearly_better(right_a: torch.Tensor, right_b: torch.Tensor) -> bool:
    """Whether the model right on ``right_a`` (bools, per image) beats the one right on ``right_b``
    by more than chance would on the same images: of the images only one of them gets right, ``a``'s
    share is more than two standard deviations above half (McNemar's test, about 95%). A
    validation split of a few hundred images differs by one or two between close models."""
    only_a = int((right_a & ~right_b).sum())
    only_b = int((right_b & ~right_a).sum())
    return only_a - only_b > 2 * math.sqrt(only_a + only_b)


def post_training_quantize(model: nn.Module, sample: torch.Tensor, quantizer, batches,
                           dynamic_batch: bool = True) -> torch.fx.GraphModule:
    """``model`` (not changed) quantized post-training: exported with a dynamic batch (else at
    ``sample``'s batch, which every one of ``batches`` must then have), its observers set on
    ``batches``, converted to the int8 reference graph (no bias correction)."""
    from torchao.quantization.pt2e.quantize_pt2e import prepare_pt2e

    litert_patch.install()
    dynamic_shapes = ({0: batch_dim()},) if dynamic_batch else None
    graph = torch.export.export(copy.deepcopy(model).eval(), (sample,), dynamic_shapes=dynamic_shapes).module()
    prepared = prepare_pt2e(graph, quantizer)
    with torch.no_grad():
        for xb in batches:
            prepared(xb)
    return _reference_graph(prepared)


def _reference_graph(prepared: torch.fx.GraphModule) -> torch.fx.GraphModule:
    """``prepared`` (consumed) converted to the int8 reference graph, in eval mode."""
    from torchao.quantization.pt2e import allow_exported_model_train_eval, move_exported_model_to_eval
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e

    move_exported_model_to_eval(prepared)
    converted = convert_pt2e(prepared, fold_quantize=False)
    move_exported_model_to_eval(converted)
    # Let .eval()/.train() work on the graph, so evaluation code treats it like any module.
    allow_exported_model_train_eval(converted)
    # ...and say it is in eval mode: the patched methods leave nn.Module's ``training`` flag True,
    # so code that restores the mode it found (predict_logits) switched the graph back to train,
    # and each switch re-traces torchao's batch-norm patterns, whose fake tensors stay cached:
    # on a 20k-image 224 px build, RSS grew 0.5 GB over the val and test passes.
    nn.Module.train(converted, False)
    return converted


def _epochs(net, criterion, opt, sched, data, y_train, teacher_logits, cfg, batch, result) -> None:
    rank, world = ddp.rank(), ddp.world_size()
    for epoch in range(cfg.epochs):
        gen = torch.Generator().manual_seed(cfg.seed * 100_003 + 7_919 + epoch)
        perm = torch.randperm(len(y_train), generator=gen)
        total, seen = 0.0, 0
        steps = [ddp.share(perm, None, i, batch, rank, world) for i in range(0, len(perm), batch * world)
                 if len(perm[i : i + batch * world]) >= 2]
        # closed at once when training stops early, so the loading thread is joined (trainer.py says why)
        with contextlib.closing(prefetched(steps, lambda step: torch.from_numpy(data.batch("train", step[0].numpy())))) \
                as batches:
            for (idx, _, weight), xb in batches:
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


def _calibration_batches(data: ImageDataset, seed: int):
    """A seeded sample of ``BIAS_CORRECTION_IMAGES`` training images, a bounded block at a time:
    the same on every rank, so every rank corrects its graph alike."""
    n = len(data.train.labels)
    pick = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 100_003 + 104_729))
    pick = pick[:BIAS_CORRECTION_IMAGES].sort().values.numpy()
    block = max(1, data.block_rows())
    for i in range(0, len(pick), block):
        yield torch.from_numpy(data.batch("train", pick[i : i + block]))
