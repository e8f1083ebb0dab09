"""Stage 2, teacher: the user's (``--teacher``, loaded before the data is read) or the built-in
residual CNN (trained on first use, then cached); and a check that it learned anything at all."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

import torch

from edgedistill.config import BuildConfig
from edgedistill.data.dataset import ImageDataset
from edgedistill.distill.evaluation import accuracy, predict_logits
from edgedistill.errors import InputError
from edgedistill.models import count_parameters, spec_to_dict
from edgedistill.progress import Reporter
from edgedistill.rundir import stable_hash


@dataclass
class TeacherInfo:
    """What later stages, the manifest and the report know of the teacher."""

    key: str  # what the student stages depend on (the teacher's recipe or its files, by content)
    params: int
    test_acc: float
    val_acc: float | None
    source: dict  # provenance, as the manifest records it (free-form, from the loader or the cache)
    cached: bool = False  # the built-in teacher was reused from the cache
    spec: dict | None = None  # a zoo teacher's spec (a recognised teacher's twin's)
    # what edgedistill.teacher.recognise made of a teacher from outside the zoo (Recognised.to_dict())
    structure: dict | None = None
    history: list[dict] = field(default_factory=list)  # training curve of the built-in teacher


def load_user_teacher(cfg: BuildConfig):
    """The user's teacher (``--teacher``/``--weights``) loaded, or None for the built-in one."""
    if not cfg.teacher:
        if cfg.weights:
            raise InputError("--weights only applies to --teacher (a factory's weights)",
                             hint="give --teacher FILE.py:FUNCTION, or drop --weights")
        return None
    from edgedistill.teacher.load import load_teacher

    return load_teacher(cfg.teacher, Path(cfg.weights) if cfg.weights else None)


def user_teacher_module(loaded, data: ImageDataset):
    """(the teacher module, what recognition made of it): the user's teacher, checked against the
    data, or the zoo twin that reproduces it (:mod:`edgedistill.teacher.recognise`). Under
    torchrun every rank loads its own copy from the same files (a TorchScript or torch.export
    teacher cannot be sent), and rank 0's training jobs name it rather than send it
    (:func:`edgedistill.distill.jobs.share`)."""
    from edgedistill.distill import jobs
    from edgedistill.teacher.load import infer_io
    from edgedistill.teacher.recognise import recognise

    infer_io(loaded, data)
    module = loaded.module.eval()
    recognised = None
    if getattr(getattr(module, "spec", None), "family", None) is None:
        recognised = recognise(module, data.input_shape_nchw, data.num_classes)
        if recognised.exact:
            module = recognised.twin
    return jobs.share(shared_teacher_key(loaded), module), recognised


def shared_teacher_key(loaded) -> str:
    """Names the teacher by its files' content, so a node that loaded other files is caught."""
    return "teacher:" + stable_hash(loaded.source)


def builtin_teacher_config(cfg: BuildConfig):
    """The built-in teacher's training: its fixed recipe, with the build's epochs, device and
    ``--no-sync-batchnorm`` (under torchrun, BatchNorm over each process's own batch). The synced
    default keys the teacher cache as before the flag reached it."""
    from edgedistill.teacher.builtin import DEFAULT_TEACHER_TRAIN

    return dataclasses.replace(DEFAULT_TEACHER_TRAIN, epochs=cfg.teacher_epochs, device=cfg.device,
                               sync_batchnorm=cfg.sync_batchnorm)


def teacher_stage(cfg: BuildConfig, data: ImageDataset, rep: Reporter, loaded=None):
    """(teacher module, TeacherInfo, recognition or None)."""
    rep.stage("teacher", cfg.teacher or "built-in residual CNN (trained on first use, then cached)")
    if loaded is not None:
        module, recognised = user_teacher_module(loaded, data)  # the select stage says what was recognised
        acc, val_acc = user_teacher_accuracy(module, loaded, data)
        rep.note(f"user teacher: {count_parameters(module):,} params, test accuracy {acc:.4f}, "
                 f"validation {val_acc:.4f}")
        return module, TeacherInfo(key=stable_hash(loaded.source), params=count_parameters(module), test_acc=acc,
                                   val_acc=val_acc, source=loaded.source,
                                   spec=spec_to_dict(module.spec) if hasattr(module, "spec") else None,
                                   structure=recognised.to_dict() if recognised is not None else None), recognised
    from edgedistill.teacher.builtin import builtin_teacher

    module, info = builtin_teacher(data, builtin_teacher_config(cfg), progress=rep.epoch)
    rep.note(("reused cached" if info.cached else "trained") + f" teacher: {info.params:,} params, "
             f"test accuracy {info.test_acc:.4f} ({info.source['cache']})")
    return module, TeacherInfo(key=info.source["key"], params=info.params, test_acc=info.test_acc,
                               val_acc=info.val_acc, source=info.source, cached=info.cached, spec=info.spec,
                               history=_cached_history(info.source.get("cache"))), None


