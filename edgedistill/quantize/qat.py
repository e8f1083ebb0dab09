"""Quantization-aware fine-tuning (PT2E) of the distilled student, still supervised by the teacher.

The student is exported to an ATen graph, fake-quant observers are inserted where LiteRT's int8
kernels will quantize (per-channel symmetric weights, per-tensor activations), and a few epochs of
training with the teacher's soft targets let the weights adapt to int8. ``convert_pt2e`` then fixes
the learned scales; that graph is exactly what litert-torch turns into the fully integer .tflite,
so the QAT result, not a fresh post-training calibration, reaches the device.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from edgedistill.data.dataset import ImageDataset
from edgedistill.distill.losses import kd_loss
from edgedistill.distill.trainer import evaluate
from edgedistill.quantize import litert_patch


@dataclass
class QATConfig:
    epochs: int = 4
    lr: float = 5e-4
    batch_size: int = 64
    seed: int = 0
    ce: float = 0.5
    kd: float = 0.5
    temperature: float = 4.0


@dataclass
class QATResult:
    losses: list[float] = field(default_factory=list)
    val_acc: float = 0.0
    test_acc: float = 0.0
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


def make_quantizer():
    from litert_torch.quantize.pt2e_quantizer import PT2EQuantizer, get_symmetric_quantization_config

    return PT2EQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True, is_qat=True))


def batch_dim() -> torch.export.Dim:
    return torch.export.Dim("batch", min=1, max=4096)


def qat_finetune(
    student: nn.Module,
    data: ImageDataset,
    teacher_logits: torch.Tensor | None,
    cfg: QATConfig,
) -> tuple[torch.fx.GraphModule, object, QATResult]:
    """Return (converted int8 reference graph, the quantizer, metrics). ``teacher_logits`` are the
    teacher's logits on the un-augmented training split (None: labels only)."""
    from torchao.quantization.pt2e import (
        allow_exported_model_train_eval,
        move_exported_model_to_eval,
        move_exported_model_to_train,
    )
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_qat_pt2e

    litert_patch.install()
    torch.manual_seed(cfg.seed)
    x_train = torch.from_numpy(data.inputs("train"))
    y_train = torch.from_numpy(data.train.labels)
    quantizer = make_quantizer()
    # torch.export shares parameter storage with the module it traces: fine-tune a copy, so the
    # caller's float student (exported as the fp32 artifacts) keeps its distilled weights.
    student = copy.deepcopy(student).cpu().train()
    graph = torch.export.export(student, (x_train[:4],), dynamic_shapes=({0: batch_dim()},)).module()
    prepared = prepare_qat_pt2e(graph, quantizer)
    move_exported_model_to_train(prepared)
    opt = torch.optim.AdamW(prepared.parameters(), lr=cfg.lr, weight_decay=0.0)
    steps = max(1, cfg.epochs * math.ceil(len(x_train) / cfg.batch_size))
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
    result = QATResult()
    t0 = time.perf_counter()
    for epoch in range(cfg.epochs):
        gen = torch.Generator().manual_seed(cfg.seed * 100_003 + 7_919 + epoch)
        perm = torch.randperm(len(x_train), generator=gen)
        total, seen = 0.0, 0
        for i in range(0, len(perm), cfg.batch_size):
            idx = perm[i : i + cfg.batch_size]
            if len(idx) < 2:
                continue
            logits = prepared(x_train[idx])
            loss = cfg.ce * F.cross_entropy(logits, y_train[idx])
            if teacher_logits is not None and cfg.kd > 0:
                loss = loss + cfg.kd * kd_loss(logits, teacher_logits[idx], cfg.temperature)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
            seen += len(idx)
        result.losses.append(total / max(1, seen))
    move_exported_model_to_eval(prepared)
    converted = convert_pt2e(prepared, fold_quantize=False)
    move_exported_model_to_eval(converted)
    # Let .eval()/.train() work on the graph, so evaluation code treats it like any module.
    allow_exported_model_train_eval(converted)
    result.seconds = time.perf_counter() - t0
    result.val_acc = evaluate(converted, torch.from_numpy(data.inputs("val")), torch.from_numpy(data.val.labels))
    result.test_acc = evaluate(converted, torch.from_numpy(data.inputs("test")), torch.from_numpy(data.test.labels))
    return converted, quantizer, result

