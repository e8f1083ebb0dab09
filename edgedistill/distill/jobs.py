"""Rank 0 decides, the other ranks follow: how one ``edgedistill build`` runs under ``torchrun``.

Rank 0 runs the whole build: it selects, exports, verifies, benchmarks and writes. Every other rank
waits on the control group (:mod:`edgedistill.distill.ddp`) for a *job*: one of rank 0's training
calls (:func:`edgedistill.distill.trainer.train` for the teacher, the students, the assistants and
the scratch baseline; :func:`edgedistill.quantize.qat.qat_finetune`) with its arguments. Each rank
makes the same call, so the loop's collectives meet, and drops what it returns. When rank 0's
build ends, however it ends, it sends its exit code, and every rank exits with it.

What travels is pickled, with two exceptions that every rank loads for itself from the same
options: the data (too large to send; its fingerprint is checked, so a node that sees other
files stops instead of training on them) and modules registered with :func:`share` (the user's
teacher: TorchScript and ``torch.export`` programs do not pickle). Nothing here imports the
trainer: the training modules mark their calls with :func:`announced`.
"""

from __future__ import annotations

import functools
import inspect
import io
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn

from edgedistill.distill import ddp
from edgedistill.errors import EdgeDistillError, RankMismatchError

_RUNNERS: dict[str, Callable] = {}
_SHARED: dict[str, nn.Module] = {}
_LEADING = False


@dataclass
class Job:
    kind: str  # a registered call, or "exit"
    kwargs: dict = field(default_factory=dict)
    data_fingerprint: str = ""
    exit_code: int = 0


@dataclass(frozen=True)
class _Shared:
    key: str


@dataclass(frozen=True)
class _Module:
    blob: bytes  # torch.save of the module, moved to the CPU on load


def register(kind: str, runner: Callable) -> None:
    """``runner(data=..., **kwargs)`` is what a following rank calls for a job of ``kind``."""
    _RUNNERS[kind] = runner


def announced(kind: str, *, local: tuple[str, ...] = ()):
    """Decorate a training call that every rank must make. On the leading rank each call is first
    announced, with its arguments but for ``data`` (each rank has its own) and ``local`` (rank 0's
    own paths and callbacks); a following rank makes it with those arguments."""
    def wrap(fn):
        signature = inspect.signature(fn)

        @functools.wraps(fn)
        def call(*args, **kwargs):
            if leading():
                bound = signature.bind(*args, **kwargs)
                bound.apply_defaults()
                sent = {k: v for k, v in bound.arguments.items() if k not in local and k != "data"}
                announce(kind, bound.arguments["data"], **sent)
            return fn(*args, **kwargs)

        register(kind, fn)
        return call

    return wrap


def share(key: str, module: nn.Module) -> nn.Module:
    """Every rank holds its own copy of ``module`` (loaded from the same files): jobs name it by
    ``key`` instead of sending it."""
    _SHARED[key] = module
    return module


def start_leading() -> None:
    """This process is rank 0 of a build whose other ranks :func:`follow`."""
    global _LEADING
    _LEADING = True


def leading() -> bool:
    return _LEADING and ddp.world_size() > 1


def announce(kind: str, data, **kwargs) -> None:
    """On the leading rank: have every other rank make this call too. A no-op otherwise (one
    process, or every rank calling the trainer itself, as a script under torchrun may)."""
    if not leading():
        return
    packed = {k: _pack(v) for k, v in kwargs.items()}
    ddp.broadcast_object(Job(kind, packed, data.fingerprint()))


def finish(exit_code: int) -> None:
    """On the leading rank: tell the other ranks the build is over and its exit code."""
    global _LEADING
    if leading():
        _LEADING = False
        ddp.broadcast_object(Job("exit", exit_code=exit_code))


def follow(load_data: Callable[[], object], load_shared: Callable[[str, object], nn.Module]) -> int:
    """A non-zero rank's whole build: run rank 0's jobs until it says exit; return its exit code.
    ``load_data()`` and ``load_shared(key, data)`` load this rank's own copies, on first need
    (a rerun whose stages are all cached trains nothing, and reads nothing)."""
    data = None
    while True:
        job: Job = ddp.broadcast_object(None)
        if job.kind == "exit":
            return job.exit_code
        if data is None:
            data = load_data()
        if data.fingerprint() != job.data_fingerprint:
            raise RankMismatchError(
                f"rank {ddp.rank()} loaded other data than rank 0 (fingerprint {data.fingerprint()[:12]} "
                f"against {job.data_fingerprint[:12]})",
                hint="every node must see the same --data (same files, same options)")
        kwargs = {k: _unpack(v, lambda key: _shared(key, data, load_shared)) for k, v in job.kwargs.items()}
        try:
            _RUNNERS[job.kind](data=data, **kwargs)
        except EdgeDistillError as exc:
            # Errors every rank raises together (a diverged loss is agreed on by an all-reduce):
            # rank 0 raised it too and decides what comes next. Any other error ends this rank.
            if not getattr(exc, "all_ranks", False):
                raise


def _shared(key: str, data, load_shared) -> nn.Module:
    if key not in _SHARED:
        _SHARED[key] = load_shared(key, data)
    return _SHARED[key]


def _pack(value):
    if isinstance(value, nn.Module):
        for key, module in _SHARED.items():
            if module is value:
                return _Shared(key)
        buf = io.BytesIO()
        torch.save(value, buf)
        return _Module(buf.getvalue())
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    return value


def _unpack(value, shared: Callable[[str], nn.Module]):
    if isinstance(value, _Shared):
        return shared(value.key)
    if isinstance(value, _Module):
        # Sent by this job's rank 0, not read from a file: a full unpickle is what torch.save wrote.
        return torch.load(io.BytesIO(value.blob), map_location="cpu", weights_only=False)
    return value
