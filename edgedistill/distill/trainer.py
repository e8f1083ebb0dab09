"""The training loop shared by the teacher, the scratch baseline and every distilled student.

One loop, three uses: a teacher or scratch student is ``weights=LossWeights(ce=1)`` with no teacher;
a distilled student passes the teacher and any mix of the registered losses
(:mod:`edgedistill.distill.losses`): KD, hints, attention, RKD, DIST.

Why it is shaped this way:
- The teacher's outputs are computed once and reused every epoch, so distillation costs little
  more than training from labels. Without augmentation that is one pass over the training set.
  The augmentation is a shift by -1..1 pixels, which has only nine views per image, so with
  augmentation the teacher's outputs for all nine are cached (when they fit ``cache_limit_mb``)
  and the student's view is looked up: the teacher still sees exactly the student's augmented view
  (Beyer et al. 2022: consistent teaching). Otherwise the teacher runs per batch on that view.
  Either way it runs under inference mode, in bf16 autocast on GPU
  (:mod:`edgedistill.distill.teacher_cache`; the views are :mod:`edgedistill.distill.batches`).
  Above 32 px the augmentation is a random-resized crop and flip instead, one view for both models
  (the student's is the teacher's, downscaled when the student runs at a lower resolution), with
  the teacher online: crops are too many to cache.
  A cache above ``cache_memory_mb`` is written to disk and read back a batch at a time.
- The data stays raw (uint8, in memory or on disk) until a batch is read; the next batch is read,
  converted and shifted in a thread while the current one trains (``batches.prefetched``), so
  memory does not grow with the training set.
- Shuffling and augmentation draw from a generator seeded by (seed, epoch), not from global state,
  so a run killed after epoch k and resumed from its checkpoint ends with the same weights as one
  that never stopped.
- The weights with the best validation accuracy are kept (early stopping without stopping early).
- Launched by ``torchrun`` (see :mod:`edgedistill.distill.ddp`), each process trains on its share
  of every step's batch of the same seeded permutation, through DistributedDataParallel.
  ``batch_size`` is the global batch: a step sees the same images at any world size, its loss is
  weighted to be the global batch's mean, and BatchNorm takes the global batch's statistics
  (:func:`~edgedistill.distill.ddp.synced_batchnorm`), so N processes follow one's trajectory. Only rank 0 reads and writes checkpoints (it sends a resumed state to the others), and
  BatchNorm buffers are taken from rank 0 after every epoch so that every rank validates, picks
  and ends with the same weights. In a build, rank 0 alone calls :func:`train`; it announces the
  call (:mod:`edgedistill.distill.jobs`) and the other ranks make it too.
"""

from __future__ import annotations

import contextlib
import dataclasses
import copy
import math
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from edgedistill.data.dataset import ImageDataset
from edgedistill.distill import ddp, jobs
from edgedistill.distill.batches import (N_VIEWS, canonical, crop_views, draw_crops, draw_views, prefetched,
                                         shift_views, to_device)
from edgedistill.distill.evaluation import evaluate_split
from edgedistill.distill.losses import DistillationLoss, LossWeights
from edgedistill.distill.teacher_cache import TeacherCache, teacher_cache_mb, teacher_code, teacher_outputs
from edgedistill.errors import EdgeDistillError
from edgedistill.fsutil import atomic_path
from edgedistill.models.staged import SMALL_INPUT
from edgedistill.models.taps import FeatureTaps


class TrainingDivergedError(EdgeDistillError):
    """The loss became NaN or infinite; the last good checkpoint, once an epoch has finished, is kept."""

    all_ranks = True  # under torchrun the ranks agree on it (all-reduce) and raise it together


def _diverged(label: str, loss: float, epoch: int, t_logits, t_feats: dict, ckpt: Path | None) -> TrainingDivergedError:
    """Say why the loss is not finite where that is known (the teacher's outputs on this batch), and
    name a checkpoint only if one was written: none is before the first epoch ends."""
    bad_rows = 0 if t_logits is None else int((~torch.isfinite(t_logits.float())).any(1).sum())
    bad_feats = [p for p, f in t_feats.items() if not bool(torch.isfinite(f.float()).all())]
    why = ""
    if bad_rows:
        why = f" (the teacher's logits are NaN or Inf for {bad_rows} of this batch's {len(t_logits)} images)"
    elif bad_feats:
        why = f" (the teacher's features at {', '.join(bad_feats)} are NaN or Inf)"
    hint = ("check the teacher on the training images (its weights, its forward, the --mean/--std it expects)"
            if why else "lower the learning rate (--lr) or check the data for NaN/Inf values")
    if ckpt is not None and ckpt.exists():
        hint += f"; the last good checkpoint, after epoch {epoch}, is {ckpt}"
    else:
        hint += "; no checkpoint was written (the first is at the end of epoch 1)" if epoch == 0 else \
            "; no checkpoint was kept"
    return TrainingDivergedError(f"{label}: loss became {loss} at epoch {epoch + 1}{why}", hint=hint)