def user_teacher_accuracy(module, loaded, data: ImageDataset) -> tuple[float, float]:
    """(test, validation) accuracy of the user's teacher. Its failures on these batches, and NaN or
    Inf among its logits, are refused here (exit 2): the probe in ``infer_io`` saw two images only,
    and non-finite logits would read as "at chance" and then sink distillation much later."""
    logits = {split: split_logits(module, loaded, data, split) for split in ("test", "val")}
    refuse_non_finite(loaded.source.get("spec", ""), logits)
    return tuple(accuracy(logits[split].numpy(), getattr(data, split).labels) for split in ("test", "val"))


def split_logits(module, loaded, data: ImageDataset, split: str) -> torch.Tensor:
    """The teacher's logits over a split, block by block as training will feed it; the teacher's
    own exception becomes one line naming the teacher, the split and the images it failed on."""
    from edgedistill.teacher.load import teacher_failed

    rows = data.block_rows()
    outs = []
    for start, x in data.batches(split, rows):
        try:
            outs.append(predict_logits(module, torch.from_numpy(x), rows))
        except Exception as err:  # the user's teacher may raise anything
            what = f"{_SPLIT_NAMES[split]} images {start}-{start + len(x) - 1} (a batch of {len(x)})"
            raise teacher_failed(loaded.source.get("spec", ""), what, err, module, data.input_shape_nchw,
                                 loaded.source) from err
    return torch.cat(outs) if outs else torch.empty(0, data.num_classes)


_SPLIT_NAMES = {"train": "training", "val": "validation", "test": "test"}


def refuse_non_finite(name: str, logits: dict[str, torch.Tensor]) -> None:
    """Refuse a teacher whose logits hold NaN or Inf on any split, saying how many and where."""
    counts = []
    for split, values in logits.items():
        bad = ~torch.isfinite(values)
        if bad.any():
            counts.append(f"{int(bad.any(1).sum())} of {len(values)} {_SPLIT_NAMES[split]} images "
                          f"({int(bad.sum())} of {values.numel()} logits)")
    if counts:
        raise InputError(
            f"teacher {name} outputs NaN or Inf logits for {'; '.join(counts)}",
            hint="a student cannot learn from them: check the teacher's weights (--weights), its forward "
                 "and the preprocessing it expects (--mean/--std)")


def _cached_history(cache: str | None) -> list[dict]:
    """The built-in teacher's training curve, which its cache entry keeps (for the report)."""
    if not cache:
        return []
    try:
        meta = json.loads((Path(cache) / "meta.json").read_text())
    except (OSError, ValueError):
        return []
    return [{"epoch": h.get("epoch"), "loss": h.get("loss"), "val_acc": h.get("val_acc")}
            for h in (meta.get("history") or {}).get("history", [])]


def check_teacher(cfg: BuildConfig, info: TeacherInfo, data: ImageDataset, warn):
    """Say loudly when the teacher is at chance on the validation split (a student distilled from
    it learns nothing, yet every later check would pass), and apply --min-teacher-accuracy.
    Returns the teacher gate's result, or None without that gate."""
    from edgedistill.gates import check_teacher_gate
    from edgedistill.quality import chance_check

    if info.val_acc is None:
        return None
    check = chance_check(info.val_acc, data.val.labels)
    if check.near_chance:
        warn(f"the teacher is at chance: {100 * info.val_acc:.1f}% on the validation split ({check.n} images) "
             f"against {100 * check.chance:.1f}% for always answering the commonest class; a student "
             "distilled from it learns nothing (untrained weights, the wrong --weights, or other "
             "preprocessing than it was trained with: check --mean/--std)")
    if cfg.gate_min_teacher_accuracy is None:
        return None
    return check_teacher_gate(info.val_acc, cfg.gate_min_teacher_accuracy)  # raises GateFailed (exit 4)
