"""The training loop shared by the teacher, the scratch baseline and every distilled student.

One loop, three uses: a teacher or scratch student is ``weights=LossWeights(ce=1)`` with no teacher;
a distilled student passes the teacher and any mix of KD, hints, attention and RKD.

Why it is shaped this way:
- Without augmentation the teacher's logits and tapped features are computed once for the whole
  training set and reused every epoch, so distillation costs little more than training from labels.
  With augmentation the teacher sees exactly the student's augmented view (Beyer et al. 2022:
  consistent teaching) and runs under inference mode (bf16 autocast on GPU).
- Shuffling and augmentation draw from a generator seeded by (seed, epoch), not from global state,
  so a run killed after epoch k and resumed from its checkpoint ends with the same weights as one
  that never stopped.
- The weights with the best validation accuracy are kept (early stopping without stopping early).
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from edgedistill.data.dataset import ImageDataset
from edgedistill.distill.losses import DistillationLoss, LossWeights
from edgedistill.errors import EdgeDistillError
from edgedistill.fsutil import atomic_path
from edgedistill.models.taps import FeatureTaps


class TrainingDivergedError(EdgeDistillError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


@dataclass
class TrainConfig:
    epochs: int = 40
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 5e-4
    seed: int = 0
    augment: bool = False  # random +-1 pixel shifts, the same view for teacher and student
    device: str = "auto"  # "auto" | "cpu" | "cuda" | "cuda:N"
    bf16: bool = True  # autocast on CUDA only; CPU stays fp32


@dataclass
class EpochRecord:
    epoch: int
    loss: float
    parts: dict[str, float]
    train_acc: float
    val_acc: float
    seconds: float


@dataclass
class TrainResult:
    history: list[EpochRecord] = field(default_factory=list)
    best_epoch: int = -1
    best_val_acc: float = 0.0
    seconds: float = 0.0
    device: str = "cpu"
    teacher_cached: bool = False

    @property
    def sec_per_epoch(self) -> float:
        return self.seconds / max(1, len(self.history))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainResult":
        d = dict(d)
        d["history"] = [EpochRecord(**h) for h in d.get("history", [])]
        return cls(**d)


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _shift_batch(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random shifts by -1..1 pixels with zero (background) fill, per sample."""
    n, _, h, w = x.shape
    padded = F.pad(x, (1, 1, 1, 1), value=float(x.amin()))
    dy = torch.randint(0, 3, (n,), generator=gen)
    dx = torch.randint(0, 3, (n,), generator=gen)
    rows = (dy[:, None] + torch.arange(h)[None, :])  # (n, h)
    cols = (dx[:, None] + torch.arange(w)[None, :])  # (n, w)
    idx_n = torch.arange(n)[:, None, None]
    out = padded.permute(0, 2, 3, 1)[idx_n, rows[:, :, None], cols[:, None, :]]
    return out.permute(0, 3, 1, 2).contiguous()


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 512) -> float:
    return float((predict_logits(model, x, batch_size).argmax(1) == y.cpu()).float().mean())


@torch.no_grad()
def predict_logits(model: nn.Module, x: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    try:
        outs = [model(x[i : i + batch_size].to(device)).float().cpu() for i in range(0, len(x), batch_size)]
    finally:
        model.train(was_training)
    return torch.cat(outs)


def _teacher_outputs(teacher: nn.Module, paths: list[str], x: torch.Tensor, use_bf16: bool):
    with torch.inference_mode(), torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=use_bf16):
        with FeatureTaps(teacher, paths) as taps:
            logits = teacher(x)
        feats = {p: taps.outputs[p] for p in paths}
    return logits.float(), {p: f.float() for p, f in feats.items()}