@dataclass
class TrainConfig:
    epochs: int = 40
    batch_size: int = 64  # the global batch; under torchrun each process takes its share
    lr: float = 3e-3
    weight_decay: float = 5e-4
    seed: int = 0
    augment: bool = False  # the same view for teacher and student: +-1 px shifts up to 32 px, else crops
    flip: bool = True  # above 32 px, crops are mirrored left-right half of the time
    device: str = "auto"  # "auto" | "cpu" | "cuda" | "cuda:N"
    bf16: bool = True  # autocast on CUDA only; CPU stays fp32
    cache_memory_mb: float = 256.0  # largest teacher-output cache kept in memory; bigger ones go to disk
    cache_limit_mb: float = 8192.0  # largest cache of all nine augmented views (on disk); above it, online
    sync_batchnorm: bool = True  # under torchrun: BatchNorm statistics of the global batch (ddp.synced_batchnorm)


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
    world_size: int = 1
    batch_per_rank: int = 0  # global batch = batch_per_rank * world_size (the manifest's student.training)
    lr: float = 0.0

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
        if torch.cuda.is_available():
            # one GPU per process under torchrun
            return torch.device("cuda", ddp.local_rank()) if ddp.is_distributed() else torch.device("cuda")
        return torch.device("cpu")
    return torch.device(name)


# ---------------------------------------------------------------------------------------------
# The loop


@jobs.announced("train", local=("checkpoint_dir", "progress", "teacher_logits_to"))
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
    student_size: tuple[int, int] | None = None,
    teacher_size: tuple[int, int] | None = None,
    teacher_logits_to: Callable[[torch.Tensor], None] | None = None,
) -> TrainResult:
    """Train ``model`` in place; returns its history. ``progress(label, epoch, epochs, info)`` is
    called after every epoch (the CLI draws a progress bar with it). Under ``torchrun`` every
    process makes this call with the same arguments: itself, or at rank 0's word in a build.
    A teacher cache too big for memory lives in ``checkpoint_dir`` (else the system's temporary
    folder) until the call returns.

    ``student_size`` / ``teacher_size`` (H, W): the resolution each model sees the same images at
    (:meth:`~edgedistill.data.dataset.ImageDataset.resized`; default: the data's own). When they
    differ, feature-level terms drop out (their maps do not pair) and so do the +-1 pixel shifts
    (no shift is the same view at two resolutions): the teacher scores the whole image, the
    student learns from its smaller copy of it.

    ``teacher_logits_to`` is handed the teacher's logits on the training split as cached for
    training (one view, the images as they are), so that a later stage need not run the teacher
    over the split again; it is not called when the teacher runs online or on shifted views."""
    with contextlib.ExitStack() as stack:
        scratch_dir = checkpoint_dir if checkpoint_dir is not None and checkpoint_dir.is_dir() else None
        t_data = data.resized(teacher_size) if teacher_size else data
        s_data = data.resized(student_size) if student_size else data
        return _train(stack, scratch_dir, model, s_data, t_data, cfg, teacher, weights, label, checkpoint_dir,
                      progress, teacher_logits_to)


def _train(stack, scratch_dir, model, data, t_data, cfg, teacher, weights, label, checkpoint_dir,
           progress, teacher_logits_to=None) -> TrainResult:
    weights = weights or LossWeights(ce=1.0)
    two_sizes = t_data.image_shape != data.image_shape
    crops = cfg.augment and max(t_data.image_shape[:2]) > SMALL_INPUT  # else +-1 px shifts
    if two_sizes and not crops:
        cfg = dataclasses.replace(cfg, augment=False)
    ddp.init_from_env()
    rank, world = ddp.rank(), ddp.world_size()
    device = resolve_device(cfg.device)
    if device.type == "cuda" and device.index is not None:
        torch.cuda.set_device(device)
    use_bf16 = cfg.bf16 and device.type == "cuda"
    torch.manual_seed(cfg.seed)

    n_train = len(data.train)
    y_train = torch.from_numpy(data.train.labels)
    fill = data.fill_value()

    def rows(index) -> torch.Tensor:  # float inputs of training rows; raw uint8 until here
        return torch.from_numpy(data.batch("train", index))

    def t_rows(index) -> torch.Tensor:  # the same rows as the teacher sees them
        return rows(index) if not two_sizes else torch.from_numpy(t_data.batch("train", index))

    model.to(device)
    if device.type == "cuda":
        model.to(memory_format=torch.channels_last)
    if world > 1:
        ddp.broadcast_state(model)  # every rank starts from rank 0's initialisation
    criterion: DistillationLoss | None = None
    teacher_home = None
    if teacher is not None:
        teacher_home = next(teacher.parameters(), torch.empty(0)).device
        teacher.to(device).eval()
        if device.type == "cuda":
            teacher.to(memory_format=torch.channels_last)
        for p in teacher.parameters():
            p.requires_grad_(False)
        criterion = DistillationLoss(teacher, model, weights, to_device(rows(slice(0, 8)), device),
                                     features=not two_sizes,
                                     no_features_because="the student trains at another resolution than the teacher")
        if world > 1:
            ddp.broadcast_state(criterion)
    params = list(model.parameters()) + (list(criterion.parameters()) if criterion is not None else [])
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    batch = ddp.per_rank_batch(cfg.batch_size, world)
    steps_per_epoch = math.ceil(n_train / (batch * world))
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=cfg.lr, total_steps=max(1, cfg.epochs * steps_per_epoch), pct_start=0.15
    )
    net: nn.Module = ddp.wrap(model, device) if world > 1 else model

    cache = None
    t_paths = criterion.paths_teacher if criterion is not None else []
    s_paths = criterion.paths_student if criterion is not None else []
    cache_dir = None
    if teacher is not None and n_train:
        views = N_VIEWS if cfg.augment else 1
        # Crops are too many to cache: the teacher runs online, and its cache is not even sized.
        need_mb = 0.0 if crops else teacher_cache_mb(teacher, t_paths, to_device(t_rows(slice(0, 2)), device),
                                                     n_train, views)
        if not crops and (views == 1 or need_mb <= cfg.cache_limit_mb):
            if need_mb > cfg.cache_memory_mb:
                cache_dir = stack.enter_context(tempfile.TemporaryDirectory(prefix="teacher-cache-", dir=scratch_dir))
            with teacher_code(label, f"the {n_train} training images"):
                cache = TeacherCache(teacher, t_paths, n_train, lambda a, b: t_rows(slice(a, b)), views, fill,
                                     device, use_bf16, store=Path(cache_dir) if cache_dir else None,
                                     chunk=t_data.block_rows())
            if teacher_logits_to is not None and views == 1:
                teacher_logits_to(cache.logits())

    result = TrainResult(device=str(device), teacher_cached=cache is not None, world_size=world,
                         batch_per_rank=batch, lr=cfg.lr)
    best_state = copy.deepcopy(model.state_dict())
    start_epoch = 0
    ckpt = checkpoint_dir / "checkpoint.pt" if checkpoint_dir is not None else None
    state = None
    if ckpt is not None and ckpt.exists() and rank == 0:
        state = torch.load(ckpt, map_location="cpu", weights_only=True)
    if world > 1:
        state = ddp.broadcast_object(state)  # every rank resumes from rank 0's checkpoint
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        sched.load_state_dict(state["sched"])
        if criterion is not None and state.get("criterion") is not None:
            criterion.load_state_dict(state["criterion"])
        best_state = state["best"]
        result = TrainResult.from_dict(state["result"])
        result.teacher_cached = cache is not None
        start_epoch = len(result.history)
        if result.world_size != world:
            # The schedule and the shards depend on the world size: say so rather than mix them.
            err = EdgeDistillError(
                f"{label}: the checkpoint {ckpt} was written by a run on {result.world_size} process(es), "
                f"this run has {world}",
                hint=f"relaunch on {result.world_size} process(es), or delete {ckpt} to train this stage again")
            err.all_ranks = True  # every rank read the same state: they stop together
            raise err

    # Under torchrun BatchNorm normalises with the global batch's statistics, as one process would.
    with ddp.synced_batchnorm(model) if world > 1 and cfg.sync_batchnorm else contextlib.nullcontext():
        for epoch in range(start_epoch, cfg.epochs):
            t0 = time.perf_counter()
            gen = torch.Generator().manual_seed(cfg.seed * 100_003 + epoch)
            perm = torch.randperm(n_train, generator=gen)
            # Views are drawn for the whole permutation before sharing out, so every rank draws the same.
            views_all = (draw_crops(len(perm), gen, cfg.flip) if crops else draw_views(len(perm), gen)) \
                if cfg.augment else None
            net.train()
            total, seen, correct = 0.0, 0, 0
            parts_sum: dict[str, float] = {}
            steps = [ddp.share(perm, views_all, i, batch, rank, world) for i in range(0, len(perm), batch * world)
                     if len(perm[i : i + batch * world]) >= 2]  # BatchNorm needs two samples

            def load(step):  # (student's view, teacher's view) of a step's images
                idx, views, _ = step
                if crops:  # one view: sampled at the teacher's size, downscaled for the student
                    tb = crop_views(t_rows(idx.numpy()), views)
                    return crop_views(tb, None, data.image_shape[:2]), tb
                xb = rows(idx.numpy())
                xb = canonical(shift_views(xb, views, fill) if views is not None else xb)
                return xb, (xb if not two_sizes else t_rows(idx.numpy()))

            # Closed by the stack when training stops early (Ctrl-C, SIGTERM, an error), so its thread is
            # joined before the interpreter exits: one still loading a batch then aborts the process.
            batches = stack.enter_context(contextlib.closing(prefetched(steps, load, pin=device.type == "cuda")))
            for (idx, views, weight), (xb, tb) in batches:
                xb, yb = to_device(xb, device), y_train[idx].to(device)
                t_logits, t_feats = None, {}
                if teacher is not None:
                    if cache is not None:
                        t_logits, t_feats = cache.lookup(idx, views)
                    else:
                        with teacher_code(label, f"a training batch of {len(idx)} images"):
                            t_logits, t_feats = teacher_outputs(teacher, t_paths, to_device(tb, device), use_bf16)
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
                    with FeatureTaps(model, s_paths) as taps:
                        logits = net(xb)
                    if criterion is None:
                        loss, parts = F.cross_entropy(logits.float(), yb), {}
                    else:
                        s_feats = {p: taps.outputs[p].float() for p in s_paths}
                        loss, parts = criterion(logits.float(), yb, t_logits, s_feats, t_feats)
                finite = bool(torch.isfinite(loss)) if world == 1 else ddp.all_true(bool(torch.isfinite(loss)), device)
                if not finite:
                    raise _diverged(label, float(loss.detach()), epoch, t_logits, t_feats, ckpt)
                opt.zero_grad(set_to_none=True)
                (loss * weight if world > 1 else loss).backward()
                if world > 1 and criterion is not None:
                    ddp.average_gradients(criterion)  # hint adapters live outside the DDP-wrapped student
                opt.step()
                sched.step()
                real = len(idx) if weight > 0 else 0  # a stand-in sample counts for nothing
                total += float(loss.detach()) * real
                seen += real
                correct += int((logits.argmax(1) == yb).sum()) if real else 0
                for k, v in parts.items():
                    parts_sum[k] = parts_sum.get(k, 0.0) + v * real
            if world > 1:
                ddp.broadcast_buffers(model)
                if criterion is not None:
                    ddp.broadcast_buffers(criterion)
                total, seen, correct, parts_sum = ddp.sum_stats(total, seen, correct, parts_sum, device)
            val_acc = evaluate_split(model, data, "val") if len(data.val) else float("nan")
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
            # Ties go to the later epoch: on a small val split many epochs tie at the top, and the later
            # one has seen the annealed learning rate. Also true for the first epoch and for NaN (no val).
            if not (val_acc < result.best_val_acc):
                result.best_val_acc, result.best_epoch = val_acc, epoch + 1
                best_state = copy.deepcopy(model.state_dict())
            if ckpt is not None and rank == 0:
                with atomic_path(ckpt) as tmp:
                    torch.save(
                        {"model": model.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(),
                         "criterion": criterion.state_dict() if criterion is not None else None,
                         "best": best_state, "result": result.to_dict()},
                        tmp,
                    )
            if progress is not None and rank == 0:
                progress(label, epoch + 1, cfg.epochs, f"loss {record.loss:.3f} val {val_acc:.3f}")

    model.load_state_dict(best_state)
    if world > 1:
        ddp.broadcast_state(model)  # identical already; this makes it a guarantee
    model.cpu()
    if device.type == "cuda":
        model.to(memory_format=torch.contiguous_format)
    if teacher is not None and teacher_home is not None:
        teacher.to(teacher_home)
        if device.type == "cuda":
            teacher.to(memory_format=torch.contiguous_format)
    return result