def train(
    model: nn.Module,
    data: ImageDataset,
    cfg: TrainConfig,
    *,
    teacher: nn.Module | None = None,
    weights: LossWeights | None = None,
    label: str = "train",
    checkpoint_dir: Path | None = None,
    progress: Callable[[str, int, int, str], None] | None = None,
) -> TrainResult:
    """Train ``model`` in place; returns its history. ``progress(label, epoch, epochs, info)`` is
    called after every epoch (the CLI draws a progress bar with it)."""
    weights = weights or LossWeights(ce=1.0)
    device = resolve_device(cfg.device)
    use_bf16 = cfg.bf16 and device.type == "cuda"
    torch.manual_seed(cfg.seed)

    x_train = torch.from_numpy(data.inputs("train"))
    y_train = torch.from_numpy(data.train.labels)
    x_val = torch.from_numpy(data.inputs("val"))
    y_val = torch.from_numpy(data.val.labels)

    model.to(device)
    if device.type == "cuda":
        model.to(memory_format=torch.channels_last)
    criterion: DistillationLoss | None = None
    if teacher is not None:
        teacher.to(device).eval()
        for p in teacher.parameters():
            p.requires_grad_(False)
        criterion = DistillationLoss(teacher, model, weights, x_train[: min(8, len(x_train))].to(device))
    params = list(model.parameters()) + (list(criterion.parameters()) if criterion is not None else [])
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = math.ceil(len(x_train) / cfg.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=cfg.lr, total_steps=max(1, cfg.epochs * steps_per_epoch), pct_start=0.15
    )

    # The teacher's view of the un-augmented training set never changes: compute it once.
    cached_teacher = None
    t_paths = criterion.paths_teacher if criterion is not None else []
    s_paths = criterion.paths_student if criterion is not None else []
    if teacher is not None and not cfg.augment:
        chunks = [_teacher_outputs(teacher, t_paths, x_train[i : i + 512].to(device), use_bf16)
                  for i in range(0, len(x_train), 512)]
        cached_teacher = (
            torch.cat([c[0] for c in chunks]),
            {p: torch.cat([c[1][p] for c in chunks]) for p in t_paths},
        )

    result = TrainResult(device=str(device), teacher_cached=cached_teacher is not None)
    best_state = copy.deepcopy(model.state_dict())
    start_epoch = 0
    ckpt = checkpoint_dir / "checkpoint.pt" if checkpoint_dir is not None else None
    if ckpt is not None and ckpt.exists():
        state = torch.load(ckpt, map_location=device, weights_only=True)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        sched.load_state_dict(state["sched"])
        if criterion is not None and state.get("criterion") is not None:
            criterion.load_state_dict(state["criterion"])
        best_state = state["best"]
        result = TrainResult.from_dict(state["result"])
        start_epoch = len(result.history)

    for epoch in range(start_epoch, cfg.epochs):
        t0 = time.perf_counter()
        gen = torch.Generator().manual_seed(cfg.seed * 100_003 + epoch)
        perm = torch.randperm(len(x_train), generator=gen)
        model.train()
        total, seen, correct = 0.0, 0, 0
        parts_sum: dict[str, float] = {}
        for i in range(0, len(perm), cfg.batch_size):
            idx = perm[i : i + cfg.batch_size]
            if len(idx) < 2:  # BatchNorm needs two samples
                continue
            xb = x_train[idx]
            if cfg.augment:
                xb = _shift_batch(xb, gen)
            xb, yb = xb.to(device), y_train[idx].to(device)
            if device.type == "cuda":
                xb = xb.contiguous(memory_format=torch.channels_last)
            t_logits, t_feats = None, {}
            if teacher is not None:
                if cached_teacher is not None:
                    t_logits = cached_teacher[0][idx].to(device)
                    t_feats = {p: cached_teacher[1][p][idx].to(device) for p in t_paths}
                else:
                    t_logits, t_feats = _teacher_outputs(teacher, t_paths, xb, use_bf16)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
                with FeatureTaps(model, s_paths) as taps:
                    logits = model(xb)
                if criterion is None:
                    loss, parts = F.cross_entropy(logits.float(), yb), {}
                else:
                    s_feats = {p: taps.outputs[p].float() for p in s_paths}
                    loss, parts = criterion(logits.float(), yb, t_logits, s_feats, t_feats)
            if not torch.isfinite(loss):
                raise TrainingDivergedError(
                    f"{label}: loss became {float(loss)} at epoch {epoch + 1}",
                    hint="lower the learning rate (--lr) or check the data for NaN/Inf values; "
                    + (f"the last good checkpoint is {ckpt}" if ckpt is not None else "no checkpoint was kept"),
                )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
            seen += len(idx)
            correct += int((logits.argmax(1) == yb).sum())
            for k, v in parts.items():
                parts_sum[k] = parts_sum.get(k, 0.0) + v * len(idx)
        val_acc = evaluate(model, x_val, y_val) if len(x_val) else float("nan")
        record = EpochRecord(
            epoch=epoch + 1,
            loss=total / max(1, seen),
            parts={k: v / max(1, seen) for k, v in parts_sum.items()},
            train_acc=correct / max(1, seen),
            val_acc=val_acc,
            seconds=time.perf_counter() - t0,
        )
        result.history.append(record)
        result.seconds += record.seconds
        if not (val_acc <= result.best_val_acc):  # also true for the first epoch and for NaN (no val split)
            result.best_val_acc, result.best_epoch = val_acc, epoch + 1
            best_state = copy.deepcopy(model.state_dict())
        if ckpt is not None:
            with atomic_path(ckpt) as tmp:
                torch.save(
                    {"model": model.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(),
                     "criterion": criterion.state_dict() if criterion is not None else None,
                     "best": best_state, "result": result.to_dict()},
                    tmp,
                )
        if progress is not None:
            progress(label, epoch + 1, cfg.epochs, f"loss {record.loss:.3f} val {val_acc:.3f}")

    model.load_state_dict(best_state)
    model.cpu()
    if device.type == "cuda":
        model.to(memory_format=torch.contiguous_format)
    return result


def accuracy(logits: np.ndarray | torch.Tensor, labels: np.ndarray) -> float:
    pred = np.asarray(logits).argmax(1)
    return float((pred == np.asarray(labels)).mean())
